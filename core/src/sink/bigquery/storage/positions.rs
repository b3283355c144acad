//! The positions file (`exactly_once` with `positions_dir`): each request's stream and offset,
//! written durably before the request is sent, so that rows replayed after a crash (the SDK's
//! spool, the collector's write-ahead log) go back to the same stream and offset.
//!
//! Contract:
//! - One file per process, `<positions_dir>/<pid>-<random>.pos`, lines of JSON:
//!   `["+", first_id, fingerprint, rows, offset, stream]` before a request is sent (fsync'd),
//!   `["-", first_id, fingerprint]` once the rows are known *not* to be there (`row_errors`:
//!   nothing stored; `OUT_OF_RANGE`: past the stream's end). A run is its rows' insert ids in
//!   order ([`fingerprint`], FNV-1a, stable across builds). A delivered run stays: the caller
//!   may still replay those rows (a crash between BigQuery's answer and the spool's or the
//!   log's commit), and they must meet `ALREADY_EXISTS` at their offset. The last
//!   [`MAX_RUNS`] runs are kept.
//! - At start a sink reads every file of the directory: open runs (a `+` without its `-`) are
//!   remembered (see `streams.rs`, `Unsettled`), so the same rows, when they come back, go to
//!   the same place and `ALREADY_EXISTS` tells whether they had landed. Files of processes that
//!   are gone (no `/proc/<pid>`) are taken over: their open runs are written to this process's
//!   file and the old file is removed. Files of live processes are only read.
//! - The file is rewritten with only its kept runs when it passes 4 MiB. It stays at close: the
//!   next process with the same directory needs it for what the spool or log replays.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value};

use super::streams::Slot;

/// Size past which the file is rewritten with only its kept runs.
const COMPACT_BYTES: u64 = 4 * 1024 * 1024;

/// Runs kept (the most recent), in the file and in memory: at 500 rows a request, the
/// positions of the last ~2 million rows sent.
pub(crate) const MAX_RUNS: usize = 4096;

/// A stable fingerprint of a run's insert ids, in order (FNV-1a 64, ids separated by a 0xff
/// byte, which UTF-8 text never holds).
pub(crate) fn fingerprint<'a>(ids: impl Iterator<Item = &'a str>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for id in ids {
        for b in id.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// An open run: `(first id, fingerprint)` → (rows, where they were sent).
pub(crate) type OpenRuns = HashMap<(String, u64), (usize, Slot)>;

/// This process's positions file.
#[derive(Debug)]
pub(crate) struct Positions {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    bytes: u64,
    open: OpenRuns,
    /// `open`'s keys, oldest first.
    order: std::collections::VecDeque<(String, u64)>,
}

fn line(out: &mut Vec<u8>, v: &Value) {
    out.extend_from_slice(v.to_string().as_bytes());
    out.push(b'\n');
}

fn add_line(out: &mut Vec<u8>, key: &(String, u64), rows: usize, slot: &Slot) {
    line(
        out,
        &json!([
            "+",
            key.0,
            format!("{:016x}", key.1),
            rows,
            slot.next,
            slot.name
        ]),
    );
}

/// The open runs of one file.
fn read_file(path: &Path) -> OpenRuns {
    let mut open = OpenRuns::new();
    let Ok(f) = File::open(path) else {
        return open;
    };
    for l in BufReader::new(f).lines() {
        let Ok(l) = l else { break };
        // A torn last line (a crash mid-write) is skipped: its request was not sent yet.
        let Ok(Value::Array(v)) = serde_json::from_str::<Value>(&l) else {
            continue;
        };
        let s = |i: usize| v.get(i).and_then(Value::as_str).unwrap_or_default();
        let Ok(hash) = u64::from_str_radix(s(2), 16) else {
            continue;
        };
        let key = (s(1).to_string(), hash);
        match s(0) {
            "+" => {
                let rows = v.get(3).and_then(Value::as_u64).unwrap_or(0) as usize;
                let next = v.get(4).and_then(Value::as_i64);
                open.insert(
                    key,
                    (
                        rows,
                        Slot {
                            name: s(5).to_string(),
                            next,
                        },
                    ),
                );
            }
            "-" => {
                open.remove(&key);
            }
            _ => {}
        }
    }
    open
}

/// The pid a file name starts with.
fn owner(path: &Path) -> Option<u32> {
    path.file_stem()?.to_str()?.split('-').next()?.parse().ok()
}

impl Positions {
    /// Creates this process's file in `dir` (made if missing) and reads the others: the open
    /// runs found (to remember), and this process's file.
    pub(crate) fn open(dir: &Path) -> std::io::Result<(Self, OpenRuns)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!(
            "{}-{:016x}.pos",
            std::process::id(),
            crate::ids::random_u64()
        ));
        let mut found = OpenRuns::new();
        let mut adopted = OpenRuns::new();
        let mut dead_files = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let p = entry?.path();
            if p.extension().and_then(|e| e.to_str()) != Some("pos") {
                continue;
            }
            let runs = read_file(&p);
            let alive = owner(&p).is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
            if !alive {
                adopted.extend(runs.iter().map(|(k, v)| (k.clone(), v.clone())));
                dead_files.push(p);
            }
            found.extend(runs);
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let me = Positions {
            path,
            inner: Mutex::new(Inner {
                file,
                bytes: 0,
                open: OpenRuns::new(),
                order: std::collections::VecDeque::new(),
            }),
        };
        // Runs of processes that are gone become this process's, durably, before their files go.
        {
            let mut g = me.inner.lock().unwrap_or_else(|e| e.into_inner());
            let mut buf = Vec::new();
            for (k, (rows, slot)) in &adopted {
                add_line(&mut buf, k, *rows, slot);
            }
            g.file.write_all(&buf)?;
            g.file.sync_data()?;
            g.bytes += buf.len() as u64;
            g.order = adopted.keys().cloned().collect();
            g.open = adopted;
        }
        for p in dead_files {
            let _ = std::fs::remove_file(p);
        }
        Ok((me, found))
    }

    /// Records, durably, that the run is about to be sent to `slot`.
    pub(crate) fn sending(
        &self,
        key: &(String, u64),
        rows: usize,
        slot: &Slot,
    ) -> std::io::Result<()> {
        let mut buf = Vec::new();
        add_line(&mut buf, key, rows, slot);
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.file.write_all(&buf)?;
        g.file.sync_data()?;
        g.bytes += buf.len() as u64;
        if g.open.insert(key.clone(), (rows, slot.clone())).is_none() {
            g.order.push_back(key.clone());
        }
        while g.order.len() > MAX_RUNS {
            if let Some(old) = g.order.pop_front() {
                g.open.remove(&old);
            }
        }
        if g.bytes > COMPACT_BYTES {
            let _ = self.compact(&mut g);
        }
        Ok(())
    }

    /// Records that the run is not at the place its line says (no fsync: losing this line only
    /// keeps a run that will not match again, or will be answered `OUT_OF_RANGE` again).
    pub(crate) fn settled(&self, key: &(String, u64)) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // A run another process wrote is settled here too, so a later reader skips it.
        if g.open.remove(key).is_some() {
            g.order.retain(|k| k != key);
        }
        let mut buf = Vec::new();
        line(&mut buf, &json!(["-", key.0, format!("{:016x}", key.1)]));
        if g.file.write_all(&buf).is_ok() {
            g.bytes += buf.len() as u64;
        }
        if g.bytes > COMPACT_BYTES {
            let _ = self.compact(&mut g);
        }
    }

    /// Rewrites the file with only its open runs.
    fn compact(&self, g: &mut Inner) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut buf = Vec::new();
        for k in &g.order {
            if let Some((rows, slot)) = g.open.get(k) {
                add_line(&mut buf, k, *rows, slot);
            }
        }
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_data()?;
        std::fs::rename(&tmp, &self.path)?;
        g.file = OpenOptions::new().append(true).open(&self.path)?;
        g.bytes = buf.len() as u64;
        Ok(())
    }
}
