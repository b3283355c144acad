//! Core errors → Python exceptions, mapped once and exhaustively.

use evlog_core::config::ConfigError as CoreConfigError;
use evlog_core::schema::SchemaError;
use evlog_core::{EnvelopeError, PipelineError};
use pyo3::PyErr;

use crate::convert::ConvertError;
use crate::exceptions::{ConfigError, InvalidEvent};

/// Every error a binding entry point can raise, before it becomes a `PyErr`.
#[derive(Debug)]
pub enum Error {
    /// A bad envelope field (core's rule).
    Envelope(EnvelopeError),
    /// A value that has no JSON form (our conversion).
    Convert(ConvertError),
    /// Configuration.
    Config(CoreConfigError),
    /// Schemas or sink could not be set up.
    Pipeline(PipelineError),
    /// A Python exception raised while reading the caller's objects; passed through.
    Python(PyErr),
}

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        match e {
            Error::Envelope(e) => InvalidEvent::new_err(e.to_string()),
            Error::Convert(e) => InvalidEvent::new_err(e.to_string()),
            Error::Config(e) => ConfigError::new_err(e.to_string()),
            Error::Pipeline(e) => match e {
                PipelineError::Config(e) => ConfigError::new_err(e.to_string()),
                PipelineError::Schema(SchemaError::Dir {
                    path,
                    source,
                    mut fix,
                }) => {
                    // Core's fix names the key and the variable; add Python's own way.
                    let hint =
                        " (in Python: evlog.configure(schemas={\"dir\": \"path/to/schemas\"}, ...))";
                    match fix.find("that holds them") {
                        Some(i) => fix.insert_str(i + "that holds them".len(), hint),
                        None => fix.push_str(hint),
                    }
                    ConfigError::new_err(
                        PipelineError::Schema(SchemaError::Dir { path, source, fix }).to_string(),
                    )
                }
                e @ (PipelineError::Schema(_) | PipelineError::Sink(_)) => {
                    ConfigError::new_err(e.to_string())
                }
            },
            Error::Python(e) => e,
        }
    }
}

impl From<EnvelopeError> for Error {
    fn from(e: EnvelopeError) -> Self {
        Error::Envelope(e)
    }
}

impl From<ConvertError> for Error {
    fn from(e: ConvertError) -> Self {
        Error::Convert(e)
    }
}

impl From<CoreConfigError> for Error {
    fn from(e: CoreConfigError) -> Self {
        Error::Config(e)
    }
}

impl From<PipelineError> for Error {
    fn from(e: PipelineError) -> Self {
        Error::Pipeline(e)
    }
}

impl From<PyErr> for Error {
    fn from(e: PyErr) -> Self {
        Error::Python(e)
    }
}
