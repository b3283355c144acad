//! `[sink.file]`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;

/// `[sink.file]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSinkConfig {
    /// Directory that receives `<dataset>/<table><YYYYMMDD>.ndjson` files.
    pub dir: PathBuf,
    /// fsync (fdatasync) after every batch. Off: a batch is handed to the kernel whole, which
    /// survives a process crash but not a power loss.
    pub fsync: bool,
    /// Most files kept open at once; older ones are closed and reopened when needed.
    pub max_open_files: usize,
    /// Name of the per-dataset dead-letter table (file `<dataset>/<name>.ndjson`).
    pub dead_letter_table: String,
}

impl Default for FileSinkConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("evlog-data"),
            fsync: false,
            max_open_files: 64,
            dead_letter_table: "_evlog_rejected".into(),
        }
    }
}

impl FileSinkConfig {
    /// The section's rules (checked whichever sink is selected).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_open_files == 0 {
            return ConfigError::invalid("sink.file.max_open_files", "must be at least 1");
        }
        if let Err(rule) = crate::envelope::check_table_name(&self.dead_letter_table) {
            return ConfigError::invalid("sink.file.dead_letter_table", rule);
        }
        Ok(())
    }
}
