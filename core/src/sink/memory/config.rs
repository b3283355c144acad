//! The memory sink's settings: none, and no `[sink.memory]` section (a host builds the sink in
//! code). The struct keeps the sink in the shape of every other one.

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;

/// The memory sink's settings (none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {}

impl MemoryConfig {
    /// The section's rules (none).
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
