//! The status enum and the one mapping from core errors to it.
//!
//! Every exported function returns an [`evlog_status`] (or a value documented otherwise). Numbers
//! are fixed and never reused: a retired status keeps its number unused forever. Each failing
//! call also stores a message naming the argument or field and the rule in a per-thread slot that
//! [`crate::evlog_last_error`] copies out (like `errno`: only meaningful right after a call that
//! did not return `EVLOG_OK`; successful calls leave it alone so the hot path never touches it).

use std::cell::RefCell;
use std::ffi::CStr;

use evlog_core::{LogError, PipelineError};

/// Result of every evlog call. Numbers are stable across versions and never reused.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum evlog_status {
    /// Success. For `evlog_log*`: the event was accepted and will be delivered, rejected to the
    /// dead-letter table, or dropped and counted.
    EVLOG_OK = 0,
    /// A required pointer argument was NULL. Nothing was done.
    EVLOG_NULL_ARGUMENT = 1,
    /// A Rust panic was caught at the boundary (a bug in evlog). The handle stays usable.
    EVLOG_PANIC = 2,
    /// A string argument (namespace, type, id, event JSON, config) is not valid UTF-8.
    EVLOG_INVALID_UTF8 = 3,
    /// The event broke an envelope rule (namespace, type, time, id, size, or the body is not a
    /// JSON object); `evlog_last_error` names the field and the rule. Counted as dropped
    /// (`invalid_envelope`).
    EVLOG_INVALID_EVENT = 4,
    /// The in-memory queue is at `queue.capacity` or `queue.max_bytes`. Counted as dropped
    /// (`queue_full`).
    EVLOG_QUEUE_FULL = 5,
    /// The handle was shut down (`evlog_shutdown`); the event was counted as dropped
    /// (`shut_down`).
    EVLOG_SHUT_DOWN = 6,
    /// `evlog_flush` / `evlog_shutdown` / `evlog_close`: not every event was delivered — the
    /// deadline passed before the sink answered them all (after shutdown, what was left is
    /// dropped: `shutdown_deadline`), or some were spooled or dropped (counted in `evlog_stats`).
    EVLOG_TIMEOUT = 7,
    /// The configuration could not be read or is invalid (the message names the key or file).
    EVLOG_CONFIG_ERROR = 8,
    /// A schema file is malformed (the message names the file and the field).
    EVLOG_SCHEMA_ERROR = 9,
    /// The sink could not be set up (e.g. its directory cannot be created).
    EVLOG_SINK_ERROR = 10,
    /// An output buffer is too small; the required size was written where documented.
    EVLOG_BUFFER_TOO_SMALL = 11,
}

impl evlog_status {
    /// A fixed, NUL-terminated description of the status.
    pub(crate) fn message(self) -> &'static CStr {
        match self {
            evlog_status::EVLOG_OK => c"ok",
            evlog_status::EVLOG_NULL_ARGUMENT => c"a required argument was NULL",
            evlog_status::EVLOG_PANIC => c"internal error: a panic was caught (a bug in evlog)",
            evlog_status::EVLOG_INVALID_UTF8 => c"a string argument is not valid UTF-8",
            evlog_status::EVLOG_INVALID_EVENT => c"the event broke an envelope rule",
            evlog_status::EVLOG_QUEUE_FULL => c"event dropped: the queue is full",
            evlog_status::EVLOG_SHUT_DOWN => c"event dropped: the handle is shut down",
            evlog_status::EVLOG_TIMEOUT => {
                c"the deadline passed before every event was answered by the sink"
            }
            evlog_status::EVLOG_CONFIG_ERROR => c"invalid configuration",
            evlog_status::EVLOG_SCHEMA_ERROR => c"the schemas could not be loaded: the schema directory cannot be read or a schema file is malformed",
            evlog_status::EVLOG_SINK_ERROR => c"the sink could not be set up",
            evlog_status::EVLOG_BUFFER_TOO_SMALL => c"the output buffer is too small",
        }
    }

    /// The status for a number, if it is one.
    pub(crate) fn from_u32(n: u32) -> Option<Self> {
        use evlog_status::*;
        [
            EVLOG_OK,
            EVLOG_NULL_ARGUMENT,
            EVLOG_PANIC,
            EVLOG_INVALID_UTF8,
            EVLOG_INVALID_EVENT,
            EVLOG_QUEUE_FULL,
            EVLOG_SHUT_DOWN,
            EVLOG_TIMEOUT,
            EVLOG_CONFIG_ERROR,
            EVLOG_SCHEMA_ERROR,
            EVLOG_SINK_ERROR,
            EVLOG_BUFFER_TOO_SMALL,
        ]
        .into_iter()
        .find(|s| *s as u32 == n)
    }
}

/// Message for an unknown status number.
pub(crate) const UNKNOWN_STATUS: &CStr = c"unknown evlog status";

impl From<&LogError> for evlog_status {
    fn from(e: &LogError) -> Self {
        match e {
            LogError::Invalid(_) => evlog_status::EVLOG_INVALID_EVENT,
            LogError::QueueFull(_) => evlog_status::EVLOG_QUEUE_FULL,
            LogError::ShutDown => evlog_status::EVLOG_SHUT_DOWN,
        }
    }
}

impl From<&PipelineError> for evlog_status {
    fn from(e: &PipelineError) -> Self {
        match e {
            PipelineError::Config(_) => evlog_status::EVLOG_CONFIG_ERROR,
            PipelineError::Schema(_) => evlog_status::EVLOG_SCHEMA_ERROR,
            PipelineError::Sink(_) => evlog_status::EVLOG_SINK_ERROR,
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `message` as this thread's last error and returns `status` (for `return fail(..)`).
#[cold]
pub(crate) fn fail(status: evlog_status, message: impl std::fmt::Display) -> evlog_status {
    use std::fmt::Write as _;
    LAST_ERROR.with(|m| {
        // A re-entrant borrow cannot happen (nothing here calls back), but never panic on it.
        if let Ok(mut m) = m.try_borrow_mut() {
            m.clear();
            let _ = write!(m, "{message}");
        }
    });
    status
}

/// Records a core `log()` error.
#[cold]
pub(crate) fn log_error(e: &LogError) -> evlog_status {
    fail(e.into(), e)
}

/// Runs `f` with this thread's last error message.
pub(crate) fn with_last_error<R>(f: impl FnOnce(&str) -> R) -> R {
    LAST_ERROR.with(|m| match m.try_borrow() {
        Ok(m) => f(&m),
        Err(_) => f(""),
    })
}

/// Records that `argument` of `function` was NULL.
pub(crate) fn null_argument(function: &str, argument: &str) -> evlog_status {
    fail(
        evlog_status::EVLOG_NULL_ARGUMENT,
        format_args!("{function}: argument `{argument}` is NULL"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_fixed_and_round_trip() {
        let expected = [
            (evlog_status::EVLOG_OK, 0),
            (evlog_status::EVLOG_NULL_ARGUMENT, 1),
            (evlog_status::EVLOG_PANIC, 2),
            (evlog_status::EVLOG_INVALID_UTF8, 3),
            (evlog_status::EVLOG_INVALID_EVENT, 4),
            (evlog_status::EVLOG_QUEUE_FULL, 5),
            (evlog_status::EVLOG_SHUT_DOWN, 6),
            (evlog_status::EVLOG_TIMEOUT, 7),
            (evlog_status::EVLOG_CONFIG_ERROR, 8),
            (evlog_status::EVLOG_SCHEMA_ERROR, 9),
            (evlog_status::EVLOG_SINK_ERROR, 10),
            (evlog_status::EVLOG_BUFFER_TOO_SMALL, 11),
        ];
        for (s, n) in expected {
            assert_eq!(s as u32, n);
            assert_eq!(evlog_status::from_u32(n), Some(s));
            assert!(!s.message().is_empty());
        }
        assert_eq!(evlog_status::from_u32(12), None);
    }

    #[test]
    fn fail_sets_the_thread_message() {
        let s = fail(evlog_status::EVLOG_QUEUE_FULL, "queue full (x)");
        assert_eq!(s, evlog_status::EVLOG_QUEUE_FULL);
        assert_eq!(with_last_error(str::to_string), "queue full (x)");
        std::thread::spawn(|| assert_eq!(with_last_error(str::to_string), ""))
            .join()
            .unwrap();
    }
}
