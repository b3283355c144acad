//! Python binding for evlog. Filled by the Python-binding issue; a shell that builds for now.

pub use evlog_core as core;
