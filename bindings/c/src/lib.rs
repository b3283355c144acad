//! C binding for evlog. The C API is built by the C-binding issue; this crate is the shell that
//! links `evlog-core` into `libevlog.a` / `libevlog.so`.

pub use evlog_core as core;
