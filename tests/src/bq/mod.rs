//! A BigQuery stand-in for tests: the REST v2 wire format of `tabledata.insertAll`,
//! `tabledata.list`, `tables.get/insert/list/delete/patch/update` and `datasets.get/insert`
//! (schema changes by BigQuery's additive rules, with a propagation delay), with BigQuery's
//! error bodies, per-row `insertErrors`, `insertId` de-duplication, template tables, gzip request
//! bodies, and faults injected on demand. See `tests/README.md` for what differs from BigQuery.
//!
//! ```no_run
//! use evlog_tests::bq::{BqTestConfig, BqTestServer, Fault};
//! let server = BqTestServer::start_blocking(BqTestConfig::default()).unwrap();
//! server
//!     .create_table("p", "d", "t", &serde_json::json!([{"name": "x", "type": "INT64"}]))
//!     .unwrap();
//! server.inject(Fault::Http503Json);
//! // point the client at server.v2_base_url() (http://127.0.0.1:PORT/bigquery/v2)
//! ```
//!
//! With `BqTestConfig { grpc: true, .. }` it also serves the Storage Write API over gRPC on a
//! second port ([`BqTestServer::grpc_url`]), sharing the same tables (see [`grpc`]).

pub mod grpc;
mod http;
mod patch;
pub mod schema;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tokio::sync::watch;

use schema::Column;

/// BigQuery's limit on one HTTP request to `insertAll`.
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
/// BigQuery's limit on rows in one `insertAll` request.
pub const MAX_ROWS_PER_REQUEST: usize = 50_000;

/// Server settings.
#[derive(Debug, Clone)]
pub struct BqTestConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// How long an `insertId` is remembered per table (BigQuery: "at least one minute").
    pub dedupe_window: Duration,
    /// Answer 401 to requests without `Authorization: Bearer <token>` (any token is accepted).
    pub require_auth: bool,
    /// Largest request body, compressed or not.
    pub max_request_bytes: usize,
    /// Most rows in one `insertAll`.
    pub max_rows_per_request: usize,
    /// `Retry-After` seconds sent with injected 429 answers.
    pub retry_after_secs: u64,
    /// How long a schema change by `tables.patch` / `tables.update` takes to reach `insertAll`
    /// (see [`BqTestServer::set_schema_propagation`]); 0: at once.
    pub schema_propagation: Duration,
    /// Also serve the Storage Write API (gRPC `BigQueryWrite`, plaintext HTTP/2) on `grpc_port`.
    pub grpc: bool,
    /// Port on 127.0.0.1 for gRPC when `grpc` is set; 0 picks a free one.
    pub grpc_port: u16,
}

impl Default for BqTestConfig {
    fn default() -> Self {
        Self {
            port: 0,
            dedupe_window: Duration::from_secs(60),
            require_auth: false,
            max_request_bytes: MAX_REQUEST_BYTES,
            max_rows_per_request: MAX_ROWS_PER_REQUEST,
            retry_after_secs: 1,
            schema_propagation: Duration::ZERO,
            grpc: false,
            grpc_port: 0,
        }
    }
}

/// A fault the server injects instead of (or around) a normal answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 500 with a JSON error body, reason `internalError`.
    Http500Json,
    /// 503 with a JSON error body, reason `backendError`.
    Http503Json,
    /// 500 with a `text/plain` body that is not JSON (what a proxy in front might send).
    Http500PlainText,
    /// 429 with reason `rateLimitExceeded` and a `Retry-After` header.
    Http429,
    /// 403 with reason `rateLimitExceeded` (how BigQuery reports most streaming rate limits).
    Http403RateLimit,
    /// Waits this long, then handles the request normally.
    Slow(Duration),
    /// Reads the request, then closes the TCP connection without answering; nothing is stored.
    DropConnection,
    /// Handles the request (rows are stored), then closes the connection without answering:
    /// the client cannot know the rows landed, and a retry must rely on `insertId`.
    DropAfterInsert,
}

impl Fault {
    /// A short stable name, used in stats and the admin endpoint.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Http500Json => "http500_json",
            Fault::Http503Json => "http503_json",
            Fault::Http500PlainText => "http500_plain",
            Fault::Http429 => "http429",
            Fault::Http403RateLimit => "http403_rate_limit",
            Fault::Slow(_) => "slow",
            Fault::DropConnection => "drop",
            Fault::DropAfterInsert => "drop_after_insert",
        }
    }

    /// Parses a name from [`Fault::name`]; `slow` takes `slow_ms`.
    pub fn from_name(name: &str, slow_ms: u64) -> Option<Fault> {
        Some(match name {
            "http500_json" => Fault::Http500Json,
            "http503_json" => Fault::Http503Json,
            "http500_plain" => Fault::Http500PlainText,
            "http429" => Fault::Http429,
            "http403_rate_limit" => Fault::Http403RateLimit,
            "slow" => Fault::Slow(Duration::from_millis(slow_ms)),
            "drop" => Fault::DropConnection,
            "drop_after_insert" => Fault::DropAfterInsert,
            _ => return None,
        })
    }

    /// The mix [`BqTestServer::set_failure_ratio`] draws from.
    pub fn default_mix() -> Vec<Fault> {
        vec![
            Fault::Http500Json,
            Fault::Http503Json,
            Fault::Http500PlainText,
            Fault::Http429,
            Fault::DropConnection,
            Fault::DropAfterInsert,
        ]
    }
}

/// Which requests a queued fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTarget {
    /// Only `tabledata.insertAll` requests.
    InsertAll,
    /// Any API request (not the admin endpoints).
    Any,
}

/// Counters, readable with [`BqTestServer::stats`] or `GET /_stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// API requests received (admin endpoints excluded), faulted ones included.
    pub requests: u64,
    pub insert_all_requests: u64,
    pub gzip_requests: u64,
    /// Request body bytes as received (before gunzip).
    pub bytes_received: u64,
    /// Rows in `insertAll` requests that got past faults, auth and request-level checks.
    pub rows_received: u64,
    pub rows_stored: u64,
    /// Rows acknowledged but not stored again because their `insertId` was seen recently.
    pub duplicates_dropped: u64,
    pub rows_invalid: u64,
    pub rows_stopped: u64,
    pub faults_injected: u64,
    pub faults_by_kind: BTreeMap<String, u64>,
    /// Requests answered 503 because the server was set down.
    pub down_rejections: u64,
    pub tables_created: u64,
    /// Successful `tables.patch` / `tables.update` calls that changed a schema.
    pub tables_patched: u64,
    /// Row errors "no such field" answered for a column that was still propagating.
    pub rows_awaiting_column: u64,
}

impl Stats {
    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "insert_all_requests": self.insert_all_requests,
            "gzip_requests": self.gzip_requests,
            "bytes_received": self.bytes_received,
            "rows_received": self.rows_received,
            "rows_stored": self.rows_stored,
            "duplicates_dropped": self.duplicates_dropped,
            "rows_invalid": self.rows_invalid,
            "rows_stopped": self.rows_stopped,
            "faults_injected": self.faults_injected,
            "faults_by_kind": self.faults_by_kind,
            "down_rejections": self.down_rejections,
            "tables_created": self.tables_created,
            "tables_patched": self.tables_patched,
            "rows_awaiting_column": self.rows_awaiting_column,
        })
    }
}

/// One API request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// HTTP status answered; 0 when the connection was dropped without an answer.
    pub status: u16,
    pub gzip: bool,
    /// Rows in an `insertAll` body (0 for other requests or unreadable bodies).
    pub rows: usize,
    pub fault: Option<&'static str>,
}

/// A stored row, as inserted (unknown fields removed when `ignoreUnknownValues` was set).
#[derive(Debug, Clone)]
pub(crate) struct StoredRow {
    pub insert_id: Option<String>,
    pub json: Map<String, Value>,
}

/// The insertId map's hasher (not DoS-resistant; this server is for tests).
type FastHash = std::hash::BuildHasherDefault<rustc_hash::FxHasher>;

#[derive(Debug)]
pub(crate) struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<StoredRow>,
    /// `numBytes`: insertAll rows count their share of the request body, Storage Write rows
    /// their serialized size.
    pub bytes: u64,
    pub created_ms: i64,
    pub modified_ms: i64,
    /// insertIds seen within the window: id -> when, plus the same in arrival order (one
    /// allocation per id, shared; a fast hasher: ids are the server's busiest lookup).
    pub recent_ids: HashMap<Arc<str>, Instant, FastHash>,
    pub recent_order: VecDeque<(Instant, Arc<str>)>,
    /// The schema `insertAll` still sees while a change propagates.
    pub propagating: Option<patch::Propagating>,
}

impl Table {
    fn new(columns: Vec<Column>) -> Self {
        let now = now_ms();
        Self {
            columns,
            rows: Vec::new(),
            bytes: 0,
            created_ms: now,
            modified_ms: now,
            recent_ids: HashMap::default(),
            recent_order: VecDeque::new(),
            propagating: None,
        }
    }

    /// The columns `insertAll` checks rows against at `now`, and whether they are the ones
    /// from before a change that is still propagating.
    pub(crate) fn insert_columns(&mut self, now: Instant) -> (Vec<Column>, bool) {
        match &self.propagating {
            Some(p) if now < p.until => (p.columns.clone(), true),
            _ => {
                self.propagating = None;
                (self.columns.clone(), false)
            }
        }
    }

    /// True when `id` was seen within `window`; records it otherwise.
    pub(crate) fn seen_recently(&mut self, id: &str, window: Duration, now: Instant) -> bool {
        while let Some((t, _)) = self.recent_order.front() {
            if now.duration_since(*t) < window {
                break;
            }
            let (t, old) = self.recent_order.pop_front().expect("front exists");
            if self.recent_ids.get(&old) == Some(&t) {
                self.recent_ids.remove(&old);
            }
        }
        if let Some(t) = self.recent_ids.get(id) {
            if now.duration_since(*t) < window {
                return true;
            }
        }
        let id: Arc<str> = Arc::from(id);
        self.recent_ids.insert(Arc::clone(&id), now);
        self.recent_order.push_back((now, id));
        false
    }
}

#[derive(Debug)]
pub(crate) struct DatasetMeta {
    pub created_ms: i64,
}

pub(crate) type TableKey = (String, String, String);

#[derive(Debug, Default)]
pub(crate) struct State {
    pub datasets: BTreeMap<(String, String), DatasetMeta>,
    pub tables: BTreeMap<TableKey, Table>,
    pub stats: Stats,
    pub requests: Vec<RequestRecord>,
    /// Write streams and counters of the gRPC API.
    pub grpc: grpc::GrpcState,
}

/// Most request records kept (oldest are dropped first).
const MAX_REQUEST_RECORDS: usize = 100_000;

impl State {
    pub(crate) fn record(&mut self, r: RequestRecord) {
        if self.requests.len() >= MAX_REQUEST_RECORDS {
            self.requests.drain(..MAX_REQUEST_RECORDS / 10);
        }
        self.requests.push(r);
    }

    pub(crate) fn ensure_dataset(&mut self, p: &str, d: &str) {
        self.datasets
            .entry((p.to_string(), d.to_string()))
            .or_insert_with(|| DatasetMeta {
                created_ms: now_ms(),
            });
    }

    pub(crate) fn add_table(&mut self, key: TableKey, columns: Vec<Column>) {
        self.stats.tables_created += 1;
        self.tables.insert(key, Table::new(columns));
    }
}

#[derive(Debug, Default)]
pub(crate) struct FaultState {
    pub queue: VecDeque<(FaultTarget, Fault)>,
    pub ratio: f64,
    pub mix: Vec<Fault>,
    pub rng: u64,
    pub grpc: grpc::GrpcFaults,
}

impl FaultState {
    /// The fault for the next request, if any: the queue first, then the failure ratio (which
    /// applies to `insertAll` only).
    pub(crate) fn next(&mut self, is_insert_all: bool) -> Option<Fault> {
        if let Some(i) = self
            .queue
            .iter()
            .position(|(t, _)| *t == FaultTarget::Any || is_insert_all)
        {
            return self.queue.remove(i).map(|(_, f)| f);
        }
        if is_insert_all && self.ratio > 0.0 && !self.mix.is_empty() {
            let draw = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            if draw < self.ratio {
                let i = (self.next_u64() % self.mix.len() as u64) as usize;
                return Some(self.mix[i].clone());
            }
        }
        None
    }

    /// The fault for the next `AppendRows` request, if any: the gRPC queue first, then the gRPC
    /// failure ratio.
    pub(crate) fn next_grpc(&mut self) -> Option<grpc::GrpcFault> {
        if let Some(f) = self.grpc.queue.pop_front() {
            return Some(f);
        }
        if self.grpc.ratio > 0.0 && !self.grpc.mix.is_empty() {
            let draw = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            if draw < self.grpc.ratio {
                let i = (self.next_u64() % self.grpc.mix.len() as u64) as usize;
                return Some(self.grpc.mix[i].clone());
            }
        }
        None
    }

    /// splitmix64: reproducible from the seed.
    fn next_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub cfg: BqTestConfig,
    pub state: Mutex<State>,
    pub faults: Mutex<FaultState>,
    pub down: AtomicBool,
    /// (dataset, table) pairs the caller has no permission on (see [`BqTestServer::deny_table`]).
    pub denied: Mutex<HashSet<(String, String)>>,
    /// How long a schema change takes to reach `insertAll` (see `patch`).
    pub propagation: Mutex<Duration>,
    pub refusing: watch::Sender<bool>,
    pub shutdown: watch::Sender<bool>,
    /// Bumped to close every open connection.
    pub kill: watch::Sender<u64>,
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, FaultState> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the caller lacks permission on `dataset.table`.
    pub(crate) fn is_denied(&self, dataset: &str, table: &str) -> bool {
        self.denied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(dataset.to_string(), table.to_string()))
    }

    pub(crate) fn set_denied(&self, dataset: &str, table: &str, denied: bool) {
        let mut d = self.denied.lock().unwrap_or_else(|e| e.into_inner());
        let key = (dataset.to_string(), table.to_string());
        if denied {
            d.insert(key);
        } else {
            d.remove(&key);
        }
    }

    fn kill_connections(&self) {
        self.kill.send_modify(|v| *v += 1);
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A running test server. Dropping it shuts it down.
#[derive(Debug)]
pub struct BqTestServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    grpc_addr: Option<SocketAddr>,
    thread: Option<JoinHandle<()>>,
}

impl BqTestServer {
    fn shared_for(cfg: BqTestConfig) -> Arc<Shared> {
        let propagation = cfg.schema_propagation;
        Arc::new(Shared {
            cfg,
            state: Mutex::new(State::default()),
            faults: Mutex::new(FaultState {
                mix: Fault::default_mix(),
                grpc: grpc::GrpcFaults {
                    mix: grpc::GrpcFault::default_mix(),
                    ..Default::default()
                },
                ..FaultState::default()
            }),
            down: AtomicBool::new(false),
            denied: Mutex::new(HashSet::new()),
            propagation: Mutex::new(propagation),
            refusing: watch::channel(false).0,
            shutdown: watch::channel(false).0,
            kill: watch::channel(0).0,
        })
    }

    /// Starts the server on the current tokio runtime (127.0.0.1, `cfg.port`).
    pub async fn start(cfg: BqTestConfig) -> io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", cfg.port)).await?;
        let addr = listener.local_addr()?;
        let grpc_listener = match cfg.grpc {
            true => Some(tokio::net::TcpListener::bind(("127.0.0.1", cfg.grpc_port)).await?),
            false => None,
        };
        let grpc_addr = grpc_listener.as_ref().map(|l| l.local_addr()).transpose()?;
        let shared = Self::shared_for(cfg);
        tokio::spawn(http::serve(Arc::clone(&shared), listener, addr));
        if let Some(l) = grpc_listener {
            tokio::spawn(grpc::serve(Arc::clone(&shared), l));
        }
        Ok(Self {
            shared,
            addr,
            grpc_addr,
            thread: None,
        })
    }

    /// Starts the server on its own thread with its own tokio runtime: for synchronous tests.
    pub fn start_blocking(cfg: BqTestConfig) -> io::Result<Self> {
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", cfg.port))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let grpc_listener = match cfg.grpc {
            true => {
                let l = std::net::TcpListener::bind(("127.0.0.1", cfg.grpc_port))?;
                l.set_nonblocking(true)?;
                Some(l)
            }
            false => None,
        };
        let grpc_addr = grpc_listener.as_ref().map(|l| l.local_addr()).transpose()?;
        let shared = Self::shared_for(cfg);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bq-test-server")
            .enable_all()
            .build()?;
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("bq-test-server".into())
            .spawn(move || {
                rt.block_on(async move {
                    if let Some(l) = grpc_listener {
                        match tokio::net::TcpListener::from_std(l) {
                            Ok(l) => drop(tokio::spawn(grpc::serve(Arc::clone(&s), l))),
                            Err(e) => eprintln!("bq-test-server (gRPC): {e}"),
                        }
                    }
                    match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(listener) => http::serve(s, listener, addr).await,
                        Err(e) => eprintln!("bq-test-server: {e}"),
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Self {
            shared,
            addr,
            grpc_addr,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`; the API lives under `/bigquery/v2`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/bigquery/v2`: what clients take as their v2 base URL.
    pub fn v2_base_url(&self) -> String {
        format!("http://{}/bigquery/v2", self.addr)
    }

    /// The gRPC address, when started with `grpc: true`.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    /// `http://127.0.0.1:PORT` of the Storage Write API (plaintext HTTP/2; `127.0.0.1:PORT` is
    /// the `api_endpoint` of Google's clients). Panics when the server was started without
    /// `grpc: true`: a test asking for it has a setup bug.
    pub fn grpc_url(&self) -> String {
        match self.grpc_addr {
            Some(a) => format!("http://{a}"),
            None => {
                panic!("BqTestServer::grpc_url: start it with BqTestConfig {{ grpc: true, .. }}")
            }
        }
    }

    pub fn config(&self) -> &BqTestConfig {
        &self.shared.cfg
    }

    /// Creates a dataset (no-op when it exists).
    pub fn create_dataset(&self, project: &str, dataset: &str) {
        self.shared.state().ensure_dataset(project, dataset);
    }

    /// Creates (or replaces) a table with a BigQuery JSON schema (an array of fields or
    /// `{"fields":[...]}`), creating the dataset if needed.
    pub fn create_table(
        &self,
        project: &str,
        dataset: &str,
        table: &str,
        schema: &Value,
    ) -> Result<(), String> {
        let columns = schema::parse_schema(schema)?;
        let mut st = self.shared.state();
        st.ensure_dataset(project, dataset);
        st.add_table(
            (project.to_string(), dataset.to_string(), table.to_string()),
            columns,
        );
        Ok(())
    }

    /// Loads every `<dir>/<dataset>/<table>.json` (evlog schema files, through `evlog_core`, so
    /// evlog's reserved columns are included) into `project`. Returns the tables created.
    pub fn load_evlog_schemas(&self, dir: &Path, project: &str) -> Result<usize, String> {
        let reg = evlog_core::schema::SchemaRegistry::load_dir(dir).map_err(|e| e.to_string())?;
        let mut n = 0;
        for s in reg.iter() {
            self.create_table(project, s.namespace(), s.type_name(), &s.to_bigquery_json())?;
            n += 1;
        }
        Ok(n)
    }

    /// The rows stored in a table, in insertion order, as inserted (empty if no such table).
    pub fn rows(&self, project: &str, dataset: &str, table: &str) -> Vec<Value> {
        self.with_table(project, dataset, table, |t| {
            t.rows
                .iter()
                .map(|r| Value::Object(r.json.clone()))
                .collect()
        })
        .unwrap_or_default()
    }

    /// The `insertId` of each stored row, in insertion order.
    pub fn insert_ids(&self, project: &str, dataset: &str, table: &str) -> Vec<Option<String>> {
        self.with_table(project, dataset, table, |t| {
            t.rows.iter().map(|r| r.insert_id.clone()).collect()
        })
        .unwrap_or_default()
    }

    /// A table's schema fields as `tables.get` returns them, if the table exists.
    pub fn table_schema(&self, project: &str, dataset: &str, table: &str) -> Option<Value> {
        self.with_table(project, dataset, table, |t| {
            Value::Array(t.columns.iter().map(http::column_json).collect())
        })
    }

    pub fn table_exists(&self, project: &str, dataset: &str, table: &str) -> bool {
        self.with_table(project, dataset, table, |_| ()).is_some()
    }

    fn with_table<R>(&self, p: &str, d: &str, t: &str, f: impl FnOnce(&Table) -> R) -> Option<R> {
        let st = self.shared.state();
        st.tables
            .get(&(p.to_string(), d.to_string(), t.to_string()))
            .map(f)
    }

    /// Table ids of a dataset, sorted.
    pub fn table_ids(&self, project: &str, dataset: &str) -> Vec<String> {
        let st = self.shared.state();
        st.tables
            .keys()
            .filter(|(p, d, _)| p == project && d == dataset)
            .map(|(_, _, t)| t.clone())
            .collect()
    }

    /// Queues a fault for the next `insertAll` request.
    pub fn inject(&self, fault: Fault) {
        self.inject_on(FaultTarget::InsertAll, fault);
    }

    /// Queues a fault for the next request matching `target`.
    pub fn inject_on(&self, target: FaultTarget, fault: Fault) {
        self.shared.faults().queue.push_back((target, fault));
    }

    /// Faults still queued.
    pub fn pending_faults(&self) -> usize {
        self.shared.faults().queue.len()
    }

    /// Empties the fault queues (REST and gRPC) and sets both failure ratios to 0.
    pub fn clear_faults(&self) {
        let mut f = self.shared.faults();
        f.queue.clear();
        f.ratio = 0.0;
        f.grpc.queue.clear();
        f.grpc.ratio = 0.0;
    }

    /// Queues a fault for the next gRPC `AppendRows` request (of any connection).
    pub fn inject_grpc(&self, fault: grpc::GrpcFault) {
        self.shared.faults().grpc.queue.push_back(fault);
    }

    /// Fails fraction `p` of `AppendRows` requests with faults from
    /// [`grpc::GrpcFault::default_mix`] (lost acks included), reproducibly from `seed`.
    pub fn set_grpc_failure_ratio(&self, p: f64, seed: u64) {
        self.set_grpc_failure_mix(p, seed, grpc::GrpcFault::default_mix());
    }

    /// Like [`Self::set_grpc_failure_ratio`] with a chosen mix of faults.
    pub fn set_grpc_failure_mix(&self, p: f64, seed: u64, mix: Vec<grpc::GrpcFault>) {
        let mut f = self.shared.faults();
        f.grpc.ratio = p.clamp(0.0, 1.0);
        f.rng = seed;
        f.grpc.mix = mix;
    }

    /// Counters of the gRPC API.
    pub fn grpc_stats(&self) -> grpc::GrpcStats {
        self.shared.state().grpc.stats.clone()
    }

    /// Rows appended over gRPC to PENDING or BUFFERED streams of a table and not visible yet.
    pub fn grpc_held_rows(&self, project: &str, dataset: &str, table: &str) -> usize {
        let key = (project.to_string(), dataset.to_string(), table.to_string());
        let st = self.shared.state();
        st.grpc
            .streams
            .values()
            .filter(|s| s.table == key)
            .map(|s| s.held.len())
            .sum()
    }

    /// Fails fraction `p` of `insertAll` requests with faults from [`Fault::default_mix`],
    /// drawn from an RNG seeded with `seed` (same seed, same sequence of requests: same faults).
    pub fn set_failure_ratio(&self, p: f64, seed: u64) {
        self.set_failure_mix(p, seed, Fault::default_mix());
    }

    /// Like [`Self::set_failure_ratio`] with a chosen mix of faults.
    pub fn set_failure_mix(&self, p: f64, seed: u64, mix: Vec<Fault>) {
        let mut f = self.shared.faults();
        f.ratio = p.clamp(0.0, 1.0);
        f.rng = seed;
        f.mix = mix;
    }

    /// Down: every API request is answered 503 `backendError` until set up again.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Denied: the caller has no permission on `dataset.table` until allowed again, as with a
    /// service account lacking `bigquery.tables.updateData` and `bigquery.tables.create` there:
    /// `insertAll` into it and `tables.insert` of it are answered 403 `accessDenied`, whether the
    /// table exists or not (BigQuery checks permissions first); everything else is unchanged.
    pub fn deny_table(&self, dataset: &str, table: &str, denied: bool) {
        self.shared.set_denied(dataset, table, denied);
    }

    /// From now on, a schema change by `tables.patch` / `tables.update` reaches `insertAll`
    /// only `delay` after it was made: meanwhile rows are checked against the schema from
    /// before (a field only the new one has is refused per row, `invalid`, "no such field: x."),
    /// while `tables.get` shows the new schema at once. Day shards made by `templateSuffix`
    /// meanwhile inherit the delay.
    pub fn set_schema_propagation(&self, delay: Duration) {
        *self
            .shared
            .propagation
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = delay;
    }

    /// Refusing: the listening socket is closed (connections are refused) and open connections
    /// are closed, until set back to false (the same port is bound again).
    pub fn set_refusing(&self, refusing: bool) {
        self.shared.refusing.send_replace(refusing);
        if refusing {
            self.shared.kill_connections();
        }
    }

    pub fn stats(&self) -> Stats {
        self.shared.state().stats.clone()
    }

    /// Every API request seen so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.state().requests.clone()
    }

    /// Stops accepting, closes open connections and (for [`Self::start_blocking`]) joins the
    /// server thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.shutdown.send_replace(true);
        self.shared.kill_connections();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for BqTestServer {
    fn drop(&mut self) {
        self.stop();
    }
}
