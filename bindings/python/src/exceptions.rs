//! The Python exceptions, declared once: one per family of core errors, all under
//! `evlog.EvlogError`. Which error becomes which is decided in [`crate::error`].
//!
//! ```text
//! EvlogError
//! ├── InvalidEvent          log() refused the event (envelope or value)
//! └── ConfigError           the configuration cannot be read or cannot work
//!     ├── SchemaError       a schema file is malformed
//!     └── SinkError         the sink cannot be set up
//! ```
//!
//! `SchemaError` and `SinkError` subclass `ConfigError`: both are raised only by `configure()` /
//! `Client()`, where earlier versions raised `ConfigError` for them, so `except evlog.ConfigError`
//! still catches every configuration that cannot work.

use pyo3::create_exception;
use pyo3::exceptions::PyException;

create_exception!(
    evlog,
    EvlogError,
    PyException,
    "Base class of every evlog error."
);
create_exception!(
    evlog,
    InvalidEvent,
    EvlogError,
    "log() refused the event: a bad envelope field or a value that cannot be converted. The message names the field."
);
create_exception!(
    evlog,
    ConfigError,
    EvlogError,
    "Bad configuration: the message names the key (or file) and the rule."
);
create_exception!(
    evlog,
    SchemaError,
    ConfigError,
    "A schema file is malformed: the message names the file and, for a field, its dotted path."
);
create_exception!(
    evlog,
    SinkError,
    ConfigError,
    "The sink cannot be set up (e.g. its directory cannot be created): the message names what and why."
);
