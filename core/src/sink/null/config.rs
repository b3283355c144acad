//! The null sink's settings: none. There is no `[sink.null]` section; the struct is here so that
//! a sink copied from this folder starts with the shape of a config (serde, `deny_unknown_fields`,
//! `Default`, `validate()`).

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;

/// The null sink's settings (none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NullConfig {}

impl NullConfig {
    /// The section's rules (none).
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
