//! The disk spool: what could not be delivered waits here, crash-safe, until it can be.
//!
//! Used by the SDK pipeline for batches that failed after the retry budget, for dead letters whose
//! table could not be written, for queue overflow and for what is left at the shutdown deadline;
//! reused by the collector as its write-ahead log. The spool frames opaque payloads; what the
//! pipeline puts in them (rows, raw events, dead letters) is documented in `pipeline::spooled`,
//! what the collector puts in them in its `wal` module.
//!
//! ## On-disk format
//! A spool is a directory of segment files `seg-<created µs, 20 digits>-<pid>-<seq>.evs`, ordered
//! by name. A segment is a sequence of records:
//!
//! ```text
//! +------------+------------+------------------+-------------------+
//! | magic u32  | len u32    | crc32c u32       | payload (len B)   |   all integers little-endian
//! | 0x45564C47 | payload    | of the payload   |                   |
//! +------------+------------+------------------+-------------------+
//! ```
//!
//! Next to a segment, `<segment>.offset` (8 bytes, little-endian u64, replaced atomically by
//! rename) holds the committed offset: every record before it has been acknowledged downstream.
//! A spool read by several independent [`Cursor`]s (the collector's write-ahead log, one per
//! destination) has one offset file per cursor, `<segment>.<cursor>.offset`, and a segment is
//! deleted once every cursor has committed all of it (see `cursor`).
//!
//! ## Invariants
//! - A record is appended with one `write_all` and is acknowledged to the caller only after it
//!   has been written (and fsynced when `fsync` is on). A crash can leave at most a torn tail.
//! - An append whose write or fsync fails is cut off the segment (truncated back) before the
//!   error is returned, so no reader replays records the caller was told were not written; after
//!   a failed fsync the segment is also closed and later appends start a new one.
//! - Exactly one writer per segment: a writer holds an exclusive `flock` on its open segment.
//!   A reader takes the same lock without blocking, so it never replays a segment that a live
//!   writer (this or another process) is still appending to, and two readers never replay the
//!   same segment at once. A dead process's locks vanish with it, so a later process replays
//!   what it left. A reader that gets the lock of a segment another reader has meanwhile
//!   finished and removed (it opened the file before the removal) sees it unlinked and skips
//!   it: its offset file is gone too, and it would replay every record again.
//! - Readers verify magic and CRC. A torn tail (an incomplete last record) ends the segment; a
//!   corrupt record is skipped by scanning forward to the next valid header. Both are counted
//!   (`corrupt_records`, `skipped_bytes`), never fatal.
//! - A segment is deleted once its committed offset reaches its end; its offset file with it.
//! - The total size of segments is bounded by `max_bytes`; an append that would exceed it fails
//!   with [`SpoolError::Full`] and the caller counts the events as dropped (`spool_full`).
//!
//! ## Creating the directory
//! [`Spool::open`] creates the directory at once (the collector's write-ahead log, a configured
//! `spool.dir`). [`Spool::open_lazily`] (the SDK's spool) leaves it to the first append, so a
//! process whose sink never fails creates nothing; until then the spool reads as empty (a
//! missing directory has nothing to replay). With `private`, the directory and its parent are
//! created mode 0700 and must be directories owned by this user that no one else can read or
//! write (the SDK's default, under a shared temporary directory where another user could have
//! made the path first): anything else is [`SpoolError::NotPrivate`], never written to.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{flock, FlockOperation};
use thiserror::Error;

mod cursor;

use self::cursor::Claim;
pub use self::cursor::Cursor;

/// Record header magic ("EVLG" read as little-endian u32).
pub(crate) const MAGIC: u32 = 0x474C_5645;
/// Header bytes before a payload.
pub(crate) const HEADER: usize = 12;
/// Largest payload accepted (bigger is a caller bug; BigQuery requests are ≤ 10 MB).
pub const MAX_RECORD: usize = 64 * 1024 * 1024;

/// Spool errors.
#[derive(Debug, Error)]
pub enum SpoolError {
    /// An I/O error, with the file.
    #[error("spool {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The spool is at `max_bytes`.
    #[error("spool full: {used} of {max} bytes used, record of {record} bytes refused")]
    Full {
        /// Bytes in segments now.
        used: u64,
        /// The bound.
        max: u64,
        /// The refused record's size.
        record: u64,
    },
    /// A record larger than [`MAX_RECORD`].
    #[error("spool record of {0} bytes is larger than the {MAX_RECORD} byte limit")]
    TooLarge(usize),
    /// The directory could not be created.
    #[error(
        "spool.dir: cannot create the spool directory {path}: {source}; set spool.dir \
         (EVLOG_SPOOL_DIR, PHP: evlog.spool_dir) to a directory this user can write, or \
         spool.enabled = false to go without a spool (undeliverable events are then dropped, \
         counted)"
    )]
    Create {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A private spool directory (or its parent) exists but is not this user's alone.
    #[error(
        "spool.dir: {path} {why}; not used, so no one else can read or plant events: remove it, \
         or set spool.dir (EVLOG_SPOOL_DIR, PHP: evlog.spool_dir) to a directory of this user's"
    )]
    NotPrivate {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

/// A private spool directory must be a real directory (not a symlink), owned by this user, with
/// no permission for group or others.
fn check_private(dir: &Path) -> Result<(), SpoolError> {
    let not_private = |why: String| SpoolError::NotPrivate {
        path: dir.to_path_buf(),
        why,
    };
    let meta = fs::symlink_metadata(dir).map_err(|source| SpoolError::Create {
        path: dir.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_dir() {
        return Err(not_private("is not a directory (a symlink?)".into()));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(not_private(format!(
            "belongs to user {}, not to this process's user {me}",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(not_private(format!(
            "has mode {:o}: others may read or write it (0700 expected)",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Counters of one spool handle.
#[derive(Debug, Default)]
pub struct SpoolCounters {
    /// Records appended.
    pub appended: AtomicU64,
    /// Records handed to readers.
    pub replayed: AtomicU64,
    /// Corrupt or torn records skipped.
    pub corrupt_records: AtomicU64,
    /// Bytes skipped while resynchronising.
    pub skipped_bytes: AtomicU64,
}

/// Settings of a spool.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// Directory of segments.
    pub dir: PathBuf,
    /// Bound on the total bytes of segments.
    pub max_bytes: u64,
    /// A writer starts a new segment past this size.
    pub segment_bytes: u64,
    /// fsync (fdatasync) every append.
    pub fsync: bool,
}

/// A spool directory: append records, read them back in order, commit, delete.
#[derive(Debug)]
pub struct Spool {
    opts: SpoolOptions,
    writer: Option<Writer>,
    seq: u64,
    /// Bytes of all segments when last listed, plus what this handle appended since.
    used: u64,
    used_at: Option<std::time::Instant>,
    /// Counters (shared by reads and writes through this handle).
    pub counters: SpoolCounters,
    /// Set by [`Spool::open_lazily`] until the first append creates the directory: whether it
    /// must be private (see the module docs).
    create_private: Option<bool>,
}

#[derive(Debug)]
struct Writer {
    path: PathBuf,
    file: File,
    len: u64,
}

/// A segment opened for replay: holds the segment's lock until dropped.
#[derive(Debug)]
pub struct SegmentReader {
    path: PathBuf,
    file: File,
    /// Where the next read starts.
    pos: u64,
    /// The committed offset (everything before it was acknowledged).
    committed: u64,
    /// End of the last valid record read.
    last_end: u64,
    len: u64,
    /// File bytes from `buf_at` on, read ahead in large chunks: a segment of small records
    /// (one per single-event request in the collector) costs a read per chunk, not two reads
    /// and two seeks per record.
    buf: Vec<u8>,
    buf_at: u64,
    /// For a cursor's reader: the cursor and its claim on the segment (released on drop).
    claim: Option<Claim>,
}

/// Read-ahead of a segment reader.
const READ_AHEAD: usize = 256 * 1024;

/// One record read back, with the offset just past it (to commit once acknowledged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The payload.
    pub payload: Vec<u8>,
    /// Offset just past this record.
    pub end: u64,
}

/// Bytes a record with a payload of `payload_len` bytes takes in a segment (header included):
/// what an append adds to the spool's size, and what committing it frees.
pub fn stored_len(payload_len: usize) -> u64 {
    (payload_len + HEADER) as u64
}

impl Record {
    /// Bytes this record takes in its segment (see [`stored_len`]).
    pub fn stored_len(&self) -> u64 {
        stored_len(self.payload.len())
    }
}

impl Spool {
    /// Opens (creating) the directory.
    pub fn open(opts: SpoolOptions) -> Result<Self, SpoolError> {
        fs::create_dir_all(&opts.dir).map_err(io_err("create directory", &opts.dir))?;
        Ok(Self::lazy(opts, None))
    }

    /// Opens without touching the disk: the first append creates the directory (see the
    /// module docs); until then a missing directory reads as an empty spool.
    pub fn open_lazily(opts: SpoolOptions, private: bool) -> Self {
        Self::lazy(opts, Some(private))
    }

    fn lazy(opts: SpoolOptions, create_private: Option<bool>) -> Self {
        Self {
            opts,
            writer: None,
            seq: 0,
            used: 0,
            used_at: None,
            counters: SpoolCounters::default(),
            create_private,
        }
    }

    /// Creates the directory of a lazily opened spool, once.
    fn create_dir(&mut self) -> Result<(), SpoolError> {
        let Some(private) = self.create_private else {
            return Ok(());
        };
        let dir = &self.opts.dir;
        let create = |source| SpoolError::Create {
            path: dir.clone(),
            source,
        };
        if private {
            use std::os::unix::fs::DirBuilderExt as _;
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(create)?;
            for d in [dir.parent(), Some(dir.as_path())].into_iter().flatten() {
                check_private(d)?;
            }
        } else {
            fs::create_dir_all(dir).map_err(create)?;
        }
        self.create_private = None;
        Ok(())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.opts.dir
    }

    /// Segment files in replay order.
    pub fn segments(&self) -> Result<Vec<PathBuf>, SpoolError> {
        let entries = match fs::read_dir(&self.opts.dir) {
            // Not created yet (opened lazily, nothing appended): nothing to replay.
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.create_private.is_some() => {
                return Ok(Vec::new())
            }
            r => r.map_err(io_err("list", &self.opts.dir))?,
        };
        let mut out: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|e| e == "evs")
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("seg-"))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Bytes not yet committed, over all segments (what the bound applies to).
    pub fn pending_bytes(&self) -> u64 {
        self.segments()
            .unwrap_or_default()
            .iter()
            .map(|p| {
                let len = fs::metadata(p).map_or(0, |m| m.len());
                len.saturating_sub(read_offset(p))
            })
            .sum()
    }

    /// Total bytes of segment files.
    pub(crate) fn used_bytes(&self) -> u64 {
        self.segments()
            .unwrap_or_default()
            .iter()
            .map(|p| fs::metadata(p).map_or(0, |m| m.len()))
            .sum()
    }

    /// Appends records (one `write_all` for all of them); they are durable when this returns Ok.
    pub fn append(&mut self, payloads: &[&[u8]]) -> Result<(), SpoolError> {
        let mut buf = Vec::with_capacity(payloads.iter().map(|p| p.len() + HEADER).sum());
        for p in payloads {
            if p.len() > MAX_RECORD {
                return Err(SpoolError::TooLarge(p.len()));
            }
            buf.extend_from_slice(&MAGIC.to_le_bytes());
            buf.extend_from_slice(&(p.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc32c::crc32c(p).to_le_bytes());
            buf.extend_from_slice(p);
        }
        // Listing the directory per append is slow; other processes' segments change the total,
        // so relist at most once a second, and always when close to the bound.
        let stale = self
            .used_at
            .is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(1));
        if stale || self.used + buf.len() as u64 > self.opts.max_bytes * 9 / 10 {
            self.used = self.used_bytes();
            self.used_at = Some(std::time::Instant::now());
        }
        let used = self.used;
        if used + buf.len() as u64 > self.opts.max_bytes {
            return Err(SpoolError::Full {
                used,
                max: self.opts.max_bytes,
                record: buf.len() as u64,
            });
        }
        if self
            .writer
            .as_ref()
            .is_some_and(|w| w.len > 0 && w.len + buf.len() as u64 > self.opts.segment_bytes)
        {
            self.close_writer();
        }
        let fsync = self.opts.fsync;
        let w = self.writer()?;
        if let Err(e) = w.file.write_all(&buf).and_then(|()| w.file.flush()) {
            // Leave no partial record behind if we can.
            let _ = w.file.set_len(w.len);
            let path = w.path.clone();
            self.writer = None;
            return Err(SpoolError::Io {
                op: "append to",
                path,
                source: e,
            });
        }
        if fsync {
            if let Err(e) = crate::fsync::sync_data(&w.file) {
                // The records may or may not be on disk, and the caller is told they failed: cut
                // them off so no reader replays (delivers) what was reported as not written, and
                // retire the segment (a failed fsync leaves the file's dirty pages in an unknown
                // state; later appends go to a new file).
                let _ = w.file.set_len(w.len);
                let _ = w.file.sync_data();
                let path = w.path.clone();
                self.close_writer();
                return Err(SpoolError::Io {
                    op: "sync",
                    path,
                    source: e,
                });
            }
        }
        w.len += buf.len() as u64;
        self.used += buf.len() as u64;
        self.counters
            .appended
            .fetch_add(payloads.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn writer(&mut self) -> Result<&mut Writer, SpoolError> {
        if self.writer.is_none() {
            self.create_dir()?;
            self.seq += 1;
            let name = format!(
                "seg-{:020}-{}-{:06}.evs",
                crate::time::now_micros().max(0),
                std::process::id(),
                self.seq
            );
            let path = self.opts.dir.join(&name);
            // Created under a name readers do not list, locked, then renamed into place: a reader
            // polling the directory must never find the segment between its creation and the
            // writer's lock (it would take the empty file for a finished one and delete it, and
            // the writer would then append acknowledged records to an unlinked file).
            let tmp = self.opts.dir.join(format!(".{name}.new"));
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .read(true)
                .open(&tmp)
                .map_err(io_err("create", &tmp))?;
            flock(&file, FlockOperation::NonBlockingLockExclusive).map_err(|e| SpoolError::Io {
                op: "lock",
                path: tmp.clone(),
                source: e.into(),
            })?;
            fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
            self.writer = Some(Writer { path, file, len: 0 });
        }
        Ok(self.writer.as_mut().expect("set above"))
    }

    /// Closes the current segment so readers may replay it.
    pub fn close_writer(&mut self) {
        if let Some(w) = self.writer.take() {
            let _ = w.file.sync_data();
            let empty = w.len == 0;
            drop(w.file); // releases the lock
            if empty {
                let _ = fs::remove_file(&w.path);
            }
        }
    }

    /// Opens the oldest segment that nobody is writing or replaying, if any. This handle's own
    /// segment is sealed first (later appends start a new one), so a process can replay what it
    /// spooled itself; replays are rare (the sink was failing), so segments stay few.
    pub fn next_segment(&mut self) -> Result<Option<SegmentReader>, SpoolError> {
        self.close_writer();
        for path in self.segments()? {
            let file = match OpenOptions::new().read(true).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // replayed meanwhile
                Err(e) => return Err(io_err("open", &path)(e)),
            };
            if let Some(reader) = take_segment(path, file)? {
                return Ok(Some(reader));
            }
        }
        Ok(None)
    }
}

/// Locks an opened segment for replay, or None when someone else has it, it was removed after
/// it was opened, or everything in it is committed (then it is removed).
fn take_segment(path: PathBuf, file: File) -> Result<Option<SegmentReader>, SpoolError> {
    if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
        return Ok(None); // a live writer or another reader has it
    }
    let meta = file.metadata().map_err(io_err("stat", &path))?;
    if meta.nlink() == 0 {
        // Another reader finished it and removed it (with its offset file) after this one
        // opened it and before it got the lock: replaying it from offset 0 would deliver every
        // record twice.
        return Ok(None);
    }
    let len = meta.len();
    let committed = read_offset(&path).min(len);
    if committed >= len {
        remove_segment(&path);
        return Ok(None);
    }
    Ok(Some(SegmentReader {
        path,
        file,
        pos: committed,
        committed,
        last_end: committed,
        len,
        buf: Vec::new(),
        buf_at: committed,
        claim: None,
    }))
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.close_writer();
    }
}

fn offset_path(segment: &Path) -> PathBuf {
    cursor_offset_path(segment, "")
}

/// `<segment><suffix>.offset`: `suffix` is `""` for the one reader of a spool, `.<cursor>` for
/// a cursor's.
fn cursor_offset_path(segment: &Path, suffix: &str) -> PathBuf {
    let mut p = segment.as_os_str().to_owned();
    p.push(suffix);
    p.push(".offset");
    PathBuf::from(p)
}

fn read_offset(segment: &Path) -> u64 {
    read_cursor_offset(segment, "")
}

fn read_cursor_offset(segment: &Path, suffix: &str) -> u64 {
    fs::read(cursor_offset_path(segment, suffix))
        .ok()
        .and_then(|b| {
            b.get(..8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        })
        .unwrap_or(0)
}

fn remove_segment(path: &Path) {
    let _ = fs::remove_file(offset_path(path));
    let _ = fs::remove_file(path);
}

impl SegmentReader {
    /// The segment file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the next valid record, skipping corrupt ones; None at the end (or a torn tail).
    pub fn next(&mut self, counters: &SpoolCounters) -> Result<Option<Record>, SpoolError> {
        loop {
            if self.pos + HEADER as u64 > self.len {
                if self.pos < self.len {
                    // A torn header at the tail.
                    counters.corrupt_records.fetch_add(1, Ordering::Relaxed);
                    counters
                        .skipped_bytes
                        .fetch_add(self.len - self.pos, Ordering::Relaxed);
                    self.pos = self.len;
                }
                return Ok(None);
            }
            let header = self.window(self.pos, HEADER)?;
            let magic = u32::from_le_bytes(header[0..4].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(header[4..8].try_into().unwrap_or_default()) as u64;
            let crc = u32::from_le_bytes(header[8..12].try_into().unwrap_or_default());
            let start = self.pos + HEADER as u64;
            if magic == MAGIC && len as usize <= MAX_RECORD {
                if start + len > self.len {
                    // A torn tail: the writer died mid-record.
                    counters.corrupt_records.fetch_add(1, Ordering::Relaxed);
                    counters
                        .skipped_bytes
                        .fetch_add(self.len - self.pos, Ordering::Relaxed);
                    self.pos = self.len;
                    return Ok(None);
                }
                let payload = self.window(start, len as usize)?;
                if crc32c::crc32c(payload) == crc {
                    let payload = payload.to_vec();
                    self.pos = start + len;
                    self.last_end = self.pos;
                    counters.replayed.fetch_add(1, Ordering::Relaxed);
                    return Ok(Some(Record {
                        payload,
                        end: self.pos,
                    }));
                }
            }
            // Corrupt: resynchronise at the next plausible header.
            counters.corrupt_records.fetch_add(1, Ordering::Relaxed);
            let next = self.find_magic(self.pos + 1)?;
            counters
                .skipped_bytes
                .fetch_add(next - self.pos, Ordering::Relaxed);
            self.pos = next;
        }
    }

    /// File bytes `[pos, pos + n)`, which the caller knows lie within the segment: from the
    /// read-ahead buffer, refilled from `pos` (at least `n`, up to [`READ_AHEAD`]) when they are
    /// not all in it.
    fn window(&mut self, pos: u64, n: usize) -> Result<&[u8], SpoolError> {
        let in_buf = pos >= self.buf_at && pos + n as u64 <= self.buf_at + self.buf.len() as u64;
        if !in_buf {
            let want = (n.max(READ_AHEAD) as u64).min(self.len.saturating_sub(pos)) as usize;
            self.buf.resize(want.max(n), 0);
            std::os::unix::fs::FileExt::read_exact_at(&self.file, &mut self.buf, pos)
                .map_err(io_err("read", &self.path))?;
            self.buf_at = pos;
        }
        let off = (pos - self.buf_at) as usize;
        Ok(&self.buf[off..off + n])
    }

    /// The offset of the next magic number at or after `from`, or the end.
    fn find_magic(&mut self, from: u64) -> Result<u64, SpoolError> {
        let needle = MAGIC.to_le_bytes();
        let mut pos = from;
        while pos < self.len {
            let n = ((self.len - pos) as usize).min(READ_AHEAD);
            let chunk = self.window(pos, n)?;
            if let Some(i) = chunk.windows(4).position(|w| w == needle) {
                return Ok(pos + i as u64);
            }
            if n < 4 {
                break;
            }
            pos += (n - 3) as u64;
        }
        Ok(self.len)
    }

    /// Records everything up to `end` as acknowledged (durably); deletes the segment once every
    /// valid record in it is. Returns true when the segment was deleted.
    pub fn commit(&mut self, end: u64) -> Result<bool, SpoolError> {
        self.committed = self.committed.max(end);
        if self.at_end() && self.committed >= self.last_end {
            let Some(claim) = &self.claim else {
                remove_segment(&self.path);
                return Ok(true);
            };
            // This cursor is done with it; the segment goes once every cursor is.
            write_offset(&cursor_offset_path(&self.path, claim.suffix()), self.len)?;
            return Ok(claim.remove_if_done(&self.path, self.len));
        }
        if end < self.committed {
            return Ok(false);
        }
        let suffix = self.claim.as_ref().map_or("", |c| c.suffix());
        write_offset(&cursor_offset_path(&self.path, suffix), end)?;
        Ok(false)
    }

    /// Whether every record has been read.
    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.len
    }
}

/// Writes an offset file durably (a temporary file, fsynced, renamed over it).
fn write_offset(off: &Path, end: u64) -> Result<(), SpoolError> {
    let tmp = off.with_extension("offset.tmp");
    let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_all(&end.to_le_bytes())
        .and_then(|()| f.sync_data())
        .map_err(io_err("write", &tmp))?;
    fs::rename(&tmp, off).map_err(io_err("rename", off))
}

#[cfg(test)]
mod tests;
