//! PHP extension for evlog. Filled by the PHP-extension issue; a shell that builds for now.

pub use evlog_core as core;
