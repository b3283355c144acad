//! Per-thread lanes: the path an event takes from `log()` to the flush thread.
//!
//! Each thread that logs into a pipeline gets its own single-producer, single-consumer lane, so
//! `log()` shares no queue tail with other threads and publishes an event with one release
//! store. A lane is a byte ring ([`RING_BYTES`], `rtrb`) into which the producer writes each
//! event as one record: the envelope's fields and the body, one after the other (the layout is
//! in [`record`]). The flush thread reads them out in the same sequential stream, so an event
//! costs the two cores the lines of its own bytes (~120 for the bench's events) and nothing
//! else: no slot of a fixed size beside them and no buffer passed across. The lane's names
//! travel only when they change, and a generated id is made by the consumer from the event's
//! `received_at` as it reads the record. Before this, a lane was a ring of 144-byte slots with
//! the bodies in a byte ring beside it (docs/php-cost.md, session 25).
//!
//! When a record does not fit the producer's ring (but for the room always left for a marker),
//! the producer moves on to a ring the consumer has emptied, or a new one, and writes a marker
//! naming it; the consumer follows the markers, so the lane keeps one order and never refuses
//! an event. Rings are reused (no allocation or page faults in a steady state); up to
//! [`MAX_KEPT`] are kept, and a deeper backlog goes to one-shot rings that are freed once read.
//! The pipeline's bounds (events and bytes) are enforced by the reservation in `log()`, not
//! here. A body larger than [`INLINE_MAX`] travels in a buffer of its own, through the lane's
//! queue of such events, with a record in the ring that keeps its place in the order.
//!
//! The producer writes a body into its own scratch buffer ([`LaneIo::take_scratch`], what
//! `Pipeline::buffer` hands a binding; it never leaves the thread) and `log()` copies it into
//! the ring. The consumer copies it out into a buffer of its own stash ([`Lanes`]; the state's
//! pool when that is empty), so it does not pop the pool the producers pop. Buffers the
//! consumer is done with go to its stash (last in, first out: the same thread reuses the one
//! hottest in its cache), then to the state's shared pool, which hands out the oldest first.
//!
//! Contract:
//! - A lane belongs to one (thread, pipeline, fork generation): the thread-local list is keyed
//!   by the pipeline's unique id and the fork generation, and caches the pipeline's per-process
//!   state, so `log()` does not load it each time. After `fork()` the child's generation differs,
//!   so the parent's lanes (copied into the child) are never used there.
//! - The producer is dropped when its thread exits (thread-local destructor); it marks the lane
//!   closed, and the consumer removes the lane once it has taken every event in it. Entries of
//!   pipelines that are gone are pruned when the thread next adds a lane.
//! - The consumer side ([`Lanes`]) is owned by the flush thread alone. New lanes reach it through
//!   the state's registration queue.
//! - Events of one thread come out in the order they were logged; there is no order across
//!   threads (none is promised: BigQuery rows have no order).
//! - When thread-locals are unavailable (a thread being torn down, or a re-entrant call from a
//!   signal handler), `log()` falls back to the state's shared queue, which the consumer drains
//!   too.

mod record;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use compact_str::CompactString;
use crossbeam_queue::{ArrayQueue, SegQueue};

use self::record::{EventRecord, Record, Target};
use super::ProcState;
use crate::envelope::{self, EnvelopeError};
use crate::ingest::{EventId, RawEvent};

/// Bytes of one of a lane's rings. While events flow the flush thread is paced to wake when
/// half of this in bodies has queued, or 512 events if they come first (`flush::PACED_BYTES`),
/// so a steady producer stays in one ring, and the other half is room for a late wake-up and
/// the records' envelopes (~30 bytes an event).
pub(super) const RING_BYTES: usize = 128 * 1024;
/// Rings a lane keeps for reuse (512 KiB, ~4,000 of the bench's events): a steady producer uses
/// one. Beyond them a burst gets one-shot rings, freed once read, so a burst does not leave a
/// worker holding megabytes for its whole life (64 kept rings of slots were ~2.2 MiB per
/// php-fpm worker, docs/php-cost.md).
const MAX_KEPT: usize = 4;
/// Largest body copied into the ring; a larger one travels in its own buffer (a few such
/// bodies would fill the ring, and copying them costs more than the buffer's cache misses).
const INLINE_MAX: usize = 4 * 1024;
/// Buffers the consumer keeps for the bodies it reads out of the rings: what one drain has in
/// hand at once is usually one (a sink copies or converts the body, then hands it back).
const STASH_BUFFERS: usize = 256;

/// The ring one side is on.
enum Cur<R> {
    Kept(usize),
    OneShot(R),
}

/// What the producer and the consumer of one lane share besides the rings.
#[derive(Debug, Default)]
pub(super) struct LaneShared {
    /// Set when the producer is gone; every event it pushed is visible to whoever reads `true`.
    closed: AtomicBool,
    /// Consumer ends of new rings, in the order the producer's markers name them.
    new_rings: SegQueue<rtrb::Consumer<u8>>,
    /// Events whose bodies are in buffers of their own, in the order their records name them.
    own_buffers: SegQueue<RawEvent>,
}

/// The producer end, kept in a thread-local list: the pipeline state it feeds (cached here so
/// `log()` does not load it from the pipeline each time) and the lane itself.
pub(super) struct LaneProducer {
    pipeline_id: u64,
    generation: u64,
    state: Arc<ProcState>,
    io: LaneIo,
}

/// What `log()` stamps on an event, besides the thread's names and the body.
#[derive(Debug)]
pub(super) struct Stamp<'a> {
    /// The caller's event time (µs), if given.
    pub(super) time: Option<i64>,
    /// When the event was taken (µs).
    pub(super) received_at: i64,
    /// The caller's id (checked), if given; else the consumer generates one.
    pub(super) id: Option<&'a str>,
}

/// What a producer writes to.
pub(super) struct LaneIo {
    rings: Rings,
    /// The last (namespace, type) pair that passed the name checks on this thread: most threads
    /// log a handful of names, so most calls compare instead of checking again.
    names: Option<(CompactString, CompactString)>,
    /// `names` changed since the last record that carried them: the next record carries them.
    names_unsent: bool,
    /// The buffer a binding writes the next body into (`Pipeline::buffer`): back here once its
    /// text is in the ring, so it never leaves this thread and stays in its cache.
    scratch: String,
}

impl std::fmt::Debug for LaneIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneIo").finish_non_exhaustive()
    }
}

impl LaneIo {
    /// Checks the names (or finds them the same as the last ones that passed) and makes them
    /// this thread's for the next [`Self::push`].
    #[inline]
    pub(super) fn check_names(
        &mut self,
        namespace: &str,
        type_name: &str,
    ) -> Result<(), EnvelopeError> {
        if let Some((ns, ty)) = &self.names {
            if same(ns.as_bytes(), namespace.as_bytes())
                && same(ty.as_bytes(), type_name.as_bytes())
            {
                return Ok(());
            }
        }
        self.names = Some(checked_names(namespace, type_name)?);
        self.names_unsent = true;
        Ok(())
    }

    /// Publishes an event with the names last checked ([`Self::check_names`]), `stamp` and
    /// `body`: one record in the ring when the body is at most [`INLINE_MAX`] bytes (an owned
    /// buffer then kept as this thread's scratch), else in its own buffer (a borrowed body
    /// copied into one from `pool`).
    #[inline]
    pub(super) fn push(&mut self, stamp: Stamp<'_>, body: Cow<'_, str>, pool: &ArrayQueue<String>) {
        if body.len() > INLINE_MAX {
            let (namespace, type_name) = self.names.clone().expect("names checked first");
            self.push_own(RawEvent {
                namespace,
                type_name,
                time: stamp.time,
                received_at: stamp.received_at,
                id: EventId::given_or_new(stamp.id, stamp.received_at),
                body: owned_body(body, pool),
            });
            return;
        }
        let names = self.names.as_ref().expect("names checked first");
        let rec = EventRecord {
            names: self
                .names_unsent
                .then(|| (names.0.as_str(), names.1.as_str())),
            time: stamp.time,
            received_at: stamp.received_at,
            id: stamp.id,
            body: body.as_bytes(),
        };
        let size = rec.size();
        // Room for the record and a marker behind it.
        let chunk = self.rings.chunk(size + record::MARKER_BYTES);
        publish(chunk, size, |first, second| rec.write(first, second));
        self.names_unsent = false;
        if let Cow::Owned(mut s) = body {
            if self.scratch.capacity() == 0 && s.capacity() <= super::POOL_MAX_CAPACITY {
                s.clear();
                self.scratch = s;
            }
        }
    }

    /// Publishes an event whose body is in its own buffer, with its place in the ring.
    fn push_own(&mut self, event: RawEvent) {
        // Queued before the record that names it.
        self.rings.shared.own_buffers.push(event);
        let rec = record::OWN_BUFFER_RECORD;
        let chunk = self.rings.chunk(rec.len() + record::MARKER_BYTES);
        publish(chunk, rec.len(), |first, second| {
            let (a, b) = rec.split_at(first.len());
            first.copy_from_slice(a);
            second.copy_from_slice(b);
        });
    }

    /// This thread's scratch buffer (empty), if it keeps one: what `Pipeline::buffer` hands a
    /// binding, back here by [`Self::push`].
    #[inline]
    pub(super) fn take_scratch(&mut self) -> Option<String> {
        if self.scratch.capacity() == 0 {
            return None;
        }
        Some(std::mem::take(&mut self.scratch))
    }
}

/// A producer's rings.
struct Rings {
    kept: Vec<rtrb::Producer<u8>>,
    cur: Cur<rtrb::Producer<u8>>,
    shared: Arc<LaneShared>,
}

impl Rings {
    /// `n` bytes to write in the current ring, or in the next one when it has not that many
    /// free (every record asks for room for a marker too, so the marker always fits).
    #[inline]
    fn chunk(&mut self, n: usize) -> rtrb::chunks::WriteChunk<'_, u8> {
        // Asked twice (a compare with the cached head, nearly always): a chunk returned from the
        // first ask would keep the ring borrowed through `next_ring` on the error path.
        if self.ring().write_chunk_uninit(n).is_err() {
            self.next_ring();
        }
        self.ring()
            .write_chunk(n)
            .expect("an empty ring holds any record up to INLINE_MAX")
    }

    fn ring(&mut self) -> &mut rtrb::Producer<u8> {
        match &mut self.cur {
            Cur::Kept(i) => &mut self.kept[*i],
            Cur::OneShot(r) => r,
        }
    }

    /// Moves on from a ring too full for the next record to an empty kept ring or a new one,
    /// and writes the marker that tells the consumer which (every record left room for it).
    #[cold]
    fn next_ring(&mut self) {
        let current = match self.cur {
            Cur::Kept(i) => Some(i),
            Cur::OneShot(_) => None,
        };
        // Empty means the consumer has read this ring to its marker and moved past it.
        let reusable = (0..self.kept.len())
            .find(|&i| Some(i) != current && self.kept[i].slots() == RING_BYTES);
        let (target, next) = match reusable {
            Some(i) => (Target::Kept(i), Cur::Kept(i)),
            None => {
                let (producer, consumer) = rtrb::RingBuffer::new(RING_BYTES);
                // Published before the marker that names it.
                self.shared.new_rings.push(consumer);
                if self.kept.len() < MAX_KEPT {
                    self.kept.push(producer);
                    (Target::NewKept, Cur::Kept(self.kept.len() - 1))
                } else {
                    (Target::OneShot, Cur::OneShot(producer))
                }
            }
        };
        if self
            .ring()
            .push_entire_slice(&record::marker(target))
            .is_err()
        {
            unreachable!("every record leaves room for the marker");
        }
        self.cur = next;
    }
}

/// Writes a record of `size` bytes at the start of `chunk` (`write` gets its two parts, cut at
/// the ring's end) and publishes it; the rest of the chunk, the marker's room, stays unused.
#[inline]
fn publish(
    mut chunk: rtrb::chunks::WriteChunk<'_, u8>,
    size: usize,
    write: impl FnOnce(&mut [u8], &mut [u8]),
) {
    let (first, second) = chunk.as_mut_slices();
    let split = first.len().min(size);
    write(&mut first[..split], &mut second[..size - split]);
    chunk.commit(size);
}

impl Drop for LaneIo {
    fn drop(&mut self) {
        self.rings.shared.closed.store(true, Ordering::Release);
    }
}

/// Byte equality, inline for short names (most are under 16 bytes) instead of a `memcmp` call.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    let half = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().expect("4 bytes"));
    match n {
        // Two overlapping loads cover the whole name.
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        _ => a == b,
    }
}

/// `body` in a buffer of its own: an owned one as it is, a borrowed one copied into one from
/// `pool` (or a new one).
pub(super) fn owned_body(body: Cow<'_, str>, pool: &ArrayQueue<String>) -> String {
    match body {
        Cow::Owned(s) => s,
        Cow::Borrowed(b) => {
            let mut s = pool.pop().unwrap_or_default();
            s.clear();
            s.push_str(b);
            s
        }
    }
}

/// Both name checks, without the cache.
pub(super) fn checked_names(
    namespace: &str,
    type_name: &str,
) -> Result<(CompactString, CompactString), EnvelopeError> {
    envelope::check_namespace(namespace)?;
    envelope::check_type(type_name)?;
    Ok((namespace.into(), type_name.into()))
}

thread_local! {
    static LANES: RefCell<Vec<LaneProducer>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's lane into pipeline `pipeline_id` in fork generation
/// `generation`, registering a new lane with the state `register` returns on first use. Gives
/// `arg` back when the thread-local list is unavailable (thread teardown, re-entrant call).
#[inline(always)]
pub(super) fn with_lane<T, R>(
    pipeline_id: u64,
    generation: u64,
    arg: T,
    register: impl FnOnce() -> Arc<ProcState>,
    f: impl FnOnce(&ProcState, &mut LaneIo, T) -> R,
) -> Result<R, T> {
    let mut arg = Some(arg);
    let out = LANES.try_with(|lanes| {
        let Ok(mut lanes) = lanes.try_borrow_mut() else {
            return None;
        };
        let mine = |l: &LaneProducer| l.pipeline_id == pipeline_id && l.generation == generation;
        // Most threads log into one pipeline: look at the first lane before searching.
        let i = match lanes.first() {
            Some(l) if mine(l) => 0,
            _ => match lanes.iter().position(mine) {
                Some(i) => i,
                None => add_lane(&mut lanes, pipeline_id, generation, register()),
            },
        };
        let lane = &mut lanes[i];
        arg.take().map(|a| f(&lane.state, &mut lane.io, a))
    });
    match out {
        Ok(Some(r)) => Ok(r),
        _ => Err(arg.expect("argument not consumed")),
    }
}

#[cold]
fn add_lane(
    lanes: &mut Vec<LaneProducer>,
    pipeline_id: u64,
    generation: u64,
    state: Arc<ProcState>,
) -> usize {
    // Lanes whose consumer is gone (their pipeline shut down) only hold memory.
    lanes.retain(|l| Arc::strong_count(&l.io.rings.shared) > 1);
    let (producer, consumer) = rtrb::RingBuffer::new(RING_BYTES);
    let shared = Arc::new(LaneShared::default());
    state.new_lanes.push(LaneConsumer {
        kept: vec![consumer],
        cur: Cur::Kept(0),
        shared: Arc::clone(&shared),
        names: None,
    });
    lanes.push(LaneProducer {
        pipeline_id,
        generation,
        state,
        io: LaneIo {
            rings: Rings {
                kept: vec![producer],
                cur: Cur::Kept(0),
                shared,
            },
            names: None,
            names_unsent: false,
            scratch: String::new(),
        },
    });
    lanes.len() - 1
}

/// The consumer end of one lane.
pub(super) struct LaneConsumer {
    kept: Vec<rtrb::Consumer<u8>>,
    cur: Cur<rtrb::Consumer<u8>>,
    shared: Arc<LaneShared>,
    /// The names the lane's records last carried.
    names: Option<(CompactString, CompactString)>,
}

impl std::fmt::Debug for LaneConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneConsumer").finish_non_exhaustive()
    }
}

impl LaneConsumer {
    fn ring(&mut self) -> &mut rtrb::Consumer<u8> {
        match &mut self.cur {
            Cur::Kept(i) => &mut self.kept[*i],
            Cur::OneShot(r) => r,
        }
    }

    /// The lane's next event, its body in a buffer of the consumer's `stash`, else of the
    /// `pool`, else a new one; its id, unless given, made with `ids`.
    fn pop(
        &mut self,
        stash: &mut Vec<String>,
        pool: &ArrayQueue<String>,
        ids: &mut crate::ids::Rng,
    ) -> Option<RawEvent> {
        loop {
            let ring = match &mut self.cur {
                Cur::Kept(i) => &mut self.kept[*i],
                Cur::OneShot(r) => r,
            };
            let len = {
                let prefix = ring.read_chunk(record::LEN_BYTES).ok()?;
                let (a, b) = prefix.as_slices();
                record::len(a, b)
            };
            // A record is committed whole, so its length means all of it is there.
            let chunk = ring
                .read_chunk(record::LEN_BYTES + len)
                .expect("a record is published whole");
            let (a, b) = chunk.as_slices();
            match record::read(a, b) {
                Record::Next(target) => {
                    chunk.commit_all();
                    self.cur = match target {
                        Target::Kept(i) => Cur::Kept(i),
                        Target::NewKept => {
                            let ring = self.published();
                            self.kept.push(ring);
                            Cur::Kept(self.kept.len() - 1)
                        }
                        // A one-shot ring left behind is freed here.
                        Target::OneShot => Cur::OneShot(self.published()),
                    };
                }
                Record::OwnBuffer => {
                    chunk.commit_all();
                    let event = self.shared.own_buffers.pop();
                    return Some(event.expect("an event is queued before its record"));
                }
                Record::Event {
                    names,
                    time,
                    received_at,
                    id,
                    body_at,
                } => {
                    let (x, y) = record::tail(a, b, body_at);
                    let body = body_in(x, y, stash, pool);
                    chunk.commit_all();
                    if names.is_some() {
                        self.names = names;
                    }
                    let (namespace, type_name) =
                        self.names.clone().expect("a lane's first record names it");
                    let id = match id {
                        Some(given) => EventId::Given(given),
                        None => EventId::Generated(ids.uuid_v7(received_at)),
                    };
                    return Some(RawEvent {
                        namespace,
                        type_name,
                        time,
                        received_at,
                        id,
                        body,
                    });
                }
            }
        }
    }

    fn published(&self) -> rtrb::Consumer<u8> {
        self.shared
            .new_rings
            .pop()
            .expect("a ring is published before the marker that names it")
    }

    /// True when the producer is gone and every event it pushed has been taken.
    fn is_done(&mut self) -> bool {
        // `closed` first: reading it makes every push visible, so an empty current ring (no
        // marker to follow) then means done.
        self.shared.closed.load(Ordering::Acquire) && self.ring().is_empty()
    }
}

/// A body's bytes (`first` then `second`) in a buffer of `stash`, else of `pool`, else a new one.
fn body_in(
    first: &[u8],
    second: &[u8],
    stash: &mut Vec<String>,
    pool: &ArrayQueue<String>,
) -> String {
    let buf = stash.pop().or_else(|| pool.pop()).unwrap_or_default();
    let mut bytes = buf.into_bytes();
    bytes.clear();
    bytes.reserve((first.len() + second.len()).max(super::FRESH_BUFFER));
    bytes.extend_from_slice(first);
    bytes.extend_from_slice(second);
    // The bytes are a `str`'s, cut at the ring's end at most; checking them again is one cheap
    // pass over ASCII, and keeps this module free of `unsafe`.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
}

/// The consumer side of every lane of one pipeline state, plus its shared queue. Owned by the
/// flush thread.
#[derive(Debug, Default)]
pub(super) struct Lanes {
    list: Vec<LaneConsumer>,
    /// Where the next round starts, so no source is starved.
    cursor: usize,
    /// Buffers for bodies read out of the rings, recycled here by this thread alone (the state's
    /// pool gets what does not fit), so the consumer does not pop the pool the producers pop.
    stash: Vec<String>,
    /// The random bits of the ids this thread generates for the events it reads.
    ids: crate::ids::Rng,
}

impl Lanes {
    fn adopt(&mut self, st: &ProcState) {
        while let Some(l) = st.new_lanes.pop() {
            self.list.push(l);
        }
    }

    /// Takes up to `max` events, visiting the shared queue and each lane in turn, and gives
    /// each to `f`, which may hand the body buffer back for reuse. Returns how many.
    pub(super) fn take(
        &mut self,
        st: &ProcState,
        max: usize,
        mut f: impl FnMut(RawEvent) -> Option<String>,
    ) -> usize {
        self.adopt(st);
        let sources = self.list.len() + 1;
        let mut n = 0;
        for k in 0..sources {
            if n == max {
                break;
            }
            let s = (self.cursor + k) % sources;
            n += match self.list.get_mut(s) {
                Some(lane) => take_lane(
                    st,
                    lane,
                    &mut self.stash,
                    &mut self.ids,
                    (max - n) as u64,
                    &mut f,
                ) as usize,
                None => take_queue(st, max - n, &mut f),
            };
        }
        self.cursor = (self.cursor + 1) % sources;
        self.remove_done();
        n
    }

    /// Takes every event published before this call (and perhaps some published during it),
    /// giving each to `f`. `bound` caps what one lane yields (pass the number of events
    /// reserved in the pipeline at the time of the call): every earlier event is within it, and
    /// a producer that keeps logging cannot hold the caller forever. Returns how many.
    pub(super) fn take_published(
        &mut self,
        st: &ProcState,
        bound: u64,
        mut f: impl FnMut(RawEvent) -> Option<String>,
    ) -> usize {
        self.adopt(st);
        // The shared queue is FIFO: its length now covers everything pushed before.
        let mut n = take_queue(st, st.queue.len(), &mut f);
        for lane in &mut self.list {
            n += take_lane(st, lane, &mut self.stash, &mut self.ids, bound, &mut f) as usize;
        }
        self.remove_done();
        n
    }

    fn remove_done(&mut self) {
        if self
            .list
            .iter()
            .any(|l| l.shared.closed.load(Ordering::Relaxed))
        {
            self.list.retain_mut(|l| !l.is_done());
        }
    }
}

fn take_lane(
    st: &ProcState,
    lane: &mut LaneConsumer,
    stash: &mut Vec<String>,
    ids: &mut crate::ids::Rng,
    max: u64,
    f: &mut impl FnMut(RawEvent) -> Option<String>,
) -> u64 {
    let mut k = 0;
    while k < max {
        let Some(e) = lane.pop(stash, &st.pool, ids) else {
            break;
        };
        if let Some(mut body) = f(e) {
            if stash.len() < STASH_BUFFERS && body.capacity() <= super::POOL_MAX_CAPACITY {
                body.clear();
                stash.push(body);
            } else {
                st.recycle(body);
            }
        }
        k += 1;
    }
    k
}

fn take_queue(st: &ProcState, max: usize, f: &mut impl FnMut(RawEvent) -> Option<String>) -> usize {
    let mut k = 0;
    while k < max {
        let Some(e) = st.queue.pop() else { break };
        if let Some(body) = f(e) {
            st.recycle(body);
        }
        k += 1;
    }
    k
}
