//! Cross-language and end-to-end test support for evlog, and the BigQuery test server
//! ([`bq::BqTestServer`]), which speaks BigQuery's REST v2 wire format on loopback for the
//! BigQuery sink's tests.

pub mod bq;

pub use evlog_core as core;
