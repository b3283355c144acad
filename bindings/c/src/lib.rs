//! C binding for evlog: `libevlog.a` / `libevlog.so` and the generated header `include/evlog.h`.
//!
//! The adapter holds no logic (model: rustls-ffi). Each export checks and converts its arguments
//! ([`ffi`], the only place with pointer casts), makes one call into `evlog-core`, and maps the
//! result to an [`evlog_status`] ([`error`], the one mapping). Every export body runs inside the
//! panic boundary ([`panic`]), so no Rust panic unwinds into C.
//!
//! Contracts for C callers (repeated on each function in the header):
//! - A handle is opaque; `evlog_open` creates it, `evlog_close` flushes and frees it. Using a
//!   handle after `evlog_close` is undefined behaviour, like using memory after `free()`.
//!   `evlog_shutdown` stops a handle without freeing it: later logs return `EVLOG_SHUT_DOWN`.
//! - Any thread may call any function on one handle at the same time, except that
//!   `evlog_close` must be the last call on the handle from every thread.
//! - `evlog_log*` never blocks and never does I/O. `evlog_flush`, `evlog_shutdown` and
//!   `evlog_close` block for at most their timeout.
//! - Fork-safe: after `fork()`, a child that logs gets its own queue and flush thread; the
//!   parent's queued events are never delivered twice.
//! - Outputs (`*out` arguments) are written only when the call returns `EVLOG_OK`, except the
//!   documented buffer-size output of `EVLOG_BUFFER_TOO_SMALL`.
//! - Strings passed in are borrowed for the duration of the call only; strings returned by
//!   `evlog_version` and `evlog_strerror` are static and must not be freed.

mod api;
pub mod error;
mod ffi;
mod panic;

pub use api::*;
pub use error::evlog_status;
pub use evlog_core as core;
