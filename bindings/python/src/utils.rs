//! The one helper that releases the GIL around anything that may wait (Polars' `enter_polars`).

use pyo3::marker::Ungil;
use pyo3::prelude::*;

/// Runs `f` with the GIL released, so other Python threads (and the `on_error` dispatcher) run
/// while we wait for the flush thread. `f` must not touch Python objects.
pub fn enter_evlog<T, F>(py: Python<'_>, f: F) -> T
where
    F: Ungil + FnOnce() -> T,
    T: Ungil,
{
    py.allow_threads(f)
}

/// A timeout in seconds from Python (`None`, negative or NaN → zero; huge → capped at a day).
pub fn timeout(seconds: f64) -> std::time::Duration {
    if seconds.is_nan() || seconds <= 0.0 {
        std::time::Duration::ZERO
    } else {
        std::time::Duration::from_secs_f64(seconds.min(86_400.0))
    }
}
