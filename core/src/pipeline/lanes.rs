//! Per-thread lanes: the path an event takes from `log()` to the flush thread.
//!
//! Each thread that logs into a pipeline gets its own single-producer, single-consumer lane, so
//! `log()` shares no queue tail with other threads and publishes an event with one release
//! store. A lane is a set of fixed rings (`rtrb`, [`RING_SLOTS`] slots). When the producer's ring is
//! full but for one slot, it moves on to a ring the consumer has emptied, or a new one, and writes
//! a marker naming it into that last slot; the consumer follows the markers, so the lane keeps
//! one order and never refuses an event. Rings are reused (no allocation or page faults in a
//! steady state); up to [`MAX_KEPT`] are kept, and a deeper backlog goes to one-shot rings that
//! are freed once read. The pipeline's bounds (events and bytes) are enforced by the reservation
//! in `log()`, not here.
//!
//! Bodies travel apart from the slots, through the lane's body arena, a byte ring
//! ([`ARENA_BYTES`]). The producer writes a body into its own scratch buffer
//! ([`LaneIo::take_scratch`], what `Pipeline::buffer` hands a binding; it never leaves the thread)
//! and `log()` copies it into the arena, one body after the other; the slot carries its length.
//! The consumer copies it out into a buffer of its own stash ([`Lanes`]; the state's pool when
//! that is empty), so it does not pop the pool the producers pop. Before the arena the producer
//! wrote each body into a pooled buffer the flush thread had last read, on another core, whose
//! lines each had to come back first: with the flush thread on the other CPU a call in a loop
//! took 0.70–0.81 µs instead of 0.52–0.61 through the arena (0.38–0.40 either way with both
//! threads on one CPU; docs/php-cost.md, session 23). A body larger than [`INLINE_MAX`], or one
//! that finds the arena full (the consumer far behind), goes in its own buffer in the slot.
//!
//! Buffers the consumer is done with go to its stash (last in, first out: the same thread reuses
//! the one hottest in its cache), then to the state's shared pool, which hands out the oldest
//! first (giving a producer the buffer the flush thread has just read, hot in the other core's
//! cache, measured slower).
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

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use compact_str::CompactString;
use crossbeam_queue::{ArrayQueue, SegQueue};

use super::ProcState;
use crate::envelope::{self, EnvelopeError};
use crate::ingest::RawEvent;

/// Slots per ring (~35 KiB). One is always left for the marker that moves on to the next ring.
const RING_SLOTS: usize = 256;
/// Rings a lane keeps for reuse (~140 KiB): a steady producer, whose events the flush thread
/// takes a few dozen at a time, uses one or two. Beyond them a burst gets one-shot rings, freed
/// once read, so a burst does not leave a worker holding megabytes of rings for its whole life
/// (64 kept rings were ~2.2 MiB per php-fpm worker, docs/php-cost.md).
const MAX_KEPT: usize = 4;

/// Bytes of a lane's body arena. While events flow the flush thread is paced to wake when half
/// of this has queued, or 512 events if they come first (`flush::PACED_BYTES`), so a steady
/// producer's bodies all go through it, and the other half is room for a late wake-up. At
/// 64 KiB, paced by the count alone, events of ~390 bytes sent half their bodies the slower
/// way, in buffers of their own (docs/php-cost.md, session 24).
pub(super) const ARENA_BYTES: usize = 128 * 1024;
/// Largest body copied into the arena; a larger one travels in its own buffer (a few such
/// bodies would fill the arena, and copying them costs more than the buffer's cache misses).
const INLINE_MAX: usize = 4 * 1024;
/// Buffers the consumer keeps for the bodies it reads out of the arenas: what one drain has in
/// hand at once is usually one (a sink copies or converts the body, then hands it back).
const STASH_BUFFERS: usize = 256;

/// One ring slot: an event, or where the producer went on writing.
pub(super) enum Slot {
    /// An event with its body in its own buffer.
    Event(RawEvent),
    /// An event (empty `body`) whose body is the next `len` bytes of the lane's arena.
    Inline {
        event: RawEvent,
        len: u32,
    },
    Next(Target),
}

/// Where the producer went on writing after a full ring.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    /// A kept ring both sides already hold (by index; it was empty, so the consumer is not on it).
    Kept(usize),
    /// A new kept ring, appended on both sides; its consumer end is next in `new_rings`.
    NewKept,
    /// A one-shot ring; its consumer end is next in `new_rings`.
    OneShot,
}

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
    new_rings: SegQueue<rtrb::Consumer<Slot>>,
}

/// The producer end, kept in a thread-local list: the pipeline state it feeds (cached here so
/// `log()` does not load it from the pipeline each time) and the lane itself.
pub(super) struct LaneProducer {
    pipeline_id: u64,
    generation: u64,
    state: Arc<ProcState>,
    io: LaneIo,
}

/// What a producer writes to.
pub(super) struct LaneIo {
    kept: Vec<rtrb::Producer<Slot>>,
    cur: Cur<rtrb::Producer<Slot>>,
    /// Free slots known in the current ring; refreshed from the consumer's position when low.
    room: usize,
    shared: Arc<LaneShared>,
    /// The last (namespace, type) pair that passed the name checks on this thread: most threads
    /// log a handful of names, so most calls compare instead of checking again.
    names: Option<(CompactString, CompactString)>,
    /// This thread's event ids' random bits (no thread-local lookup per id).
    pub(super) ids: crate::ids::Rng,
    /// The producer end of the body arena: bodies are copied here, one after the other, so the
    /// lines the consumer reads are written in one sequential stream.
    arena: rtrb::Producer<u8>,
    /// The buffer a binding writes the next body into (`Pipeline::buffer`): back here once its
    /// text is in the arena, so it never leaves this thread and stays in its cache.
    scratch: String,
}

impl std::fmt::Debug for LaneIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneIo").finish_non_exhaustive()
    }
}

impl LaneIo {
    /// The checked names as the queue stores them.
    #[inline]
    pub(super) fn checked_names(
        &mut self,
        namespace: &str,
        type_name: &str,
    ) -> Result<(CompactString, CompactString), EnvelopeError> {
        if let Some((ns, ty)) = &self.names {
            if same(ns.as_bytes(), namespace.as_bytes())
                && same(ty.as_bytes(), type_name.as_bytes())
            {
                return Ok((ns.clone(), ty.clone()));
            }
        }
        let names = checked_names(namespace, type_name)?;
        self.names = Some(names.clone());
        Ok(names)
    }

    /// Publishes an event whose body is in its own buffer.
    #[cfg(test)]
    pub(super) fn push(&mut self, event: RawEvent) {
        self.push_slot(Slot::Event(event));
    }

    /// Publishes `event` (its `body` empty) with `body`: copied into the arena when it fits (an
    /// owned buffer then kept as this thread's scratch), else in its own buffer (a borrowed body
    /// copied into one from `pool`).
    #[inline]
    pub(super) fn push_body(
        &mut self,
        mut event: RawEvent,
        body: Cow<'_, str>,
        pool: &ArrayQueue<String>,
    ) {
        let len = body.len();
        if len <= INLINE_MAX && self.arena.push_entire_slice(body.as_bytes()).is_ok() {
            if let Cow::Owned(mut s) = body {
                if self.scratch.capacity() == 0 && s.capacity() <= super::POOL_MAX_CAPACITY {
                    s.clear();
                    self.scratch = s;
                }
            }
            self.push_slot(Slot::Inline {
                event,
                len: len as u32,
            });
            return;
        }
        event.body = owned_body(body, pool);
        self.push_slot(Slot::Event(event));
    }

    /// This thread's scratch buffer (empty), if it keeps one: what `Pipeline::buffer` hands a
    /// binding, back here by [`Self::push_body`].
    #[inline]
    pub(super) fn take_scratch(&mut self) -> Option<String> {
        if self.scratch.capacity() == 0 {
            return None;
        }
        Some(std::mem::take(&mut self.scratch))
    }

    #[inline]
    fn push_slot(&mut self, slot: Slot) {
        if self.room < 2 {
            self.make_room();
        }
        // Room for this event and the marker.
        if self.ring().push(slot).is_err() {
            unreachable!("room was checked");
        }
        self.room -= 1;
    }

    fn ring(&mut self) -> &mut rtrb::Producer<Slot> {
        match &mut self.cur {
            Cur::Kept(i) => &mut self.kept[*i],
            Cur::OneShot(r) => r,
        }
    }

    /// Refreshes `room`; when the ring is full but for the marker's slot, moves on to an empty
    /// kept ring or a new one, and writes the marker that tells the consumer which.
    #[cold]
    fn make_room(&mut self) {
        self.room = self.ring().slots();
        if self.room >= 2 {
            return;
        }
        let current = match self.cur {
            Cur::Kept(i) => Some(i),
            Cur::OneShot(_) => None,
        };
        // Empty means the consumer has read this ring to its marker and moved past it.
        let reusable = (0..self.kept.len())
            .find(|&i| Some(i) != current && self.kept[i].slots() == RING_SLOTS);
        let (target, next) = match reusable {
            Some(i) => (Target::Kept(i), Cur::Kept(i)),
            None => {
                let (producer, consumer) = rtrb::RingBuffer::new(RING_SLOTS);
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
        if self.ring().push(Slot::Next(target)).is_err() {
            unreachable!("the last slot is kept for the marker");
        }
        self.cur = next;
        self.room = self.ring().slots();
    }
}

impl Drop for LaneIo {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
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
    lanes.retain(|l| Arc::strong_count(&l.io.shared) > 1);
    let (producer, consumer) = rtrb::RingBuffer::new(RING_SLOTS);
    let (arena, arena_out) = rtrb::RingBuffer::new(ARENA_BYTES);
    let shared = Arc::new(LaneShared::default());
    state.new_lanes.push(LaneConsumer {
        kept: vec![consumer],
        cur: Cur::Kept(0),
        shared: Arc::clone(&shared),
        arena: arena_out,
    });
    lanes.push(LaneProducer {
        pipeline_id,
        generation,
        state,
        io: LaneIo {
            kept: vec![producer],
            cur: Cur::Kept(0),
            room: RING_SLOTS,
            shared,
            names: None,
            ids: crate::ids::Rng::new(),
            arena,
            scratch: String::new(),
        },
    });
    lanes.len() - 1
}

/// The consumer end of one lane.
pub(super) struct LaneConsumer {
    kept: Vec<rtrb::Consumer<Slot>>,
    cur: Cur<rtrb::Consumer<Slot>>,
    shared: Arc<LaneShared>,
    arena: rtrb::Consumer<u8>,
}

impl std::fmt::Debug for LaneConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneConsumer").finish_non_exhaustive()
    }
}

impl LaneConsumer {
    fn ring(&mut self) -> &mut rtrb::Consumer<Slot> {
        match &mut self.cur {
            Cur::Kept(i) => &mut self.kept[*i],
            Cur::OneShot(r) => r,
        }
    }

    fn pop(&mut self, stash: &mut Vec<String>, pool: &ArrayQueue<String>) -> Option<RawEvent> {
        loop {
            match self.ring().pop().ok()? {
                Slot::Event(e) => return Some(e),
                Slot::Inline { mut event, len } => {
                    event.body = self.arena_body(len as usize, stash, pool);
                    return Some(event);
                }
                Slot::Next(target) => {
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
            }
        }
    }

    /// The next `len` bytes of the arena as a body, in a buffer of the consumer's stash, else of
    /// the pool, else a new one.
    fn arena_body(
        &mut self,
        len: usize,
        stash: &mut Vec<String>,
        pool: &ArrayQueue<String>,
    ) -> String {
        let buf = stash.pop().or_else(|| pool.pop()).unwrap_or_default();
        let mut bytes = buf.into_bytes();
        bytes.clear();
        bytes.reserve(len.max(super::FRESH_BUFFER));
        // The producer pushed the bytes before the slot that names them (each push a release
        // store, each read an acquire load), so they are all there.
        if let Ok(chunk) = self.arena.read_chunk(len) {
            let (a, b) = chunk.as_slices();
            bytes.extend_from_slice(a);
            bytes.extend_from_slice(b);
            chunk.commit_all();
        }
        // The bytes are a `str`'s, cut at the ring's end at most; checking them again is one
        // cheap pass over ASCII, and keeps this module free of `unsafe`.
        String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }

    fn published(&self) -> rtrb::Consumer<Slot> {
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

/// The consumer side of every lane of one pipeline state, plus its shared queue. Owned by the
/// flush thread.
#[derive(Debug, Default)]
pub(super) struct Lanes {
    list: Vec<LaneConsumer>,
    /// Where the next round starts, so no source is starved.
    cursor: usize,
    /// Buffers for bodies read out of the arenas, recycled here by this thread alone (the state's
    /// pool gets what does not fit), so the consumer does not pop the pool the producers pop.
    stash: Vec<String>,
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
                Some(lane) => {
                    take_lane(st, lane, &mut self.stash, (max - n) as u64, &mut f) as usize
                }
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
            n += take_lane(st, lane, &mut self.stash, bound, &mut f) as usize;
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
    max: u64,
    f: &mut impl FnMut(RawEvent) -> Option<String>,
) -> u64 {
    let mut k = 0;
    while k < max {
        let Some(e) = lane.pop(stash, &st.pool) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: usize) -> RawEvent {
        RawEvent::numbered(i, String::with_capacity(8))
    }

    fn push(pipeline_id: u64, st: &Arc<ProcState>, i: usize) {
        with_lane(
            pipeline_id,
            0,
            event(i),
            || Arc::clone(st),
            |_, io, e| io.push(e),
        )
        .expect("lane");
    }

    #[test]
    fn one_thread_keeps_order_across_rings_and_buffers_go_back() {
        let st = Arc::new(ProcState::new(0, &[]));
        let mut lanes = Lanes::default();
        let n = RING_SLOTS * 5 + 3;
        for i in 0..n {
            push(1, &st, i);
        }
        let mut seen = Vec::new();
        let took = lanes.take_published(&st, n as u64, |e| {
            seen.push(e.received_at as usize);
            Some(e.body)
        });
        assert_eq!(took, n);
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
        // Buffers went back, emptied, to the consumer's stash and then the pool, up to the pool's
        // bound (the rest were freed).
        assert_eq!(st.pool.len(), n.min(super::super::POOL_BUFFERS));
        assert!(st
            .pool
            .pop()
            .is_some_and(|b| b.is_empty() && b.capacity() >= 8));
        // Interleaved pushes and takes cross ring boundaries in both orders.
        let mut next = n;
        let mut expect = n;
        for round in 0..50 {
            for _ in 0..(round * 7) % (RING_SLOTS + 5) {
                push(1, &st, next);
                next += 1;
            }
            lanes.take(&st, 37, |e| {
                assert_eq!(e.received_at as usize, expect);
                expect += 1;
                None
            });
        }
        lanes.take(&st, usize::MAX, |e| {
            assert_eq!(e.received_at as usize, expect);
            expect += 1;
            None
        });
        assert_eq!(expect, next);
    }

    #[test]
    fn rings_are_reused_and_a_deep_backlog_spills_into_one_shot_rings() {
        let st = Arc::new(ProcState::new(0, &[]));
        let mut lanes = Lanes::default();
        let mut next = 0;
        let mut expect = 0;
        let mut check = |e: RawEvent| {
            assert_eq!(e.received_at as usize, expect);
            expect += 1;
            None
        };
        // Deeper than the kept rings hold.
        for _ in 0..(MAX_KEPT + 5) * RING_SLOTS {
            push(2, &st, next);
            next += 1;
        }
        lanes.take(&st, usize::MAX, &mut check);
        assert_eq!(lanes.list[0].kept.len(), MAX_KEPT);
        // Bursts of every size, taken in pieces: rings are reused, never more than kept.
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..300 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            for _ in 0..rng % (3 * RING_SLOTS as u64) {
                push(2, &st, next);
                next += 1;
            }
            lanes.take(&st, (rng >> 20) as usize % (2 * RING_SLOTS), &mut check);
        }
        lanes.take(&st, usize::MAX, &mut check);
        assert_eq!(expect, next);
        let kept = with_lane(2, 0, (), || unreachable!(), |_, io, ()| io.kept.len()).unwrap();
        assert_eq!(kept, MAX_KEPT);
        assert_eq!(lanes.list[0].kept.len(), MAX_KEPT);
    }

    #[test]
    fn many_threads_nothing_lost_and_exited_lanes_are_removed() {
        let st = Arc::new(ProcState::new(0, &[]));
        let mut lanes = Lanes::default();
        const THREADS: usize = 8;
        const PER: usize = 10_000;
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let st = Arc::clone(&st);
                std::thread::spawn(move || {
                    for i in 0..PER {
                        push(7, &st, t * PER + i);
                    }
                })
            })
            .collect();
        let mut seen = vec![false; THREADS * PER];
        let mut last = [None::<usize>; THREADS];
        let mut count = 0;
        let mut record = |e: RawEvent| {
            let i = e.received_at as usize;
            assert!(!seen[i], "event {i} twice");
            seen[i] = true;
            // Per-thread order holds.
            let t = i / PER;
            assert!(last[t].is_none_or(|p| p < i));
            last[t] = Some(i);
            count += 1;
            Some(e.body)
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while handles.iter().any(|h| !h.is_finished()) {
            lanes.take(&st, 1000, &mut record);
            assert!(
                std::time::Instant::now() < deadline,
                "producers did not finish"
            );
        }
        for h in handles {
            h.join().expect("producer");
        }
        lanes.take(&st, usize::MAX, &mut record);
        assert_eq!(count, THREADS * PER);
        assert!(lanes.list.is_empty(), "{} lanes left", lanes.list.len());
    }

    /// Logs event `i` with `body` through the arena path, as `log()` does.
    fn push_body(pipeline_id: u64, st: &Arc<ProcState>, i: usize, body: Cow<'_, str>) {
        with_lane(
            pipeline_id,
            0,
            (event(i), body),
            || Arc::clone(st),
            |st, io, (mut e, body)| {
                e.body = String::new();
                io.push_body(e, body, &st.pool)
            },
        )
        .expect("lane");
    }

    /// Body `i`: ~15 to ~600 bytes, most with multi-byte characters, so bodies are cut at the
    /// arena's end at every offset, characters included.
    fn body(i: usize) -> String {
        let fill = "é€x".repeat(i % 97);
        format!("{{\"i\":{i},\"s\":\"{fill}\"}}")
    }

    #[test]
    fn bodies_come_out_of_the_arena_whole_and_in_order_across_its_end() {
        let st = Arc::new(ProcState::new(0, &[]));
        let mut lanes = Lanes::default();
        let mut next = 0;
        let mut expect = 0;
        let mut check = |e: RawEvent| {
            let i = e.received_at as usize;
            assert_eq!(i, expect);
            assert_eq!(e.body, body(i), "event {i}");
            expect += 1;
            Some(e.body)
        };
        // ~40 times round the arena, in takes of every size; owned and borrowed bodies.
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        while next < 20_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            for _ in 0..rng % 300 {
                let b = body(next);
                if next % 3 == 0 {
                    push_body(11, &st, next, Cow::Borrowed(&b));
                } else {
                    push_body(11, &st, next, Cow::Owned(b));
                }
                next += 1;
            }
            lanes.take(&st, (rng >> 24) as usize % 400, &mut check);
        }
        lanes.take(&st, usize::MAX, &mut check);
        assert_eq!(expect, next);
    }

    #[test]
    fn a_full_arena_or_a_large_body_travels_in_its_own_buffer_in_order() {
        let st = Arc::new(ProcState::new(0, &[]));
        let mut lanes = Lanes::default();
        let large = |i: usize| format!("{{\"i\":{i},\"s\":\"{}\"}}", "y".repeat(INLINE_MAX));
        let text = |i: usize| if i % 50 == 7 { large(i) } else { body(i) };
        // Nothing taken: the arena fills, and the rest goes in buffers of their own.
        let n = 2 * ARENA_BYTES / 100;
        for i in 0..n {
            push_body(12, &st, i, Cow::Owned(text(i)));
        }
        let own = with_lane(12, 0, (), || unreachable!(), |_, io, ()| io.arena.slots()).unwrap();
        assert!(own < 700, "the arena is full: {own} bytes free");
        let mut expect = 0;
        lanes.take(&st, usize::MAX, |e| {
            assert_eq!(e.received_at as usize, expect);
            assert_eq!(e.body, text(expect));
            expect += 1;
            None
        });
        assert_eq!(expect, n);
        // Taken, the arena is empty again and the next bodies go through it.
        let free = with_lane(12, 0, (), || unreachable!(), |_, io, ()| io.arena.slots()).unwrap();
        assert_eq!(free, ARENA_BYTES);
    }

    #[test]
    fn the_scratch_buffer_stays_with_its_thread() {
        let st = Arc::new(ProcState::new(0, &[]));
        let mut lanes = Lanes::default();
        let mut buf = String::with_capacity(512);
        buf.push_str(r#"{"a":1}"#);
        let at = buf.as_ptr();
        push_body(13, &st, 0, Cow::Owned(buf));
        let scratch = with_lane(13, 0, (), || unreachable!(), |_, io, ()| io.take_scratch())
            .unwrap()
            .expect("kept");
        assert!(scratch.is_empty() && scratch.capacity() == 512 && scratch.as_ptr() == at);
        // Taken: none kept until the next body gives one back.
        let again = with_lane(13, 0, (), || unreachable!(), |_, io, ()| io.take_scratch());
        assert_eq!(again.unwrap(), None);
        let mut seen = Vec::new();
        lanes.take(&st, usize::MAX, |e| {
            seen.push(e.body.clone());
            Some(e.body)
        });
        assert_eq!(seen, [r#"{"a":1}"#]);
        // A huge buffer is not kept.
        let mut huge = String::with_capacity(super::super::POOL_MAX_CAPACITY + 1);
        huge.push_str("{}");
        push_body(13, &st, 1, Cow::Owned(huge));
        let none = with_lane(13, 0, (), || unreachable!(), |_, io, ()| io.take_scratch());
        assert_eq!(none.unwrap(), None);
    }

    #[test]
    fn short_equality() {
        let names = [
            "",
            "a",
            "abc",
            "abcd",
            "abcdefg",
            "abcdefgh",
            "abcdefghijklmnop",
            "abcdefghijklmnopq",
        ];
        for a in names {
            for b in names {
                assert_eq!(same(a.as_bytes(), b.as_bytes()), a == b, "{a} {b}");
            }
            // One differing byte anywhere is seen.
            for i in 0..a.len() {
                let mut c = a.as_bytes().to_vec();
                c[i] ^= 1;
                assert!(!same(a.as_bytes(), &c), "{a} at {i}");
            }
        }
    }

    #[test]
    fn names_are_checked_then_cached() {
        let st = Arc::new(ProcState::new(0, &[]));
        let r = with_lane(
            3,
            0,
            (),
            || Arc::clone(&st),
            |_, io, ()| {
                let a = io
                    .checked_names("events", "page_view")
                    .map(|(a, b)| (a.to_string(), b.to_string()));
                let bad = io.checked_names("events", "no/slash").unwrap_err();
                let again = io.checked_names("events", "page_view").is_ok();
                (a, bad.field, again)
            },
        )
        .expect("lane");
        assert_eq!(r.0, Ok(("events".to_string(), "page_view".to_string())));
        assert_eq!(r.1, "type");
        assert!(r.2);
    }
}
