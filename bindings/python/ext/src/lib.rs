//! The `evlog._evlog` extension module: a re-export of `evlog-python` (Polars' layout: the
//! cdylib holds no code so `cargo test` and clippy cover everything in the library crate).

use pyo3::prelude::*;

#[pymodule]
fn _evlog(m: &Bound<'_, PyModule>) -> PyResult<()> {
    evlog_python::register(m)
}
