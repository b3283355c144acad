//! Cross-language and end-to-end test support for evlog. The BigQuery test server lands here with
//! the BigQuery-sink issue.

pub use evlog_core as core;
