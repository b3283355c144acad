//! The file sink: the embedded default.
//!
//! Layout under `dir`:
//! - `<dataset>/<table><YYYYMMDD>.ndjson` — rows of a day-sharded table (`<table>$<YYYYMMDD>.ndjson`
//!   for a partitioned one), one JSON object per line, exactly as BigQuery stores them, so
//!   `bq load --source_format=NEWLINE_DELIMITED_JSON <dataset>.<table><YYYYMMDD> <file> <schema>`
//!   loads them;
//! - `<dataset>/<dead_letter_table>.ndjson` — rejected events (schema:
//!   [`super::DEAD_LETTER_SCHEMA`]).
//!
//! Write contract: a batch is appended whole. Each write takes an exclusive `flock` on the file (so
//! several processes — php-fpm workers, gunicorn workers — can share one directory without
//! interleaving), repairs a torn tail left by a writer that died mid-write (truncates back to the
//! last newline: those rows were never acknowledged), appends the batch with `O_APPEND`, and flushes
//! to the kernel (optionally fdatasync). If a write or its fdatasync fails, the file is truncated back
//! to its length before the write, so a failed batch (which the pipeline retries) leaves no line
//! behind: no partial line, and no copy of rows that will be written again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use super::{Batch, BatchOutcome, RejectedEvent, Sink, SinkError};
use crate::config::FileSinkConfig;
use crate::time;

/// Appends NDJSON files, one per table and day.
#[derive(Debug)]
pub struct FileSink {
    dir: PathBuf,
    fsync: bool,
    max_open: usize,
    dead_letter_table: String,
    open: HashMap<PathBuf, (File, u64)>,
    uses: u64,
    buf: Vec<u8>,
}

impl FileSink {
    /// Creates the directory if needed.
    pub fn new(config: &FileSinkConfig) -> Result<Self, SinkError> {
        std::fs::create_dir_all(&config.dir).map_err(|source| SinkError::Io {
            op: "create directory",
            path: config.dir.clone(),
            source,
        })?;
        Ok(Self {
            dir: config.dir.clone(),
            fsync: config.fsync,
            max_open: config.max_open_files.max(1),
            dead_letter_table: config.dead_letter_table.clone(),
            open: HashMap::new(),
            uses: 0,
            buf: Vec::new(),
        })
    }

    /// The file a destination's rows go to.
    pub fn path_for(&self, dataset: &str, file_name: &str) -> PathBuf {
        self.dir.join(dataset).join(file_name)
    }

    fn file(&mut self, path: &Path) -> Result<&File, SinkError> {
        self.uses += 1;
        let uses = self.uses;
        if !self.open.contains_key(path) {
            if self.open.len() >= self.max_open {
                // Close the least recently used file.
                if let Some(oldest) = self
                    .open
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(p, _)| p.clone())
                {
                    self.open.remove(&oldest);
                }
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| SinkError::Io {
                    op: "create directory",
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .read(true)
                .open(path)
                .map_err(|source| SinkError::Io {
                    op: "open",
                    path: path.to_path_buf(),
                    source,
                })?;
            self.open.insert(path.to_path_buf(), (file, uses));
        }
        let entry = self.open.get_mut(path).expect("inserted above");
        entry.1 = uses;
        Ok(&entry.0)
    }

    /// Appends `self.buf` (whole lines) to `path` under the file lock.
    fn append(&mut self, path: &Path) -> Result<(), SinkError> {
        let fsync = self.fsync;
        let buf = std::mem::take(&mut self.buf);
        let result = self.file(path).and_then(|file| {
            append_locked(file, &buf, fsync).map_err(|source| SinkError::Io {
                op: "append to",
                path: path.to_path_buf(),
                source,
            })
        });
        if result.is_err() {
            // The handle may be bad (e.g. the file was removed); reopen next time.
            self.open.remove(path);
        }
        self.buf = buf;
        self.buf.clear();
        result
    }
}

fn append_locked(file: &File, data: &[u8], fsync: bool) -> std::io::Result<()> {
    flock(file, FlockOperation::LockExclusive)?;
    let result = (|| {
        let len = repair_torn_tail(file)?;
        let mut f = file;
        if let Err(e) = f.write_all(data).and_then(|()| f.flush()) {
            // Leave no partial batch behind.
            let _ = file.set_len(len);
            return Err(e);
        }
        if fsync {
            if let Err(e) = crate::fsync::sync_data(file) {
                // Reported as failed (and retried): leave no copy behind (see `crate::fsync`).
                let _ = file.set_len(len);
                return Err(e);
            }
        }
        Ok(())
    })();
    let _ = flock(file, FlockOperation::Unlock);
    result
}

/// If the file does not end with a newline, a writer died mid-write: cut back to the last newline.
/// Returns the file's length afterwards.
fn repair_torn_tail(file: &File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    if last[0] == b'\n' {
        return Ok(len);
    }
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        file.read_exact_at(part, start)?;
        if let Some(i) = part.iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            file.set_len(keep)?;
            return Ok(keep);
        }
        end = start;
    }
    file.set_len(0)?;
    Ok(0)
}

impl Sink for FileSink {
    fn name(&self) -> &'static str {
        "file"
    }

    fn deliver(&mut self, batches: Vec<Batch>) -> Vec<BatchOutcome> {
        batches
            .into_iter()
            .map(|batch| {
                let path =
                    self.path_for(&batch.destination.dataset, &batch.destination.file_name());
                self.buf.clear();
                self.buf.reserve(batch.bytes + batch.rows.len());
                for row in &batch.rows {
                    self.buf.extend_from_slice(row.json.as_bytes());
                    self.buf.push(b'\n');
                }
                match self.append(&path) {
                    Ok(()) => BatchOutcome::delivered(batch.rows.len()),
                    Err(e) => BatchOutcome::failed(batch.rows, e),
                }
            })
            .collect()
    }

    fn dead_letter(&mut self, events: &[RejectedEvent]) -> Result<(), SinkError> {
        let now = time::now_micros();
        let mut by_dataset: HashMap<&str, Vec<&RejectedEvent>> = HashMap::new();
        for e in events {
            by_dataset.entry(&e.dataset).or_default().push(e);
        }
        let mut result = Ok(());
        for (dataset, events) in by_dataset {
            let path = self.path_for(dataset, &format!("{}.ndjson", self.dead_letter_table));
            self.buf.clear();
            for e in events {
                self.buf.extend_from_slice(e.to_row_json(now).as_bytes());
                self.buf.push(b'\n');
            }
            if let Err(e) = self.append(&path) {
                result = Err(e);
            }
        }
        result
    }

    fn close(&mut self) -> Result<(), SinkError> {
        for (path, (file, _)) in self.open.drain() {
            if self.fsync {
                file.sync_data().map_err(|source| SinkError::Io {
                    op: "sync",
                    path,
                    source,
                })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use compact_str::CompactString;

    use super::*;
    use crate::routing::{Destination, PartitionKind};
    use crate::sink::EncodedRow;

    fn batch(rows: &[&str]) -> Batch {
        Batch {
            destination: Destination {
                dataset: "events".into(),
                table: "transaction".into(),
                partitioning: PartitionKind::DayShard,
                day: CompactString::from("20261122"),
            },
            rows: rows
                .iter()
                .enumerate()
                .map(|(i, r)| EncodedRow {
                    insert_id: i.to_string(),
                    json: r.to_string(),
                })
                .collect(),
            bytes: rows.iter().map(|r| r.len()).sum(),
        }
    }

    #[test]
    fn appends_whole_batches_and_repairs_torn_tails() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = FileSinkConfig {
            dir: dir.path().to_path_buf(),
            ..FileSinkConfig::default()
        };
        let mut sink = FileSink::new(&cfg).unwrap();
        let out = sink.deliver(vec![batch(&[r#"{"a":1}"#, r#"{"a":2}"#])]);
        assert_eq!(out[0].delivered, 2);
        let path = dir.path().join("events/transaction20261122.ndjson");
        // Simulate a writer killed mid-line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"a\":")
            .unwrap();
        let mut other = FileSink::new(&cfg).unwrap();
        other.deliver(vec![batch(&[r#"{"a":3}"#])]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");
    }

    #[test]
    fn a_batch_whose_fsync_fails_leaves_no_rows_behind() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = FileSinkConfig {
            dir: dir.path().to_path_buf(),
            fsync: true,
            ..FileSinkConfig::default()
        };
        let mut sink = FileSink::new(&cfg).unwrap();
        assert_eq!(sink.deliver(vec![batch(&[r#"{"a":1}"#])])[0].delivered, 1);
        crate::fsync::fail_next();
        let out = sink.deliver(vec![batch(&[r#"{"a":2}"#, r#"{"a":3}"#])]);
        assert_eq!(out[0].delivered, 0);
        assert_eq!(out[0].failed.len(), 2);
        let err = out[0].error.as_ref().expect("an error").to_string();
        assert!(err.contains("injected fsync failure"), "{err}");
        let path = dir.path().join("events/transaction20261122.ndjson");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n");
        // The retry lands once.
        assert_eq!(
            sink.deliver(vec![batch(&[r#"{"a":2}"#, r#"{"a":3}"#])])[0].delivered,
            2
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"
        );
    }

    #[test]
    fn failed_open_reports_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = FileSinkConfig {
            dir: dir.path().to_path_buf(),
            ..FileSinkConfig::default()
        };
        let mut sink = FileSink::new(&cfg).unwrap();
        // A directory where the dataset directory should be a file's parent: make "events" a file.
        std::fs::write(dir.path().join("events"), b"x").unwrap();
        let out = sink.deliver(vec![batch(&[r#"{"a":1}"#])]);
        assert_eq!(out[0].delivered, 0);
        assert_eq!(out[0].failed.len(), 1);
        let msg = out[0].error.as_ref().unwrap().to_string();
        assert!(msg.contains("events"), "{msg}");
    }

    #[test]
    fn closes_least_recently_used_files() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = FileSinkConfig {
            dir: dir.path().to_path_buf(),
            max_open_files: 1,
            ..FileSinkConfig::default()
        };
        let mut sink = FileSink::new(&cfg).unwrap();
        let mut b2 = batch(&[r#"{"b":1}"#]);
        b2.destination.day = "20261123".into();
        sink.deliver(vec![batch(&[r#"{"a":1}"#]), b2, batch(&[r#"{"a":2}"#])]);
        assert_eq!(sink.open.len(), 1);
        let a =
            std::fs::read_to_string(dir.path().join("events/transaction20261122.ndjson")).unwrap();
        assert_eq!(a.lines().count(), 2);
    }
}
