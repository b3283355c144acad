//! The file sink itself: open files, the locked append and its repair of torn tails.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use super::FileSinkConfig;
use crate::sink::{Batch, BatchOutcome, RejectedEvent, Sink, SinkError};
use crate::time;

/// Appends NDJSON files, one per table and day.
#[derive(Debug)]
pub struct FileSink {
    dir: PathBuf,
    fsync: bool,
    max_open: usize,
    dead_letter_table: String,
    pub(super) open: HashMap<PathBuf, (File, u64)>,
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
