//! Cross-language and end-to-end test support for evlog: the BigQuery test server
//! ([`bq::BqTestServer`]), which speaks BigQuery's REST v2 wire format on loopback for the
//! BigQuery sink's tests, and for the OpenSearch sink's tests a launcher of osmem-server
//! ([`opensearch::Osmem`]) and a fault-injecting proxy in front of it
//! ([`opensearch::FaultProxy`]).

pub mod bq;
pub mod opensearch;
pub mod proc_stats;

pub use evlog_core as core;
