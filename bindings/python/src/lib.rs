//! Python binding for evlog: `import evlog`, log at the cost of a function call.
//!
//! Layout (Polars' binding crate): every pyo3 item lives in this ordinary library crate so
//! `cargo test` and clippy cover it; `ext/` is the maturin cdylib that calls [`register`].
//! - [`client`]: the `Client` class (one core `Pipeline`) and the module-level default client.
//! - [`convert`]: Python objects → the event's JSON text, written straight into one `String`.
//! - [`dispatch`]: forwards core's error summaries to the Python `on_error` callback.
//! - [`error`]: core errors → Python exceptions, mapped once; [`exceptions`] declares them once
//!   (`EvlogError` and under it one class per family: `InvalidEvent`, `ConfigError`, and under
//!   that `SchemaError`, `SinkError`).
//! - [`utils`]: releasing the GIL around anything that may wait.
//!
//! Contract (see `ext/evlog/__init__.pyi`): `log()` never blocks and never raises for transport
//! problems (queue full, shut down: it returns `False`, and core counts the drop); a bad envelope
//! or an unconvertible value raises `evlog.InvalidEvent` naming the field.

pub mod client;
pub mod convert;
pub mod dispatch;
pub mod error;
pub mod exceptions;
pub mod utils;

use pyo3::prelude::*;

pub use evlog_core as core;

/// Fills the `evlog._evlog` module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<client::Client>()?;
    m.add_function(wrap_pyfunction!(client::log, m)?)?;
    m.add_function(wrap_pyfunction!(client::flush, m)?)?;
    m.add_function(wrap_pyfunction!(client::shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(client::stats, m)?)?;
    m.add_function(wrap_pyfunction!(client::get_client, m)?)?;
    m.add_function(wrap_pyfunction!(client::swap_client, m)?)?;
    m.add_function(wrap_pyfunction!(convert::to_json, m)?)?;
    m.add("EvlogError", py.get_type::<exceptions::EvlogError>())?;
    m.add("InvalidEvent", py.get_type::<exceptions::InvalidEvent>())?;
    m.add("ConfigError", py.get_type::<exceptions::ConfigError>())?;
    m.add("SchemaError", py.get_type::<exceptions::SchemaError>())?;
    m.add("SinkError", py.get_type::<exceptions::SinkError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
