//! Core errors → Python exceptions, mapped once and exhaustively ([`crate::exceptions`] declares
//! them).
//!
//! | core error | Python |
//! |---|---|
//! | [`EnvelopeError`], a value without a JSON form ([`ConvertError`]) | `InvalidEvent` |
//! | [`LogError`]`::QueueFull`, `::ShutDown` | nothing: `log()` returns False (counted by core) |
//! | [`config::ConfigError`] (every variant), [`PipelineError::Config`] | `ConfigError` |
//! | [`schema::SchemaError::Dir`]: the schema directory cannot be read | `ConfigError` |
//! | every other [`schema::SchemaError`]: a schema file is malformed, or changed in a way a running evlog cannot follow | `SchemaError` |
//! | [`sink::SinkError`] (every variant) | `SinkError` |
//!
//! A missing or unreadable schema directory is a `ConfigError`, not a `SchemaError`: the
//! message is about the setting (`schemas.dir: ...`, the absolute path tried and how to set
//! it), like an unreadable config file, and no schema was read. The binding's own rules about
//! its arguments are `ConfigError` ([`Error::Settings`]); a failure of the `on_error`
//! machinery is a plain `EvlogError` ([`Error::Dispatch`]).

use evlog_core::{config, schema, sink, EnvelopeError, LogError, PipelineError};
use pyo3::{PyErr, PyResult};

use crate::convert::ConvertError;
use crate::exceptions::{ConfigError, EvlogError, InvalidEvent, SchemaError, SinkError};

/// Every error a binding entry point can raise, before it becomes a `PyErr`.
#[derive(Debug)]
pub enum Error {
    /// A bad envelope field (core's rule).
    Envelope(EnvelopeError),
    /// A value that has no JSON form (our conversion).
    Convert(ConvertError),
    /// Configuration (core's rules).
    Config(config::ConfigError),
    /// Configuration, schemas or sink could not be set up.
    Pipeline(PipelineError),
    /// An argument of `Client()` / `configure()` breaks a rule of the binding (both a path and
    /// settings, settings without a TOML form, an `on_error` that is not callable).
    Settings(String),
    /// The `on_error` dispatcher cannot be set up or used.
    Dispatch(&'static str),
    /// A Python exception raised while reading the caller's objects; passed through.
    Python(PyErr),
}

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        match e {
            Error::Envelope(e) => InvalidEvent::new_err(e.to_string()),
            Error::Convert(e) => InvalidEvent::new_err(e.to_string()),
            Error::Config(e) => config_error(e),
            Error::Pipeline(PipelineError::Config(e)) => config_error(e),
            Error::Pipeline(PipelineError::Schema(e)) => schema_error(e),
            Error::Pipeline(PipelineError::Sink(e)) => sink_error(e),
            Error::Settings(message) => ConfigError::new_err(message),
            Error::Dispatch(message) => EvlogError::new_err(message),
            Error::Python(e) => e,
        }
    }
}

/// `log()`'s answer: True when queued, False when core dropped the event for a transport reason
/// (queue full, shut down; counted), `InvalidEvent` when the envelope broke a rule.
pub fn logged(result: Result<(), LogError>) -> PyResult<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(LogError::Invalid(e)) => Err(Error::Envelope(e).into()),
        Err(LogError::QueueFull(_) | LogError::ShutDown) => Ok(false),
    }
}

fn config_error(e: config::ConfigError) -> PyErr {
    use config::ConfigError as E;
    match &e {
        E::Read { .. }
        | E::Parse { .. }
        | E::Invalid { .. }
        | E::Transform(_)
        | E::InvalidAt { .. }
        | E::UnknownEnv { .. } => ConfigError::new_err(e.to_string()),
    }
}

fn schema_error(e: schema::SchemaError) -> PyErr {
    use schema::SchemaError as E;
    match e {
        E::Dir {
            path,
            source,
            mut fix,
        } => {
            // Core's fix names the key and the variable; add Python's own way.
            let hint = " (in Python: evlog.configure(schemas={\"dir\": \"path/to/schemas\"}, ...))";
            match fix.find("that holds them") {
                Some(i) => fix.insert_str(i + "that holds them".len(), hint),
                None => fix.push_str(hint),
            }
            ConfigError::new_err(E::Dir { path, source, fix }.to_string())
        }
        e @ (E::Json { .. }
        | E::Io { .. }
        | E::File { .. }
        | E::Field { .. }
        | E::Evolution { .. }) => SchemaError::new_err(e.to_string()),
    }
}

fn sink_error(e: sink::SinkError) -> PyErr {
    use sink::SinkError as E;
    match &e {
        E::Io { .. } | E::Config(_) | E::Remote { .. } | E::Other(_) => {
            SinkError::new_err(e.to_string())
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

impl From<config::ConfigError> for Error {
    fn from(e: config::ConfigError) -> Self {
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
