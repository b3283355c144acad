//! The Python exceptions, declared once. All derive from `evlog.EvlogError`.

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
