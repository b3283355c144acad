//! The null sink: acknowledges every row and keeps nothing (benchmarks, dry runs).
//!
//! Contract: every row of every batch is reported delivered, every dead letter stored; nothing is
//! written anywhere and nothing fails. `sink.kind = "null"` selects it; it has no settings.
//!
//! It is also the template of a sink (see [`crate::sink`]): copy this folder to add one.

mod config;
mod sink;

pub use self::config::NullConfig;
pub use self::sink::NullSink;
