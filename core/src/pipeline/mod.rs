//! The in-process pipeline: `log()` → bounded lock-free queue → flush thread → sink.
//!
//! Contract:
//! - [`Pipeline::log`] checks the envelope cheaply (names, id, time, that the body looks like a
//!   JSON object, size), stamps time and id, and publishes the event to the calling thread's own
//!   lock-free lane (see `lanes`). It never blocks, never does I/O and serialises nothing: the
//!   body text the caller built is what the flush thread parses. It returns an error only when the
//!   event was not taken (invalid envelope, queue full, shut down); such events are counted as
//!   dropped with that reason.
//! - "The queue" is all lanes together (plus a shared fallback queue). It is bounded by events and
//!   bytes (`[queue]`), with one atomic reservation per event.
//! - A flush thread, started by the first `log()` in a process, drains the queue, validates and
//!   routes each event, batches rows per destination, and hands batches to the sink when one
//!   reaches `batch.max_rows` or `batch.max_bytes`, or its oldest row `batch.max_age` (all through
//!   [`crate::ingest`], as the collector does). With several destinations
//!   ([`crate::destinations`]) the flush thread only routes, and each destination has a
//!   delivery thread of its own (see `flush`), so one destination's outage never delays
//!   another's events.
//! - [`Pipeline::flush`] and [`Pipeline::shutdown`] are exact: when they return true, every event
//!   logged before the call (in the happens-before sense) has been delivered or rejected (stored
//!   as a dead letter) by every destination its routes chose (an event no route takes is
//!   settled, counted `unrouted`). They return false when one of those events is not: still queued at the
//!   timeout, in the spool, or dropped by the flush thread (the sink failed it with no spool, its
//!   dead letter could not be stored, the spool was full), whenever that happened since the
//!   previous flush() answer. A drop is reported by one flush() answer; the next is true again
//!   if nothing else went wrong.
//! - [`Pipeline::shutdown`] never waits out retries: it raises the sinks' [`sink::StopSignal`]
//!   first, so from then on a request gets one attempt, bounded by the deadline; when it
//!   returns, every event is delivered, spooled or counted dropped.
//! - Memory: after a burst the flush thread gives back what it can (a bounded body pool and few
//!   kept rings, and glibc's free pages through `malloc_trim` once it goes idle; see
//!   `flush::trim`), so a php-fpm worker returns to its steady size.
//! - Schema files: with `schemas.reload_interval` (and schemas loaded from `schemas.dir` by
//!   [`Pipeline::new`]) the flush thread picks up changed files without a restart, off
//!   `log()`'s path; see `reload`. `log()` never touches the processor.
//! - Fork: the queue, counters and thread belong to one process. A forked child's first `log()`
//!   builds a fresh state and thread; the parent's (copied, stale) state is never touched.

mod flush;
mod lanes;
mod reload;
mod spooled;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use compact_str::CompactString;
use crossbeam_channel::{Receiver, Sender};
use crossbeam_queue::SegQueue;
use crossbeam_utils::CachePadded;
use thiserror::Error;

use crate::config::Config;
use crate::counters::{Counters, DropReason, Stats};
use crate::envelope::{self, EnvelopeError};
use crate::fork;
use crate::ingest::{EventId, EventInput, LiveProcessor, Processor, RawEvent};
use crate::schema::{SchemaError, SchemaRegistry};
use crate::sink::{self, SinkError, SinkFactory};

/// Why `log()` did not take an event. The event is counted as dropped with [`LogError::reason`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LogError {
    /// The envelope broke a rule (names the field and the rule).
    #[error(transparent)]
    Invalid(#[from] EnvelopeError),
    /// The queue is at its event or byte limit.
    #[error("event dropped: the queue is full ({0})")]
    QueueFull(&'static str),
    /// `shutdown()` was called.
    #[error("event dropped: the pipeline is shut down")]
    ShutDown,
}

impl LogError {
    /// The drop reason counted for this error.
    pub fn reason(&self) -> DropReason {
        match self {
            LogError::Invalid(_) => DropReason::InvalidEnvelope,
            LogError::QueueFull(_) => DropReason::QueueFull,
            LogError::ShutDown => DropReason::ShutDown,
        }
    }
}

/// What an error hook is told: events of one kind and reason that were not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorSummary {
    /// `rejected` (kept in the dead-letter table) or `dropped` (lost, counted).
    pub outcome: Outcome,
    /// The counter's `reason` label.
    pub reason: String,
    /// How many events.
    pub count: u64,
    /// One representative error message.
    pub message: String,
}

/// See [`ErrorSummary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Kept in the dead-letter table.
    Rejected,
    /// Lost, counted.
    Dropped,
    /// Not about events: changed schema files were refused (reason `schema_reload`, count 0,
    /// the error as message); the schemas in use stay (see `schemas.reload_interval`).
    ReloadRefused,
}

/// Called on the flush thread after each delivery round that rejected or dropped events, and
/// when changed schema files are refused ([`Outcome::ReloadRefused`]). Must be
/// quick and must not block: bindings forward summaries to their own thread (e.g. to call Python).
pub type ErrorHook = Arc<dyn Fn(&ErrorSummary) + Send + Sync>;

/// Why a pipeline could not be built.
#[derive(Debug, Error)]
pub enum PipelineError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A schema file is malformed.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The sink cannot be set up.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// Queue reservations pack events (high 24 bits) and bytes (low 40 bits) in one atomic word, so
/// one `fetch_add` reserves both.
const EVENT_SHIFT: u32 = 40;
const BYTES_MASK: u64 = (1 << EVENT_SHIFT) - 1;
/// Body buffers kept for reuse, shared by the threads of a process: the producers take them when a
/// body does not go through their lane's ring (larger than a record takes, or the shared queue), the
/// flush thread when its own stash of buffers (`lanes::Lanes`) is empty, and what it is done with
/// beyond its stash comes back here. Reuse matters: a buffer allocated by a logging thread and
/// freed by the flush thread costs a contended allocator lock on both sides (measured: ~300 ns per
/// event with glibc malloc, ~60 ns with the pool). More than a wake-up's worth (up to 512,
/// `flush::WAKE_BATCH`) only pins memory after a burst (16384 buffers held ~3.5 MiB per php-fpm
/// worker for its life, docs/php-cost.md; 1024 hold ~0.2 MiB).
const POOL_BUFFERS: usize = 1024;
/// A new body buffer's size when the pool has none: most events fit.
const FRESH_BUFFER: usize = 256;
/// Larger buffers are freed rather than pooled (or kept as a thread's scratch, or in the flush
/// thread's stash, see `lanes`), so one huge event does not pin memory.
const POOL_MAX_CAPACITY: usize = 16 * 1024;
/// Park indefinitely-ish when idle; producers wake the thread. Bounded so a lost wake-up costs at
/// most this long.
const IDLE_PARK: Duration = Duration::from_secs(1);
/// How long `shutdown()` waits for the flush thread's answer beyond the deadline. The built-in
/// sinks watch the deadline ([`sink::StopSignal`]), so the thread answers within milliseconds of
/// it; the margin is for the thread's own last steps (counting, closing the sink) and a custom
/// sink that does not watch the deadline.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Where `enqueue_to` publishes an event: the caller's lane (which holds the names it checked)
/// or the shared queue, whose events carry their names.
enum Dest<'a> {
    Lane(&'a mut lanes::LaneIo),
    Shared {
        namespace: CompactString,
        type_name: CompactString,
    },
}

enum Request {
    Flush(Sender<bool>),
    Shutdown {
        deadline: Instant,
        done: Sender<bool>,
    },
}

/// Per-process state: queue, counters and the flush thread's handle.
struct ProcState {
    generation: u64,
    /// Lanes registered by producer threads, not yet adopted by the flush thread.
    new_lanes: SegQueue<lanes::LaneConsumer>,
    /// Events from threads that cannot use a lane (thread-locals torn down, re-entrant call).
    queue: SegQueue<RawEvent>,
    /// Packed (events, bytes) reserved in the queue.
    load: CachePadded<AtomicU64>,
    /// Queue depth at which a producer unparks the flush thread (or sooner, at [`wake_bytes`]
    /// queued bytes); `u64::MAX` while it runs.
    wake_at: CachePadded<AtomicU64>,
    /// Times a producer woke the parked thread: what the thread's pacing keeps near zero while
    /// events flow (`flush::pace`), so a caller rarely pays a wake-up.
    producer_wakeups: AtomicU64,
    /// The pipeline's counters: every event's acceptance, and with one destination everything
    /// else; with several, what happens before routing (the destinations count their copies).
    counters: Arc<Counters>,
    /// With several destinations, what the flush thread (the router) and each destination's
    /// thread share: its counters, its inbox's size, its losses. Empty with one.
    dests: Vec<Arc<flush::DestShared>>,
    /// Recycled body buffers (see [`POOL_BUFFERS`]).
    pool: crossbeam_queue::ArrayQueue<String>,
    started: AtomicBool,
    shut_down: AtomicBool,
    /// Set by the flush thread when it stops taking events. A producer checks it after its
    /// reservation and backs out when set; the thread, after setting it, waits for reservations
    /// made before to land and settles them.
    finished: AtomicBool,
    thread: Mutex<Option<Thread>>,
    /// Joined by `shutdown()` once the thread has reported, so nothing outlives a clean close.
    handle: Mutex<Option<std::thread::JoinHandle<()>>>,
    requests: (Sender<Request>, Receiver<Request>),
    /// Raised by `shutdown()` before it asks the thread to stop, so a delivery in progress stops
    /// retrying at once and no attempt outlives the deadline (see [`sink::StopSignal`]).
    stop: Arc<sink::StopSignal>,
}

impl std::fmt::Debug for ProcState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcState")
            .field("generation", &self.generation)
            .field(
                "queued",
                &(self.load.load(Ordering::Relaxed) >> EVENT_SHIFT),
            )
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl ProcState {
    /// The process's counters with `queued` events waiting (see [`Pipeline::stats`]).
    fn stats(&self, queued: u64) -> Stats {
        if self.dests.is_empty() {
            return self.counters.snapshot(queued);
        }
        // The destinations first: a copy is counted routed before it can be settled.
        let dests = self.dests.iter().map(|d| d.snapshot()).collect();
        self.counters.snapshot(queued).with_destinations(dests)
    }

    fn new(generation: u64, destinations: &[String]) -> Self {
        let dests = if destinations.len() > 1 {
            destinations
                .iter()
                .map(|n| Arc::new(flush::DestShared::new(n)))
                .collect()
        } else {
            Vec::new()
        };
        Self {
            generation,
            dests,
            new_lanes: SegQueue::new(),
            queue: SegQueue::new(),
            load: CachePadded::new(AtomicU64::new(0)),
            wake_at: CachePadded::new(AtomicU64::new(u64::MAX)),
            producer_wakeups: AtomicU64::new(0),
            counters: Arc::new(Counters::new()),
            pool: crossbeam_queue::ArrayQueue::new(POOL_BUFFERS),
            started: AtomicBool::new(false),
            shut_down: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            thread: Mutex::new(None),
            handle: Mutex::new(None),
            requests: crossbeam_channel::unbounded(),
            stop: Arc::new(sink::StopSignal::new()),
        }
    }

    fn queued_events(&self) -> u64 {
        self.load.load(Ordering::Relaxed) >> EVENT_SHIFT
    }

    /// Whether a producer that logged now would wake the thread parked with `wake_at` (checked
    /// again by the thread after publishing it, so an event pushed just before is not missed).
    fn would_wake(&self, wake_at: u64, wake_bytes: u64) -> bool {
        let load = self.load.load(Ordering::SeqCst);
        load >> EVENT_SHIFT >= wake_at || load & BYTES_MASK >= wake_bytes
    }

    fn unpark(&self) {
        if let Some(t) = self
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            t.unpark();
        }
    }

    fn shutdown(&self, deadline: Instant) -> bool {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            // Already shutting down: wait for the thread to finish.
            return wait_until(deadline, || {
                !self.started.load(Ordering::Acquire) || self.finished.load(Ordering::Acquire)
            });
        }
        if !self.started.load(Ordering::Acquire) {
            return true;
        }
        // First, so a delivery already in progress (perhaps in a backoff of a full retry budget)
        // gives up its retries now and the thread gets to the request in time.
        self.stop.stop_at(deadline);
        let (tx, rx) = crossbeam_channel::bounded(1);
        let request = Request::Shutdown { deadline, done: tx };
        if self.requests.0.send(request).is_err() {
            return false;
        }
        self.unpark();
        // The thread watches the deadline itself and answers once every event it took is
        // delivered, spooled or counted dropped.
        let wait = deadline.saturating_duration_since(Instant::now()) + SHUTDOWN_GRACE;
        let ok = rx.recv_timeout(wait);
        if ok.is_ok() {
            // The thread has answered and is returning; joining takes a moment at most.
            if let Some(h) = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = h.join();
            }
        }
        ok.unwrap_or(false)
    }

    /// Returns a processed event's body buffer to the pool.
    fn recycle(&self, mut body: String) {
        if body.capacity() <= POOL_MAX_CAPACITY {
            body.clear();
            let _ = self.pool.push(body);
        }
    }

    fn release(&self, events: u64, bytes: u64) {
        self.load
            .fetch_sub((events << EVENT_SHIFT) | bytes, Ordering::Relaxed);
    }
}

/// Queued bytes at which a producer wakes the parked flush thread even before `wake_at` events
/// wait: a batch's worth (`batch.max_bytes`), at most a quarter of `queue.max_bytes`, so a few
/// large events cannot fill the queue while the thread waits for a count.
fn wake_bytes(batch: &crate::config::BatchConfig, queue: &crate::config::QueueConfig) -> u64 {
    batch
        .max_bytes
        .0
        .min(queue.max_bytes.0.min(BYTES_MASK) / 4)
        .max(1)
}

struct Shared {
    /// Unique in the process: names this pipeline in threads' lane lists.
    id: u64,
    config: Config,
    hook: Arc<arc_swap::ArcSwapOption<ErrorHook>>,
    /// The processor in use, replaced when changed schema files are taken (`reload`).
    processor: LiveProcessor,
    /// The watch of `schemas.dir`, when the schemas came from there and `reload_interval` > 0.
    watch: Option<Arc<reload::Watch>>,
    /// Each destination's name and sink, in the order of `Config::destination_names`.
    destinations: Vec<(String, SinkFactory)>,
    state: ArcSwap<ProcState>,
    capacity: u64,
    max_bytes: u64,
    max_event_bytes: usize,
    /// See [`wake_bytes`].
    wake_bytes: u64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("state", &self.state.load())
            .finish_non_exhaustive()
    }
}

/// The pipeline. Cheap to clone; the last clone dropped shuts it down with
/// `batch.shutdown_timeout`.
#[derive(Debug, Clone)]
pub struct Pipeline {
    shared: Arc<Shared>,
}

impl Pipeline {
    /// Loads schemas from `schemas.dir` and builds the configured sink. With
    /// `schemas.reload_interval` the flush thread picks up changed schema files (`reload`).
    pub fn new(config: Config) -> Result<Self, PipelineError> {
        // Before loading: a change made while loading differs from it, so it is seen.
        let seen = reload::fingerprint(&config.schemas.dir);
        let schemas = SchemaRegistry::load_configured(&config)?;
        let processor: LiveProcessor =
            Arc::new(ArcSwap::from_pointee(Processor::new(schemas, &config)));
        let mut destinations = Vec::new();
        for (name, sink) in config.destination_sinks() {
            let factory = sink::factory(&sink, &config.retry, &processor)?;
            destinations.push((name, factory));
        }
        let watch = reload::Watch::new(&config, &processor, seen);
        Ok(Self::with_processor(config, processor, watch, destinations))
    }

    /// A pipeline with given schemas and sink (tests, embedding, custom sinks): every
    /// destination of `config` (one, without `[destinations]`) is built by `sink_factory`.
    pub fn with_parts(config: Config, schemas: SchemaRegistry, sink_factory: SinkFactory) -> Self {
        let processor = Arc::new(ArcSwap::from_pointee(Processor::new(schemas, &config)));
        let destinations = config
            .destination_names()
            .into_iter()
            .map(|n| (n, Arc::clone(&sink_factory)))
            .collect();
        Self::with_processor(config, processor, None, destinations)
    }

    /// A pipeline with given schemas and one sink per destination of `config`, by name (tests,
    /// embedding): every destination `config` names needs a factory, and only those.
    pub fn with_destinations(
        config: Config,
        schemas: SchemaRegistry,
        mut factories: Vec<(String, SinkFactory)>,
    ) -> Result<Self, PipelineError> {
        let names = config.destination_names();
        factories.sort_by(|a, b| a.0.cmp(&b.0));
        let given: Vec<&String> = factories.iter().map(|(n, _)| n).collect();
        if given.iter().copied().ne(names.iter()) {
            return Err(crate::config::ConfigError::InvalidAt {
                key: "destinations".into(),
                rule: format!("sinks were given for {given:?}, the configuration names {names:?}"),
            }
            .into());
        }
        let processor = Arc::new(ArcSwap::from_pointee(Processor::new(schemas, &config)));
        Ok(Self::with_processor(config, processor, None, factories))
    }

    fn with_processor(
        config: Config,
        processor: LiveProcessor,
        watch: Option<Arc<reload::Watch>>,
        destinations: Vec<(String, SinkFactory)>,
    ) -> Self {
        let names: Vec<String> = destinations.iter().map(|(n, _)| n.clone()).collect();
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let shared = Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            capacity: config.queue.capacity as u64,
            max_bytes: config.queue.max_bytes.0.min(BYTES_MASK),
            max_event_bytes: config.queue.max_event_bytes.0.min(u64::from(u32::MAX)) as usize,
            wake_bytes: wake_bytes(&config.batch, &config.queue),
            config,
            hook: Arc::new(arc_swap::ArcSwapOption::empty()),
            state: ArcSwap::from_pointee(ProcState::new(fork::generation(), &names)),
            processor,
            watch,
            destinations,
        };
        Self {
            shared: Arc::new(shared),
        }
    }

    /// The processor in use (schemas, routing, transforms); a reload of the schema files
    /// replaces it.
    pub fn processor(&self) -> &LiveProcessor {
        &self.shared.processor
    }

    /// Sets (or clears) the hook told about rejected and dropped events. Events refused by
    /// `log()` itself (invalid envelope, queue full) are reported too, in totals per round.
    pub fn set_error_hook(&self, hook: Option<ErrorHook>) {
        self.shared.hook.store(hook.map(Arc::new));
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// An empty buffer to build an event body in; pass it back as `EventInput::event_json =
    /// Cow::Owned(buf)`. It is this thread's own scratch buffer, kept by its lane between calls
    /// (the body is copied from it into the lane's ring, see `lanes`), so it stays in this
    /// thread's cache; without one (the first call, or after a body too large for a record)
    /// a recycled buffer from the pool, else a new one.
    ///
    /// Both are reached through this thread's lane, which holds the state already, instead of
    /// a second load of the state (`arc_swap`'s thread-local debt list; ~30 instructions of a
    /// PHP call, docs/php-cost.md session 17). A new buffer starts at [`FRESH_BUFFER`] bytes
    /// rather than growing there through five reallocations.
    #[inline]
    pub fn buffer(&self) -> String {
        let pooled = lanes::with_lane(
            self.shared.id,
            fork::generation(),
            (),
            || self.state_full(),
            |st, io, ()| io.take_scratch().or_else(|| st.pool.pop()),
        )
        .unwrap_or_else(|()| self.state().pool.pop());
        pooled.unwrap_or_else(|| String::with_capacity(FRESH_BUFFER))
    }

    /// Logs a JSON object text with default time and id.
    #[inline]
    pub fn log_json(
        &self,
        namespace: &str,
        type_name: &str,
        event_json: &str,
    ) -> Result<(), LogError> {
        self.log(EventInput::new(namespace, type_name, event_json))
    }

    /// Takes an event: checks, stamps, enqueues. Never blocks; see the module docs.
    #[inline]
    pub fn log(&self, input: EventInput<'_>) -> Result<(), LogError> {
        let logged = lanes::with_lane(
            self.shared.id,
            fork::generation(),
            input,
            || self.state_full(),
            |st, io, input| {
                if !st.started.load(Ordering::Relaxed) {
                    // The thread could not be started before: try again.
                    self.state();
                }
                self.log_to(st, input, Some(io))
            },
        );
        match logged {
            Ok(r) => r,
            Err(input) => self.log_to(&self.state(), input, None),
        }
    }

    #[inline(always)]
    fn log_to(
        &self,
        st: &ProcState,
        input: EventInput<'_>,
        io: Option<&mut lanes::LaneIo>,
    ) -> Result<(), LogError> {
        st.counters.accept();
        let (namespace, type_name) = (input.namespace, input.type_name);
        match self.enqueue_to(st, input, io) {
            Ok(()) => Ok(()),
            Err(e) => {
                st.counters
                    .drop_meant_for(namespace, type_name, e.reason(), 1);
                Err(e)
            }
        }
    }

    /// Checks, stamps and publishes one event, to the caller's lane or else the shared queue.
    #[inline(always)]
    fn enqueue_to(
        &self,
        st: &ProcState,
        input: EventInput<'_>,
        io: Option<&mut lanes::LaneIo>,
    ) -> Result<(), LogError> {
        // The lane keeps the names that passed (and sends them only when they change); the
        // shared queue's events carry their own.
        let dest = match io {
            Some(io) => {
                io.check_names(input.namespace, input.type_name)?;
                Dest::Lane(io)
            }
            None => {
                let (namespace, type_name) =
                    lanes::checked_names(input.namespace, input.type_name)?;
                Dest::Shared {
                    namespace,
                    type_name,
                }
            }
        };
        let body = input.event_json;
        if body.len() > self.shared.max_event_bytes {
            return Err(EnvelopeError::new(
                "event",
                format!(
                    "is {} bytes, the limit is {} (queue.max_event_bytes)",
                    body.len(),
                    self.shared.max_event_bytes
                ),
            )
            .into());
        }
        envelope::check_event_text(&body)?;
        if let Some(t) = input.time {
            envelope::check_time_micros(t)?;
        }
        let received_at = crate::clock::now_micros();
        if let Some(id) = input.id {
            envelope::check_id(id)?;
        }
        if st.shut_down.load(Ordering::Relaxed) {
            return Err(LogError::ShutDown);
        }
        let bytes = body.len() as u64;
        let add = (1 << EVENT_SHIFT) | bytes;
        // One read-modify-write reserves room (a compare-and-swap loop costs more under
        // contention); a refused event backs its reservation out. SeqCst pairs with the flush
        // thread's store of `finished` (see there).
        let prev = st.load.fetch_add(add, Ordering::SeqCst);
        let depth = prev >> EVENT_SHIFT;
        let refused = if depth >= self.shared.capacity {
            Some(LogError::QueueFull("queue.capacity events"))
        } else if (prev & BYTES_MASK) + bytes > self.shared.max_bytes {
            Some(LogError::QueueFull("queue.max_bytes"))
        } else if st.finished.load(Ordering::SeqCst) {
            Some(LogError::ShutDown)
        } else {
            None
        };
        if let Some(e) = refused {
            st.load.fetch_sub(add, Ordering::Relaxed);
            return Err(e);
        }
        match dest {
            Dest::Lane(io) => io.push(
                lanes::Stamp {
                    time: input.time,
                    received_at,
                    id: input.id,
                },
                body,
                &st.pool,
            ),
            Dest::Shared {
                namespace,
                type_name,
            } => {
                st.queue.push(RawEvent {
                    namespace,
                    type_name,
                    time: input.time,
                    received_at,
                    id: EventId::given_or_new(input.id, received_at),
                    body: lanes::owned_body(body, &st.pool),
                });
            }
        }
        // `wake_at` is `u64::MAX` while the thread runs: then nothing is read but this load.
        let wake_at = st.wake_at.load(Ordering::Relaxed);
        if wake_at != u64::MAX
            && (depth + 1 >= wake_at || (prev & BYTES_MASK) + bytes >= self.shared.wake_bytes)
            && st.wake_at.swap(u64::MAX, Ordering::AcqRel) != u64::MAX
        {
            st.producer_wakeups.fetch_add(1, Ordering::Relaxed);
            st.unpark();
        }
        Ok(())
    }

    /// This process's state, rebuilt after a fork and with the flush thread started.
    #[inline]
    fn state(&self) -> arc_swap::Guard<Arc<ProcState>> {
        let st = self.shared.state.load();
        if st.generation == fork::generation() && st.started.load(Ordering::Relaxed) {
            return st;
        }
        self.state_slow(st)
    }

    fn state_full(&self) -> Arc<ProcState> {
        arc_swap::Guard::into_inner(self.state())
    }

    #[cold]
    fn state_slow(
        &self,
        mut st: arc_swap::Guard<Arc<ProcState>>,
    ) -> arc_swap::Guard<Arc<ProcState>> {
        let generation = fork::generation();
        if st.generation != generation {
            // A forked child: the copied state belongs to the parent (its thread does not exist
            // here, its queue holds the parent's events). Build our own; leave theirs untouched.
            let names: Vec<String> = self
                .shared
                .destinations
                .iter()
                .map(|(n, _)| n.clone())
                .collect();
            let fresh = Arc::new(ProcState::new(generation, &names));
            let _ = self.shared.state.compare_and_swap(&*st, fresh);
            st = self.shared.state.load();
        }
        if !st.started.load(Ordering::Acquire)
            && st
                .started
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            if let Err(e) = flush::spawn(self.shared.clone_parts(), Arc::clone(&st)) {
                // Could not start a thread (resource limits): try again on a later log(); until
                // then events wait in the queue, bounded as ever.
                st.started.store(false, Ordering::Release);
                debug_assert!(false, "cannot start the evlog flush thread: {e}");
            }
        }
        st
    }

    /// Waits until every event logged before this call has been answered by the sink, or
    /// `timeout` passes. True when everything made it (delivered, or rejected and stored as a
    /// dead letter); false on timeout, when events had to go to the spool instead (the sink is
    /// failing), or when events were dropped since the previous answer (counted in
    /// `dropped_total`, e.g. `sink_error` without a spool).
    pub fn flush(&self, timeout: Duration) -> bool {
        let st = self.shared.state.load_full();
        if st.generation != fork::generation() || !st.started.load(Ordering::Acquire) {
            return true; // nothing was logged in this process
        }
        if st.finished.load(Ordering::Acquire) {
            // Shut down: the thread answered everything before it stopped, and later events
            // were refused and counted.
            return true;
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        if st.requests.0.send(Request::Flush(tx)).is_err() {
            return st.queued_events() == 0;
        }
        st.unpark();
        rx.recv_timeout(timeout).unwrap_or(false)
    }

    /// Stops taking events, delivers what is queued until `timeout` passes, and stops the flush
    /// thread. From the call on, every request gets one attempt (a delivery in a backoff stops
    /// retrying at once) and none outlives the deadline ([`sink::StopSignal`]); what the sink
    /// fails goes to the spool if there is one, else it is dropped and counted (`sink_error`, or
    /// `shutdown_deadline` for what the deadline cut off or never reached the sink), before this
    /// returns (with the built-in sinks; a custom sink that ignores the signal gets
    /// `SHUTDOWN_GRACE` more, then its rows stay in flight). True when
    /// everything was delivered in time (false, as for [`Pipeline::flush`], when events were
    /// spooled or dropped since the previous flush() answer). Later `log()` calls fail with [`LogError::ShutDown`].
    pub fn shutdown(&self, timeout: Duration) -> bool {
        let st = self.shared.state.load_full();
        st.generation != fork::generation() || st.shutdown(Instant::now() + timeout)
    }

    /// The counters of this process.
    pub fn stats(&self) -> Stats {
        let st = self.shared.state.load();
        if st.generation != fork::generation() {
            // A child that has not logged yet: it has accepted nothing.
            return Counters::new().snapshot(0);
        }
        // Reservations, which may briefly include refused events while their producers back
        // out; those never make the queue exceed its capacity, so neither does the gauge.
        st.stats(st.queued_events().min(self.shared.capacity))
    }
}

fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What the flush thread needs from the pipeline (not the pipeline itself, so dropping the last
/// `Pipeline` is what shuts the thread down). `spool` and `sink_factory` are those of the
/// destination a delivery thread serves (the first, with one); `destinations` lists them all.
#[derive(Clone)]
pub(crate) struct FlushParts {
    batch: crate::config::BatchConfig,
    queue: crate::config::QueueConfig,
    spool: Option<SpoolPlace>,
    retry: crate::config::RetryConfig,
    hook: Arc<arc_swap::ArcSwapOption<ErrorHook>>,
    processor: LiveProcessor,
    /// The schema files' watch; the thread that reads the lanes checks it.
    watch: Option<Arc<reload::Watch>>,
    sink_factory: SinkFactory,
    /// Every destination: name, sink, spool (directory of its own), if it has one.
    destinations: Vec<(String, SinkFactory, Option<SpoolPlace>)>,
}

/// A destination's spool: where, and how big (see [`Config::destination_spool`]).
#[derive(Debug, Clone)]
pub(crate) struct SpoolPlace {
    options: crate::config::SpoolConfig,
    dir: std::path::PathBuf,
    /// The default directory: created private to the user (mode 0700, checked).
    private: bool,
}

impl Shared {
    fn clone_parts(&self) -> FlushParts {
        let destinations: Vec<_> = self
            .destinations
            .iter()
            .map(|(name, factory)| {
                // A named destination spools in a directory of its own.
                let spool = self
                    .config
                    .destination_spool(name)
                    .map(|(dir, private)| SpoolPlace {
                        options: self.config.spool.clone(),
                        dir,
                        private,
                    });
                (name.clone(), Arc::clone(factory), spool)
            })
            .collect();
        let (_, sink_factory, spool) = destinations[0].clone();
        FlushParts {
            batch: self.config.batch.clone(),
            queue: self.config.queue.clone(),
            spool,
            retry: self.config.retry.clone(),
            hook: Arc::clone(&self.hook),
            processor: Arc::clone(&self.processor),
            watch: self.watch.clone(),
            sink_factory,
            destinations,
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let st = self.state.load_full();
        if st.generation == fork::generation() {
            st.shutdown(Instant::now() + self.config.batch.shutdown_timeout);
        }
    }
}
