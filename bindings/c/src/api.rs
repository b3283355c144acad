//! The exported functions. Each one: check and convert arguments (through [`crate::ffi`]), one
//! call into core, map the result (through [`crate::error`]), all inside the panic boundary.
// `#[no_mangle]` counts as unsafe code; every unsafe block of the crate lives in `ffi.rs`.
#![allow(unsafe_code)]

use std::ffi::{c_char, CStr};
use std::path::Path;
use std::time::Duration;

use evlog_core::config::ConfigError;
use evlog_core::{Config, DropReason, EventInput, Pipeline, PipelineError};

use crate::error::{self, evlog_status};
use crate::ffi;
use crate::panic::ffi_panic_boundary;

/// Returns the status of a failed argument conversion from the enclosing export.
macro_rules! try_arg {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(status) => return status,
        }
    };
}

/// `time_micros` value for "no time given": the event time is the time of the call.
pub const EVLOG_TIME_NOW: i64 = i64::MIN;

/// The library version, as in `EVLOG_VERSION`.
const VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => panic!("version contains a NUL"),
    };

/// An evlog pipeline: a queue, a flush thread and a sink, configured once by `evlog_open`.
/// Opaque to C; one handle may be used from many threads at once.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct evlog_handle {
    pipeline: Pipeline,
}

/// A reading of the counters (names from docs/contracts.md; `dropped_*` split by reason). Filled by
/// `evlog_stats`. Invariant: `accepted == delivered + rejected + dropped + in_flight`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct evlog_counters {
    /// `evlog_events_accepted_total`: every event offered to `evlog_log*` (refused ones too).
    pub accepted: u64,
    /// `evlog_events_delivered_total`: acknowledged by the sink.
    pub delivered: u64,
    /// `evlog_events_rejected_total`, all reasons: kept in the dead-letter table.
    pub rejected: u64,
    /// `evlog_events_dropped_total`, all reasons: lost and counted.
    pub dropped: u64,
    /// Accepted but not yet delivered, rejected or dropped.
    pub in_flight: i64,
    /// `evlog_events_retried_total`.
    pub retried: u64,
    /// `evlog_events_spooled_total`.
    pub spooled: u64,
    /// `evlog_queue_events` (gauge): events waiting in memory.
    pub queue_events: u64,
    /// `evlog_sink_errors_total`, all sinks and kinds.
    pub sink_errors: u64,
    /// `evlog_events_dropped_total{reason="invalid_envelope"}`.
    pub dropped_invalid_envelope: u64,
    /// `evlog_events_dropped_total{reason="queue_full"}`.
    pub dropped_queue_full: u64,
    /// `evlog_events_dropped_total{reason="shut_down"}`.
    pub dropped_shut_down: u64,
    /// `evlog_events_dropped_total{reason="shutdown_deadline"}`.
    pub dropped_shutdown_deadline: u64,
    /// `evlog_events_dropped_total{reason="sink_error"}`.
    pub dropped_sink_error: u64,
    /// `evlog_events_dropped_total{reason="spool_full"}`.
    pub dropped_spool_full: u64,
    /// `evlog_events_dropped_total{reason="dead_letter_failed"}`.
    pub dropped_dead_letter_failed: u64,
    /// `evlog_flush_seconds_count`: flushes delivered.
    pub flushes: u64,
    /// `evlog_flush_seconds_sum`.
    pub flush_seconds_sum: f64,
}

impl From<&evlog_core::Stats> for evlog_counters {
    fn from(s: &evlog_core::Stats) -> Self {
        let dropped = |r: DropReason| s.dropped.get(r.as_str()).copied().unwrap_or(0);
        Self {
            accepted: s.accepted,
            delivered: s.delivered,
            rejected: s.rejected_total(),
            dropped: s.dropped_total(),
            in_flight: s.in_flight,
            retried: s.retried,
            spooled: s.spooled,
            queue_events: s.queue_events,
            sink_errors: s.sink_errors.values().sum(),
            dropped_invalid_envelope: dropped(DropReason::InvalidEnvelope),
            dropped_queue_full: dropped(DropReason::QueueFull),
            dropped_shut_down: dropped(DropReason::ShutDown),
            dropped_shutdown_deadline: dropped(DropReason::ShutdownDeadline),
            dropped_sink_error: dropped(DropReason::SinkError),
            dropped_spool_full: dropped(DropReason::SpoolFull),
            dropped_dead_letter_failed: dropped(DropReason::DeadLetterFailed),
            flushes: s.flush_seconds_buckets.last().copied().unwrap_or(0),
            flush_seconds_sum: s.flush_seconds_sum,
        }
    }
}

/// Returns the library version (`"MAJOR.MINOR.PATCH"`, equal to `EVLOG_VERSION`).
///
/// The string is static: do not free it. Thread-safe, never blocks.
#[no_mangle]
pub extern "C" fn evlog_version() -> *const c_char {
    ffi_panic_boundary! {
        VERSION.as_ptr()
    }
}

/// Returns a fixed description of a status number (any number is safe to pass).
///
/// The string is static: do not free it. Thread-safe, never blocks. For the details of the last
/// failure on this thread (which argument, which rule) use `evlog_last_error`.
#[no_mangle]
pub extern "C" fn evlog_strerror(status: u32) -> *const c_char {
    ffi_panic_boundary! {
        evlog_status::from_u32(status)
            .map_or(error::UNKNOWN_STATUS, evlog_status::message)
            .as_ptr()
    }
}

/// Copies the message of the last failed evlog call on this thread into `buf`.
///
/// The message names the argument or field and the rule, e.g.
/// `event: must be a JSON object, got "[1,2]"`. It is per thread and, like `errno`, only
/// meaningful right after a call that did not return `EVLOG_OK` (successful calls leave it
/// unchanged). `buf` (caller-owned, `len` bytes) receives a NUL-terminated string, cut at a
/// UTF-8 character boundary if needed; `*out_len` (optional, may be NULL) receives the bytes
/// written without the NUL. Returns `EVLOG_BUFFER_TOO_SMALL` if the message was cut,
/// `EVLOG_NULL_ARGUMENT` if `buf` is NULL or `len` is 0. Never blocks.
#[no_mangle]
pub extern "C" fn evlog_last_error(
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> evlog_status {
    ffi_panic_boundary! {
        if buf.is_null() || len == 0 {
            // Not recorded as the last error: that would overwrite the message being asked for.
            return evlog_status::EVLOG_NULL_ARGUMENT;
        }
        let (written, full) = error::with_last_error(|m| (ffi::copy_to_buf(m, buf, len), m.len()));
        if !out_len.is_null() {
            ffi::write_out(out_len, written);
        }
        if written < full {
            evlog_status::EVLOG_BUFFER_TOO_SMALL
        } else {
            evlog_status::EVLOG_OK
        }
    }
}

/// Creates a pipeline: reads the configuration, loads the schemas, sets up the sink.
///
/// `config` selects the configuration (`EVLOG_*` environment overrides apply in every case):
/// - NULL: the file named by `EVLOG_CONFIG`, or all defaults when it is unset;
/// - TOML text, recognised by containing `=` or a newline or starting with `[` (after spaces),
///   or being empty/blank (all defaults), e.g. `"[sink]\nkind = \"null\"\n"`;
/// - otherwise a path to a TOML file.
///
/// On success writes the new handle to `*out` and returns `EVLOG_OK`; the caller owns it and
/// must release it with `evlog_close`. On failure `*out` is untouched, and the message (naming
/// the key, file or field and the rule) is copied into `errbuf` (caller-owned, `errlen` bytes,
/// NUL-terminated; optional: NULL or 0 skips it) and kept for `evlog_last_error`. Statuses:
/// `EVLOG_NULL_ARGUMENT` (`out`), `EVLOG_INVALID_UTF8`, `EVLOG_CONFIG_ERROR`,
/// `EVLOG_SCHEMA_ERROR`, `EVLOG_SINK_ERROR`.
///
/// Blocks while reading the files; starts no thread (the flush thread starts with the first
/// log, so a process may open a handle and then fork). Thread-safe.
#[no_mangle]
pub extern "C" fn evlog_open(
    config: *const c_char,
    out: *mut *mut evlog_handle,
    errbuf: *mut c_char,
    errlen: usize,
) -> evlog_status {
    ffi_panic_boundary! {
        let status = open(config, out);
        if status != evlog_status::EVLOG_OK {
            error::with_last_error(|m| ffi::copy_to_buf(m, errbuf, errlen));
        }
        status
    }
}

fn open(config: *const c_char, out: *mut *mut evlog_handle) -> evlog_status {
    let out = try_arg!(ffi::out_ptr(out, "evlog_open", "out"));
    let config = try_arg!(ffi::opt_c_str(config, "evlog_open", "config"));
    match load_config(config)
        .map_err(PipelineError::from)
        .and_then(Pipeline::new)
    {
        Ok(pipeline) => {
            ffi::write_out(out, ffi::into_raw(evlog_handle { pipeline }));
            evlog_status::EVLOG_OK
        }
        Err(e) => error::fail((&e).into(), e),
    }
}

/// See `evlog_open`: NULL = environment, TOML text, or a path.
fn load_config(arg: Option<&str>) -> Result<Config, ConfigError> {
    match arg {
        None => Config::from_env(),
        Some(text) if is_toml_text(text) => {
            Config::from_toml_with_env(text, "<config string>", std::env::vars())
        }
        Some(path) => Config::from_path(Path::new(path)),
    }
}

fn is_toml_text(s: &str) -> bool {
    let t = s.trim_start();
    t.is_empty() || t.starts_with('[') || s.contains('=') || s.contains('\n')
}

/// Logs one event with the time of the call and a generated id (UUIDv7).
///
/// `namespace` (dataset) and `type_name` (table) are NUL-terminated UTF-8 strings;
/// `event_json` is `len` bytes of UTF-8 JSON object text (need not be NUL-terminated). All are
/// borrowed for the call only; the text is copied into the queue.
///
/// Returns at once, never blocks, never does I/O: `EVLOG_OK` (accepted: it will be delivered,
/// or rejected to the dead-letter table, or dropped and counted), `EVLOG_INVALID_EVENT` (an
/// envelope rule; see `evlog_last_error`), `EVLOG_QUEUE_FULL`, `EVLOG_SHUT_DOWN`,
/// `EVLOG_NULL_ARGUMENT`, `EVLOG_INVALID_UTF8`. The body is checked only to look like an object
/// (`{...}`); it is parsed and validated on the flush thread, where bad JSON is rejected
/// (`invalid_json`). Any thread may log through one handle concurrently.
#[no_mangle]
pub extern "C" fn evlog_log(
    handle: *const evlog_handle,
    namespace: *const c_char,
    type_name: *const c_char,
    event_json: *const c_char,
    len: usize,
) -> evlog_status {
    ffi_panic_boundary! {
        const F: &str = "evlog_log";
        let h = try_arg!(ffi::borrow(handle, F));
        let namespace = try_arg!(ffi::c_str(namespace, F, "namespace"));
        let type_name = try_arg!(ffi::c_str(type_name, F, "type_name"));
        let event_json = try_arg!(ffi::str_len(event_json, len, F, "event_json"));
        match h.pipeline.log(EventInput::new(namespace, type_name, event_json)) {
            Ok(()) => evlog_status::EVLOG_OK,
            Err(e) => error::log_error(&e),
        }
    }
}

/// Logs one event with a given time and/or id; otherwise as `evlog_log`.
///
/// `time_micros`: event time in microseconds since the Unix epoch (UTC), or `EVLOG_TIME_NOW` for
/// the time of the call. `id`: NUL-terminated UTF-8 event id (BigQuery insertId, at most 128
/// bytes, no control characters), or NULL for a generated UUIDv7. Never blocks; thread-safe.
#[no_mangle]
pub extern "C" fn evlog_log_with(
    handle: *const evlog_handle,
    namespace: *const c_char,
    type_name: *const c_char,
    event_json: *const c_char,
    len: usize,
    time_micros: i64,
    id: *const c_char,
) -> evlog_status {
    ffi_panic_boundary! {
        const F: &str = "evlog_log_with";
        let h = try_arg!(ffi::borrow(handle, F));
        let namespace = try_arg!(ffi::c_str(namespace, F, "namespace"));
        let type_name = try_arg!(ffi::c_str(type_name, F, "type_name"));
        let event_json = try_arg!(ffi::str_len(event_json, len, F, "event_json"));
        let id = try_arg!(ffi::opt_c_str(id, F, "id"));
        let input = EventInput {
            time: (time_micros != EVLOG_TIME_NOW).then_some(time_micros),
            id,
            ..EventInput::new(namespace, type_name, event_json)
        };
        match h.pipeline.log(input) {
            Ok(()) => evlog_status::EVLOG_OK,
            Err(e) => error::log_error(&e),
        }
    }
}

/// Waits until every event logged (by any thread) before this call has been answered by the
/// sink, or `timeout_ms` passes.
///
/// Returns `EVLOG_OK` when everything made it (delivered, or rejected and stored as a dead
/// letter), `EVLOG_TIMEOUT` otherwise: the timeout passed (the events stay queued and are still
/// delivered later), or events were spooled or dropped since the previous flush (counted, see
/// `evlog_stats`). Blocks up to `timeout_ms`. Thread-safe.
#[no_mangle]
pub extern "C" fn evlog_flush(handle: *const evlog_handle, timeout_ms: u32) -> evlog_status {
    ffi_panic_boundary! {
        let h = try_arg!(ffi::borrow(handle, "evlog_flush"));
        if h.pipeline.flush(Duration::from_millis(timeout_ms.into())) {
            evlog_status::EVLOG_OK
        } else {
            error::fail(evlog_status::EVLOG_TIMEOUT, "evlog_flush: not every event logged before was delivered: the timeout passed, or events were spooled or dropped (see evlog_stats)")
        }
    }
}

/// Stops the handle without freeing it: takes no more events, delivers what is queued until
/// `timeout_ms` passes, and stops the flush thread (joins it).
///
/// Returns `EVLOG_OK` when everything was delivered, `EVLOG_TIMEOUT` when the deadline passed
/// (what was left is dropped and counted as `shutdown_deadline`). Afterwards `evlog_log*` returns
/// `EVLOG_SHUT_DOWN` (counted as dropped, `shut_down`), `evlog_stats` still works, and the
/// handle must still be released with `evlog_close`. Calling it again is harmless. Blocks up to
/// `timeout_ms`. Thread-safe.
#[no_mangle]
pub extern "C" fn evlog_shutdown(handle: *const evlog_handle, timeout_ms: u32) -> evlog_status {
    ffi_panic_boundary! {
        let h = try_arg!(ffi::borrow(handle, "evlog_shutdown"));
        shutdown(h, timeout_ms, "evlog_shutdown")
    }
}

fn shutdown(h: &evlog_handle, timeout_ms: u32, function: &str) -> evlog_status {
    if h.pipeline
        .shutdown(Duration::from_millis(timeout_ms.into()))
    {
        evlog_status::EVLOG_OK
    } else {
        error::fail(
            evlog_status::EVLOG_TIMEOUT,
            format_args!("{function}: the deadline passed; undelivered events were dropped (shutdown_deadline)"),
        )
    }
}

/// Shuts the handle down (as `evlog_shutdown` with `timeout_ms`) and frees it.
///
/// Returns `EVLOG_OK` or `EVLOG_TIMEOUT` (the handle is freed either way). `evlog_close(NULL)`
/// does nothing and returns `EVLOG_NULL_ARGUMENT`. The handle must not be used afterwards by
/// any thread (undefined behaviour, like use after `free()`); make sure other threads have
/// finished their calls first. Blocks up to `timeout_ms`.
#[no_mangle]
pub extern "C" fn evlog_close(handle: *mut evlog_handle, timeout_ms: u32) -> evlog_status {
    ffi_panic_boundary! {
        let h = try_arg!(ffi::take(handle));
        shutdown(&h, timeout_ms, "evlog_close")
    }
}

/// Writes a reading of this process's counters to `*out`.
///
/// Returns `EVLOG_OK`, or `EVLOG_NULL_ARGUMENT` (`*out` untouched). Never blocks on I/O;
/// thread-safe. A forked child that has not logged yet reads all zeros.
#[no_mangle]
pub extern "C" fn evlog_stats(
    handle: *const evlog_handle,
    out: *mut evlog_counters,
) -> evlog_status {
    ffi_panic_boundary! {
        let h = try_arg!(ffi::borrow(handle, "evlog_stats"));
        let out = try_arg!(ffi::out_ptr(out, "evlog_stats", "out"));
        ffi::write_out(out, evlog_counters::from(&h.pipeline.stats()));
        evlog_status::EVLOG_OK
    }
}

/// Renders every counter with its labels (rejected and dropped by reason, sink errors, the
/// flush-time histogram) in the Prometheus text format 0.0.4 into `buf` (caller-owned, `len`
/// bytes): each family's HELP and TYPE lines, then all of its samples. Rejected and dropped
/// have a sample for every reason core knows (0 until counted); sink errors one per (sink, kind)
/// seen.
///
/// On `EVLOG_OK`, `buf` holds the NUL-terminated text and `*out_len` (optional) its length. If
/// the text does not fit, returns `EVLOG_BUFFER_TOO_SMALL`, leaves `buf` untouched and writes
/// the size needed (including the NUL) to `*out_len` (optional). Thread-safe.
#[no_mangle]
pub extern "C" fn evlog_stats_text(
    handle: *const evlog_handle,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> evlog_status {
    ffi_panic_boundary! {
        let h = try_arg!(ffi::borrow(handle, "evlog_stats_text"));
        let buf = try_arg!(ffi::out_ptr(buf, "evlog_stats_text", "buf"));
        let text = h.pipeline.stats().to_prometheus();
        if text.len() >= len {
            if !out_len.is_null() {
                ffi::write_out(out_len, text.len() + 1);
            }
            return error::fail(
                evlog_status::EVLOG_BUFFER_TOO_SMALL,
                format_args!("evlog_stats_text: the text needs {} bytes, the buffer has {len}", text.len() + 1),
            );
        }
        let n = ffi::copy_to_buf(&text, buf, len);
        if !out_len.is_null() {
            ffi::write_out(out_len, n);
        }
        evlog_status::EVLOG_OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_argument_kinds() {
        assert!(is_toml_text(""));
        assert!(is_toml_text("  "));
        assert!(is_toml_text("[sink]\nkind = \"null\""));
        assert!(is_toml_text("sink.kind = \"null\""));
        assert!(!is_toml_text("/etc/evlog.toml"));
        assert!(!is_toml_text("evlog.toml"));
    }

    #[test]
    fn version_matches_cargo() {
        assert_eq!(VERSION.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
