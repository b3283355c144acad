//! evlog's PHP extension (ext-php-rs): `evlog_log()` costs about a microsecond and does no I/O.
//!
//! Entry points (`evlog.stub.php` documents them for IDEs):
//! - `evlog_log(string $namespace, string $type, array $event, ?array $options = null): bool`
//! - `evlog_flush(int $timeout_ms = 1000): bool`
//! - `evlog_stats(): array`, `evlog_last_error(): ?string`
//! - class `Evlog\Exception` (extends `\Exception`), thrown for misuse only.
//!
//! Contracts:
//! - A binding function checks and converts its arguments, makes one call into core, and maps
//!   the result. `false` means core did not take the event (invalid envelope, queue full, shut
//!   down): core counted it as dropped with the reason, and `evlog_last_error()` tells why. An
//!   `Evlog\Exception` means the caller misused the API: invalid configuration, wrong option
//!   types, or an event value that has no JSON form (names the field). Transport problems never
//!   reach PHP: they are counted and visible in `evlog_stats()`.
//! - Lifecycle (php-fpm forks its workers after MINIT): MINIT only registers the ini directives
//!   and the class. The pipeline is built by the first call that needs it in a process, from the
//!   ini values at that moment; its flush thread starts on the first `evlog_log()` in each
//!   process (core keys its state by pid, so a forked worker starts its own). RINIT/RSHUTDOWN do
//!   nothing. MSHUTDOWN (worker recycled by `pm.max_requests`, graceful stop, end of a CLI
//!   script) calls `shutdown(evlog.shutdown_timeout)`, which delivers what is queued; what is still
//!   undelivered at the deadline goes to the disk spool (on by default for the network sinks;
//!   replayed by the next worker that logs), or is counted as dropped without it. Either way
//!   before MSHUTDOWN returns: core's shutdown never waits out retries past its deadline.
//! - Configuration ([`ini`]): `evlog.*` directives for every sink (`evlog.mode` = `file`, `null`,
//!   `forward`, `bigquery`), the spool, batching, queue and retries, over the `evlog.config` TOML
//!   file and under `EVLOG_*` variables. `php --ri evlog` shows each directive's effective value
//!   and its source, secrets redacted.
//! - No Rust panic reaches PHP: every entry point runs inside [`error::guard`], and the module
//!   hooks (MINIT, MSHUTDOWN, MINFO) inside `catch_unwind`.
//!
//! Layout (the C binding's model): this file holds the entry points, each one conversion, one
//! call into core and one mapping; [`error`] maps every error to what PHP sees, once; [`ffi`] is
//! the only module with `unsafe` (PHP's C API that ext-php-rs does not wrap); [`convert`] turns
//! zvals into the event's JSON text; [`ini`] turns directives into core's configuration.

#![deny(unsafe_code)] // only `ffi` allows it
#![cfg_attr(windows, feature(abi_vectorcall))]

pub mod convert;
pub mod error;
mod ffi;
pub mod ini;

use std::panic::catch_unwind;
use std::sync::OnceLock;
use std::time::Duration;

use evlog_core::{EventInput, Pipeline};
use ext_php_rs::args::Arg;
use ext_php_rs::boxed::ZBox;
use ext_php_rs::builders::FunctionBuilder;
use ext_php_rs::flags::DataType;
use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendHashTable, Zval};
use ext_php_rs::zend::{ce, ClassEntry, ExecuteData, ExecutorGlobals, ModuleEntry};
use ext_php_rs::{info_table_end, info_table_header, info_table_row, info_table_start};

use crate::error::{guard, Error};

pub use evlog_core as core;

/// `Evlog\Exception`: misuse of the API (invalid configuration, wrong argument types, a value
/// without a JSON form). Never thrown for transport problems.
#[php_class]
#[php(name = "Evlog\\Exception")]
#[php(extends(ce = ce::exception, stub = "\\Exception"))]
#[derive(Debug, Default)]
pub struct EvlogException;

/// An `Evlog\Exception` for a wrong argument.
fn argument(message: impl Into<String>) -> PhpException {
    Error::Argument(message.into()).into()
}

/// The process's pipeline (with the effective directive values it was built from, for
/// `php --ri`), or why it could not be built. Built once, on first use, never in MINIT. Ini
/// directives are `PHP_INI_SYSTEM`, so caching a configuration error is exact.
static PIPELINE: OnceLock<Result<(Pipeline, Vec<ini::Effective>), Error>> = OnceLock::new();

/// The process environment as strings (a non-UTF-8 variable is read lossily rather than
/// panicking: `EVLOG_*` values then fail their key's rule with a message).
fn env_vars() -> Vec<(String, String)> {
    std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

/// The configuration from this process's directives, `EVLOG_*` variables and files.
fn resolve_config() -> Result<ini::Resolved, Error> {
    ini::check_names(ffi::configured_names())?;
    ini::resolve(ffi::ini_value, env_vars())
}

fn build_pipeline() -> Result<(Pipeline, Vec<ini::Effective>), Error> {
    let resolved = resolve_config()?;
    let p = Pipeline::new(resolved.config)?;
    Ok((p, resolved.effective))
}

fn pipeline() -> PhpResult<&'static Pipeline> {
    match PIPELINE.get_or_init(build_pipeline) {
        Ok((p, _)) => Ok(p),
        Err(e) => Err(e.into()),
    }
}

/// PHP's handler of `evlog_log(string $namespace, string $type, array $event, ?array $options =
/// null): bool`, written out instead of generated by `#[php_function]`: the generated one
/// allocates a box per call (its bailout guard returns the result through one) and checks each
/// name with `from_utf8` (callgrind: ~850 instructions per call outside the body, ~100 here).
/// It converts the arguments as the generated one did (same errors, phpt 019), then calls
/// [`evlog_log`] inside [`guard`].
///
/// It sets no bailout guard (`zend_try`): a fatal error in user code the conversion calls
/// (`jsonSerialize()`) longjmps past these frames to PHP's own guard, which is what happened
/// under the generated one's guard too (it re-raised the bailout); what the frames own leaks.
extern "C" fn evlog_log_handler(ex: &mut ExecuteData, retval: &mut Zval) {
    let args = ffi::call_args(ex);
    if !(3..=4).contains(&args.len()) {
        ffi::wrong_parameter_count(3, 4);
        return;
    }
    let logged = guard("evlog_log", || {
        let namespace = text_argument(&args[0], "namespace")?;
        let type_name = text_argument(&args[1], "r#type")?;
        let event = args[2].array().ok_or_else(|| invalid_argument("event"))?;
        // As generated: a non-array `$options` reads as null.
        let options = args.get(3).and_then(Zval::array);
        evlog_log(namespace, type_name, event, options)
    });
    match logged {
        Ok(taken) => ffi::set_bool(retval, taken),
        Err(e) => {
            let _ = e.throw();
        }
    }
}

/// A string argument's text (references followed), as `#[php_function]`'s `&str`.
fn text_argument<'a>(z: &'a Zval, name: &str) -> PhpResult<&'a str> {
    z.zend_str()
        .and_then(ffi::zend_str_text)
        .ok_or_else(|| invalid_argument(name))
}

/// The exception `#[php_function]`'s handlers throw for an argument of the wrong type.
fn invalid_argument(name: &str) -> PhpException {
    PhpException::default(format!("Invalid value given for argument `{name}`."))
}

/// `evlog_log()`'s registration: the handler and the signature reflection and stubs show.
fn evlog_log_function() -> FunctionBuilder<'static> {
    FunctionBuilder::new("evlog_log", evlog_log_handler)
        .arg(Arg::new("namespace", DataType::String))
        .arg(Arg::new("type", DataType::String))
        .arg(Arg::new("event", DataType::Array))
        .not_required()
        .arg(Arg::new("options", DataType::Array).allow_null())
        .returns(DataType::Bool, false, false)
}

/// Logs one event (`evlog_log()`'s body, run inside [`guard`] by its handler). Returns false
/// when core did not take it (see the module docs).
pub fn evlog_log(
    namespace: &str,
    r#type: &str,
    event: &ZendHashTable,
    options: Option<&ZendHashTable>,
) -> PhpResult<bool> {
    let p = pipeline()?;
    let (time, id) = match options {
        Some(o) => parse_options(o)?,
        None => (None, None),
    };
    // This thread's scratch buffer, kept by core between calls: core copies the body out of it
    // into the lane's ring, so the buffer never leaves this thread (and its cache).
    let mut body = p.buffer();
    match convert::write_event(&mut body, event) {
        Ok(()) => {}
        // A jsonSerialize()/__toString() threw: its own exception propagates to the caller.
        Err(_) if ExecutorGlobals::has_exception() => return Ok(false),
        Err(e) => return Err(Error::Convert(e).into()),
    }
    let input = EventInput {
        namespace,
        type_name: r#type,
        event_json: body.into(),
        time,
        id: id.as_deref(),
    };
    Ok(error::logged(p.log(input)))
}

/// `$options`: `time` (DateTimeInterface, or epoch milliseconds as int/float) and `id` (string).
fn parse_options(o: &ZendHashTable) -> PhpResult<(Option<i64>, Option<String>)> {
    let mut time = None;
    let mut id = None;
    for (key, value) in o {
        let value = value.dereference();
        match key.to_string().as_str() {
            "time" => time = option_time(value)?,
            "id" => match value.get_type() {
                DataType::Null => {}
                DataType::String => {
                    let s = value
                        .str()
                        .ok_or_else(|| argument("option id: must be a valid UTF-8 string"))?;
                    id = Some(s.to_string());
                }
                other => {
                    return Err(argument(format!(
                        "option id: must be a string, got {other}"
                    )))
                }
            },
            other => {
                return Err(argument(format!(
                    "unknown option {other:?} (known options: time, id)"
                )))
            }
        }
    }
    Ok((time, id))
}

fn option_time(value: &Zval) -> PhpResult<Option<i64>> {
    // Out-of-range values saturate so core refuses them as an invalid envelope (false).
    Ok(match value.get_type() {
        DataType::Null => None,
        DataType::Long => Some(value.long().unwrap_or_default().saturating_mul(1000)),
        DataType::Double => {
            let ms = value.double().unwrap_or_default();
            if !ms.is_finite() {
                return Err(argument("option time: must be a finite number of epoch milliseconds"));
            }
            Some((ms * 1000.0).round() as i64)
        }
        DataType::Object(_) => {
            let obj = value.object().ok_or_else(|| argument("option time: unreadable object"))?;
            let is_dt = ClassEntry::try_find("DateTimeInterface")
                .is_some_and(|dt| obj.instance_of(dt));
            if !is_dt {
                return Err(argument(
                    "option time: must be a DateTimeInterface or epoch milliseconds (int/float)",
                ));
            }
            Some(convert::datetime_micros(obj).map_err(|e| argument(format!("option time: {e}")))?)
        }
        other => {
            return Err(argument(format!(
                "option time: must be a DateTimeInterface or epoch milliseconds (int/float), got {other}"
            )))
        }
    })
}

/// Waits until everything logged so far in this process has been answered by the sink, at most
/// `$timeout_ms`. True when all of it was delivered or dead-lettered; false on timeout or when
/// some was spooled or dropped (core's `Pipeline::flush`).
#[php_function]
#[php(defaults(timeout_ms = 1000))]
pub fn evlog_flush(timeout_ms: i64) -> PhpResult<bool> {
    guard("evlog_flush", || {
        let ms = u64::try_from(timeout_ms).map_err(|_| {
            argument(format!(
                "evlog_flush: timeout_ms must be >= 0, got {timeout_ms}"
            ))
        })?;
        Ok(pipeline()?.flush(Duration::from_millis(ms)))
    })
}

/// This process's counters: the names of docs/contracts.md with labels (`evlog_events_dropped_total{reason="queue_full"}`)
/// as keys, integer values; plus `in_flight` and `pid`.
#[php_function]
pub fn evlog_stats() -> PhpResult<ZBox<ZendHashTable>> {
    guard("evlog_stats", || {
        let stats = pipeline()?.stats();
        let mut ht = ZendHashTable::new();
        let put = |ht: &mut ZendHashTable, k: &str, v: i64| {
            ht.insert(k, v)
                .map_err(|e| Error::Host(format!("evlog_stats: {e}")))
        };
        for (name, value) in stats.to_flat() {
            put(&mut ht, &name, value as i64)?;
        }
        put(&mut ht, "in_flight", stats.in_flight)?;
        put(&mut ht, "pid", i64::from(std::process::id()))?;
        Ok(ht)
    })
}

/// Why the last `evlog_log()` returned false, or null after a success.
#[php_function]
pub fn evlog_last_error() -> PhpResult<Option<String>> {
    guard("evlog_last_error", || Ok(error::last_error()))
}

/// MINIT: registers the ini directives. Starts nothing (php-fpm forks after this).
///
/// No directive has a default value (a NULL string, which no php.ini line, `-d` or
/// `php_admin_value` can produce): "not set" reads as `None`, while a bare `null`/`off`/`none`
/// reads as `""`, so `evlog.mode=null` without quotes is detected (see [`ini`]).
fn startup(_ty: i32, module_number: i32) -> i32 {
    let registered = catch_unwind(|| {
        ffi::register_directives(ini::DIRECTIVES.iter().map(|d| d.name), module_number);
    });
    // SUCCESS, or FAILURE: PHP refuses the extension instead of a panic unwinding into it.
    if registered.is_ok() {
        0
    } else {
        -1
    }
}

/// MSHUTDOWN: delivers what is queued within `evlog.shutdown_timeout`.
extern "C" fn shutdown(_ty: i32, _module_number: i32) -> i32 {
    let _ = catch_unwind(|| {
        if let Some(Ok((p, _))) = PIPELINE.get() {
            p.shutdown(p.config().batch.shutdown_timeout);
        }
    });
    0
}

/// A string PHP's info table can print (its rows are C strings).
fn printable(s: impl Into<String>) -> String {
    s.into().replace('\0', "\\0")
}

/// `php --ri evlog` / `phpinfo()`: the pipeline's state, then every directive with the value core
/// uses (from the directive, the TOML file, an `EVLOG_*` variable or the default) and its source,
/// secrets redacted. Once the pipeline runs, the values it was built from; before, resolved now.
extern "C" fn info(_module: *mut ModuleEntry) {
    let _ = catch_unwind(|| {
        info_table_start!();
        info_table_row!("evlog support", "enabled");
        info_table_row!("version", env!("CARGO_PKG_VERSION"));
        let state = match PIPELINE.get() {
            None => "not started in this process (starts on first evlog_log())".to_string(),
            Some(Ok(_)) => format!("running in pid {}", std::process::id()),
            Some(Err(e)) => format!("configuration error: {e}"),
        };
        info_table_row!("pipeline", printable(state));
        info_table_end!();

        info_table_start!();
        info_table_header!("Directive", "Effective value", "Source");
        let effective = match PIPELINE.get() {
            Some(Ok((_, effective))) => Ok(effective.clone()),
            _ => resolve_config().map(|r| r.effective),
        };
        match effective {
            Ok(rows) => {
                for e in rows {
                    info_table_row!(e.name, printable(e.value), e.source.to_string());
                }
            }
            Err(err) => {
                // No effective values: show what the directives say (secrets redacted).
                info_table_row!("configuration error", printable(err.to_string()), "-");
                for d in ini::DIRECTIVES {
                    let (raw, source) = match (ffi::ini_value(d.name), d.kind) {
                        (None, _) => ("(not set)".to_string(), "-"),
                        (Some(_), ini::Kind::Secret) => ("(set, redacted)".to_string(), "php.ini"),
                        (Some(v), _) => (format!("{v:?}"), "php.ini"),
                    };
                    info_table_row!(d.name, printable(raw), source);
                }
            }
        }
        info_table_end!();
    });
}

#[php_module]
#[php(startup = startup)]
pub fn get_module(module: ModuleBuilder) -> ModuleBuilder {
    module
        .name("evlog")
        .class::<EvlogException>()
        .function(evlog_log_function())
        .function(wrap_function!(evlog_flush))
        .function(wrap_function!(evlog_stats))
        .function(wrap_function!(evlog_last_error))
        .shutdown_function(shutdown)
        .info_function(info)
}
