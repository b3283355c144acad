//! The configuration error: which key (or file, or variable) and which rule. A leaf: the sinks'
//! own `validate()` return it without depending on the rest of the configuration.

use std::path::PathBuf;

use thiserror::Error;

/// A configuration problem, naming the key (or file) and the rule.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax, unknown key or wrong type.
    #[error("{origin}: {message}")]
    Parse {
        /// File path, `<string>` or the environment variable.
        origin: String,
        /// The parser's message, which names the key and position.
        message: String,
    },
    /// A value that parses but breaks a rule.
    #[error("invalid setting {key}: {rule}")]
    Invalid {
        /// Dotted key, e.g. `batch.max_rows`.
        key: &'static str,
        /// The rule.
        rule: String,
    },
    /// A `[[transforms]]` entry that breaks a rule (its key is built from the entry and path,
    /// e.g. `transforms[2].mask."card"`).
    #[error("invalid setting {0}")]
    Transform(#[from] crate::transform::TransformError),
    /// A value that breaks a rule, at a key built from the configuration's own names
    /// (`destinations.<name>.<key>`, `routes[1].to[0]`).
    #[error("invalid setting {key}: {rule}")]
    InvalidAt {
        /// The key's path, e.g. `routes[1].to[0]`.
        key: String,
        /// The rule.
        rule: String,
    },
    /// An `EVLOG_*` variable that names no key.
    #[error("unknown environment variable {var}: no such setting (keys are EVLOG_<SECTION>_<KEY>, e.g. EVLOG_BATCH_MAX_ROWS)")]
    UnknownEnv {
        /// The variable.
        var: String,
    },
}

impl ConfigError {
    /// `Err(Invalid)` for `key` breaking `rule`: the one way every `validate()` reports.
    pub fn invalid<T>(key: &'static str, rule: impl Into<String>) -> Result<T, ConfigError> {
        Err(ConfigError::Invalid {
            key,
            rule: rule.into(),
        })
    }

    /// `Err(InvalidAt)` for the key path `key` breaking `rule`.
    pub fn invalid_at<T>(
        key: impl Into<String>,
        rule: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::InvalidAt {
            key: key.into(),
            rule: rule.into(),
        })
    }
}
