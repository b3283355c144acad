//! Every error an entry point can report, and the one place each becomes what PHP sees.
//!
//! PHP sees two things (the contract in the crate docs):
//! - `false` from `evlog_log()`, with the reason in `evlog_last_error()`: core did not take the
//!   event ([`LogError`]: an invalid envelope, the queue full, shut down; core counted it).
//!   [`logged`] is that mapping.
//! - an `Evlog\Exception` for misuse ([`Error`]): configuration (php.ini directives, the
//!   `evlog.config` file, `EVLOG_*` variables, schemas, the sink), wrong option types, a value
//!   without a JSON form, and a Rust panic caught at an entry point ([`guard`]). The message is
//!   the error's `Display`; the `.phpt` tests assert these texts.
//!
//! The types here are free of PHP types (only the conversion to [`PhpException`] is not), so
//! `ini.rs` builds them and its unit tests read their messages without a PHP runtime.

use std::cell::RefCell;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use evlog_core::config::ConfigError;
use evlog_core::{LogError, PipelineError};
use ext_php_rs::exception::{PhpException, PhpResult};

use crate::convert::ConvertError;
use crate::EvlogException;

/// Why an entry point throws `Evlog\Exception`.
#[derive(Debug)]
pub enum Error {
    /// php.ini names or directive values, or the `evlog.config` file, break a rule of the
    /// binding (names the directive).
    Directive(DirectiveError),
    /// Core refused the configuration built from the directives, the file and `EVLOG_*`.
    Config {
        /// Core's error (names the key and the rule).
        error: ConfigError,
        /// The php.ini directive of the key it names, if there is one.
        directive: Option<&'static str>,
    },
    /// Core could not build the pipeline (configuration, schemas, sink).
    Pipeline(PipelineError),
    /// An event value without a JSON form (names the field).
    Convert(ConvertError),
    /// An argument of an entry point has the wrong type or value (names it).
    Argument(String),
    /// A PHP API call failed (a bug or out of memory).
    Host(String),
    /// A Rust panic caught at an entry point (a bug in evlog).
    Panic {
        /// The entry point.
        function: &'static str,
        /// The panic's message.
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Directive(e) => e.fmt(f),
            Error::Config { error, directive } => {
                // TOML's messages span lines; PHP's exception and `php --ri` show one line.
                let message = error.to_string().replace('\n', " ");
                match directive {
                    Some(name) => write!(f, "{message} (php.ini: {name})"),
                    None => f.write_str(&message),
                }
            }
            // Core's fix names the TOML key and its environment variable; a PHP user sets the
            // directory with a directive.
            Error::Pipeline(
                e @ PipelineError::Schema(evlog_core::schema::SchemaError::Dir { .. }),
            ) => write!(f, "evlog configuration: {e} (php.ini: evlog.schema_dir)"),
            Error::Pipeline(e) => write!(f, "evlog configuration: {e}"),
            Error::Convert(e) => e.fmt(f),
            Error::Argument(message) | Error::Host(message) => f.write_str(message),
            Error::Panic { function, message } => {
                write!(f, "evlog internal error in {function}: {message}")
            }
        }
    }
}

impl std::error::Error for Error {}

/// A rule of the php.ini directives (see `ini.rs`), naming the directive.
#[derive(Debug)]
pub enum DirectiveError {
    /// `evlog.*` names given to PHP that are no directive (sorted).
    Unknown(Vec<String>),
    /// A directive set to an empty value (PHP's reading of bare `null`, `off`, ...).
    Empty {
        /// The directive.
        name: &'static str,
        /// A quoted setting to suggest, e.g. `evlog.mode="null" for the null sink`.
        example: Option<String>,
    },
    /// A directive of an earlier version.
    Renamed {
        /// The old name.
        name: &'static str,
        /// Its replacement.
        new: &'static str,
    },
    /// `evlog.mode = collector`: that sink is called `forward`.
    CollectorMode {
        /// The directive.
        name: &'static str,
    },
    /// A value outside a fixed set of words.
    NotOneOf {
        /// The directive.
        name: &'static str,
        /// The value given.
        value: String,
        /// The words allowed.
        allowed: &'static [&'static str],
        /// Whether the words are sink modes (the message says "unknown mode").
        mode: bool,
    },
    /// Not a non-negative integer.
    NotInteger {
        /// The directive.
        name: &'static str,
        /// The value given.
        value: String,
    },
    /// A comma-separated list with an empty item (`a,,b`, a trailing comma).
    EmptyListItem {
        /// The directive.
        name: &'static str,
    },
    /// Not a boolean word.
    NotBoolean {
        /// The directive.
        name: &'static str,
        /// The value given.
        value: String,
        /// Whether `auto` is allowed too.
        or_auto: bool,
    },
    /// The `evlog.config` file cannot be read.
    ReadFile {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The `evlog.config` file is not valid TOML.
    ParseFile {
        /// The path.
        path: String,
        /// The parser's message (names the line).
        source: toml::de::Error,
    },
    /// The merged settings cannot be written as TOML for core.
    Serialize {
        /// The file and directives they came from.
        origin: String,
        /// Why.
        source: toml::ser::Error,
    },
}

impl fmt::Display for DirectiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirectiveError::Unknown(names) => write!(
                f,
                "unknown php.ini directive {}: no such evlog setting (`php --ri evlog` lists them)",
                names.join(", ")
            ),
            DirectiveError::Empty { name, example } => {
                let example = example
                    .as_ref()
                    .map(|e| format!(" (e.g. {e})"))
                    .unwrap_or_default();
                write!(
                    f,
                    "{name} is set to an empty value: PHP's ini parser reads the bare words null, off, \
                     no, false and none as \"\"; quote the value{example}, or remove the line to keep \
                     the value from evlog.config or the default"
                )
            }
            DirectiveError::Renamed { name, new } => write!(
                f,
                "{name} was renamed {new} (it is used with evlog.mode=forward); set {new} instead"
            ),
            DirectiveError::CollectorMode { name } => write!(
                f,
                "{name} = collector: the sink that sends events to an evlog collector is called \
                 forward: set evlog.mode=forward and evlog.forward_url"
            ),
            DirectiveError::NotOneOf {
                name,
                value,
                allowed,
                mode: true,
            } => write!(
                f,
                "{name} = {value}: unknown mode (expected {})",
                allowed.join(", ")
            ),
            DirectiveError::NotOneOf {
                name,
                value,
                allowed,
                mode: false,
            } => write!(f, "{name} = {value}: must be one of {}", allowed.join(", ")),
            DirectiveError::NotInteger { name, value } => {
                write!(f, "{name} = {value}: must be a non-negative integer")
            }
            DirectiveError::EmptyListItem { name } => write!(
                f,
                "{name}: an empty item in the comma-separated list (a doubled or trailing comma?)"
            ),
            DirectiveError::NotBoolean {
                name,
                value,
                or_auto,
            } => write!(
                f,
                "{name} = {value}: must be a boolean (1/0, on/off, yes/no, true/false){}",
                if *or_auto { " or auto" } else { "" }
            ),
            DirectiveError::ReadFile { path, source } => {
                write!(f, "evlog.config: cannot read {path}: {source}")
            }
            DirectiveError::ParseFile { path, source } => {
                write!(f, "evlog.config = {path}: {source}")
            }
            DirectiveError::Serialize { origin, source } => write!(f, "{origin}: {source}"),
        }
    }
}

impl From<DirectiveError> for Error {
    fn from(e: DirectiveError) -> Self {
        Error::Directive(e)
    }
}

impl From<PipelineError> for Error {
    fn from(e: PipelineError) -> Self {
        Error::Pipeline(e)
    }
}

impl From<ConvertError> for Error {
    fn from(e: ConvertError) -> Self {
        Error::Convert(e)
    }
}

impl From<&Error> for PhpException {
    fn from(e: &Error) -> Self {
        PhpException::from_class::<EvlogException>(e.to_string())
    }
}

impl From<Error> for PhpException {
    fn from(e: Error) -> Self {
        PhpException::from(&e)
    }
}

thread_local! {
    /// Why the last `evlog_log()` in this process returned false (cleared by a success).
    static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Set once any thread of this process has kept an error in [`LAST_ERROR`]: until then a
/// success has no slot to clear and skips the thread-local (in a loaded library each access is a
/// `__tls_get_addr` call, ~75 instructions per `evlog_log()`). Never reset: a thread reads its
/// own slot from then on.
static ANY_ERROR: AtomicBool = AtomicBool::new(false);

/// `evlog_log()`'s answer for core's: true when taken; false when not, with the reason kept for
/// `evlog_last_error()` (every [`LogError`] is counted by core, none is an exception).
pub fn logged(result: Result<(), LogError>) -> bool {
    match result {
        Ok(()) => {
            // Relaxed: a thread's own error set the flag before its slot, in program order.
            if ANY_ERROR.load(Ordering::Relaxed) {
                set_last_error(None);
            }
            true
        }
        Err(e @ (LogError::Invalid(_) | LogError::QueueFull(_) | LogError::ShutDown)) => {
            set_last_error(Some(e.to_string()));
            false
        }
    }
}

/// What `evlog_last_error()` returns.
pub fn last_error() -> Option<String> {
    LAST_ERROR.with(|l| l.borrow().clone())
}

fn set_last_error(e: Option<String>) {
    if e.is_some() {
        ANY_ERROR.store(true, Ordering::Relaxed);
    }
    LAST_ERROR.with(|l| {
        let mut l = l.borrow_mut();
        // A success after a success writes nothing: the hot path leaves the slot alone.
        if l.is_some() || e.is_some() {
            *l = e;
        }
    });
}

/// Runs an entry point's body, turning a Rust panic into an `Evlog\Exception`
/// ([`Error::Panic`]): a panic must never unwind into PHP.
pub fn guard<T>(function: &'static str, f: impl FnOnce() -> PhpResult<T>) -> PhpResult<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(Error::Panic {
            function,
            message: panic_message(panic.as_ref()),
        }
        .into())
    })
}

/// The text of a panic payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_config_errors_name_the_directive_on_one_line() {
        let e = Error::Config {
            error: ConfigError::Invalid {
                key: "batch.max_rows",
                rule: "must be\n1..=50000".into(),
            },
            directive: Some("evlog.batch_max_rows"),
        };
        assert_eq!(
            e.to_string(),
            "invalid setting batch.max_rows: must be 1..=50000 (php.ini: evlog.batch_max_rows)"
        );
    }

    #[test]
    fn panics_name_the_entry_point() {
        // (`guard` itself needs PHP: the exception's class entry exists once MINIT ran.)
        let panic = catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(panic_message(panic.as_ref()), "boom 1");
        let e = Error::Panic {
            function: "evlog_flush",
            message: "boom".into(),
        };
        assert_eq!(e.to_string(), "evlog internal error in evlog_flush: boom");
    }

    #[test]
    fn the_last_error_is_kept_until_a_success() {
        assert!(!logged(Err(LogError::ShutDown)));
        assert_eq!(
            last_error().as_deref(),
            Some("event dropped: the pipeline is shut down")
        );
        assert!(logged(Ok(())));
        assert_eq!(last_error(), None);
    }
}
