//! The panic boundary: every exported function's body runs inside [`ffi_panic_boundary!`], so a
//! Rust panic never unwinds into C (that would be undefined behaviour). A caught panic becomes
//! `EVLOG_PANIC` (or the documented neutral value for functions that return something else); the
//! panic message itself is printed by the standard panic hook to stderr.

use std::ffi::c_char;

use crate::error::{self, evlog_status};

/// What an exported function returns when its body panicked.
pub(crate) trait PanicValue {
    /// The value returned to C instead of unwinding.
    fn on_panic() -> Self;
}

impl PanicValue for evlog_status {
    fn on_panic() -> Self {
        error::fail(
            evlog_status::EVLOG_PANIC,
            "internal error: a panic was caught at the C boundary (a bug in evlog)",
        )
    }
}

impl PanicValue for *const c_char {
    fn on_panic() -> Self {
        evlog_status::EVLOG_PANIC.message().as_ptr()
    }
}

impl PanicValue for () {
    fn on_panic() -> Self {}
}

/// Runs the body in `catch_unwind` and turns a panic into [`PanicValue::on_panic`]. Use `return`
/// inside the body for early exits (it returns from the closure, i.e. from the export).
macro_rules! ffi_panic_boundary {
    ( $($body:tt)* ) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| { $($body)* })) {
            Ok(v) => v,
            Err(_) => $crate::panic::PanicValue::on_panic(),
        }
    };
}

pub(crate) use ffi_panic_boundary;

#[cfg(test)]
mod tests {
    use super::*;

    fn panics(n: u32) -> evlog_status {
        ffi_panic_boundary! {
            if n > 0 {
                panic!("boom {n}");
            }
            evlog_status::EVLOG_OK
        }
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        assert_eq!(panics(0), evlog_status::EVLOG_OK);
        assert_eq!(panics(1), evlog_status::EVLOG_PANIC);
        assert!(error::with_last_error(|m| m.contains("panic")));
    }
}
