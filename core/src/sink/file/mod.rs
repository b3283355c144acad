//! The file sink: the embedded default.
//!
//! Layout under `dir`:
//! - `<dataset>/<table><YYYYMMDD>.ndjson` — rows of a day-sharded table (`<table>$<YYYYMMDD>.ndjson`
//!   for a partitioned one), one JSON object per line, exactly as BigQuery stores them, so
//!   `bq load --source_format=NEWLINE_DELIMITED_JSON <dataset>.<table><YYYYMMDD> <file> <schema>`
//!   loads them;
//! - `<dataset>/<dead_letter_table>.ndjson` — rejected events (schema:
//!   [`DEAD_LETTER_SCHEMA`](crate::sink::DEAD_LETTER_SCHEMA)).
//!
//! Write contract: a batch is appended whole. Each write takes an exclusive `flock` on the file (so
//! several processes — php-fpm workers, gunicorn workers — can share one directory without
//! interleaving), repairs a torn tail left by a writer that died mid-write (truncates back to the
//! last newline: those rows were never acknowledged), appends the batch with `O_APPEND`, and flushes
//! to the kernel (optionally fdatasync). If a write or its fdatasync fails, the file is truncated back
//! to its length before the write, so a failed batch (which the pipeline retries) leaves no line
//! behind: no partial line, and no copy of rows that will be written again.
//!
//! Settings: `[sink.file]` ([`FileSinkConfig`]). Files stay open (at most `max_open_files`, least
//! recently used closed first); `close()` fdatasyncs them when `fsync` is on.

mod config;
mod sink;
#[cfg(test)]
mod tests;

pub use self::config::FileSinkConfig;
pub use self::sink::FileSink;
