//! The `Client` class (one core `Pipeline`) and the module-level default client.
//!
//! Methods are thin: convert arguments, one call into core, map the result. Anything that may
//! wait (`flush`, `shutdown`) releases the GIL through [`enter_evlog`]; `log()` never waits, so it
//! keeps the GIL (releasing it would cost more than the call).

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use evlog_core::{envelope, Config, EventInput, Pipeline};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};

use crate::convert::{self, ConvertError};
use crate::dispatch::{Dispatch, ErrorFeed};
use crate::error::{self, Error};
use crate::utils::{enter_evlog, timeout};

/// Default timeout of `flush()` and `shutdown()`, in seconds.
const DEFAULT_TIMEOUT: f64 = 5.0;

/// An evlog client: a pipeline (queue, flush thread, sink) configured once.
///
/// `Client(path=None, *, on_error=None, **settings)`: with `path`, that TOML file; with
/// `settings`, the same keys as the file by section (`sink={"kind": "null"}`); with neither,
/// the file named by `EVLOG_CONFIG` or the defaults. `EVLOG_*` variables override in every case.
#[pyclass(module = "evlog", name = "Client", frozen, subclass, weakref)]
#[derive(Debug)]
pub struct Client {
    pipeline: Pipeline,
    on_error: Option<Py<PyAny>>,
    dispatch: Dispatch,
    closed: AtomicBool,
}

impl Client {
    fn build(
        path: Option<PathBuf>,
        on_error: Option<Py<PyAny>>,
        settings: Option<&Bound<'_, PyDict>>,
    ) -> Result<Self, Error> {
        let settings = settings.filter(|s| !s.is_empty());
        let config = match (path, settings) {
            (Some(_), Some(_)) => {
                return Err(Error::Settings(
                    "give either path= or settings, not both (put the settings in the file)".into(),
                ))
            }
            (Some(p), None) => Config::from_path(&p)?,
            (None, Some(s)) => {
                let text = settings_toml(s)?;
                Config::from_toml_with_env(&text, "settings", std::env::vars())?
            }
            (None, None) => Config::from_env()?,
        };
        let pipeline = Pipeline::new(config)?;
        let dispatch = Dispatch::new();
        if on_error.is_some() {
            if !dispatch.is_available() {
                return Err(Error::Dispatch(
                    "on_error: cannot create the dispatcher's wake-up socket (out of file descriptors?)",
                ));
            }
            pipeline.set_error_hook(Some(dispatch.hook()));
        }
        Ok(Self {
            pipeline,
            on_error,
            dispatch,
            closed: AtomicBool::new(false),
        })
    }

    /// The hot path shared by `Client.log` and `evlog.log`.
    #[inline]
    fn log_impl(
        slf: &Bound<'_, Self>,
        namespace: &Bound<'_, PyAny>,
        type_name: &Bound<'_, PyAny>,
        event: &Bound<'_, PyAny>,
        time: Option<&Bound<'_, PyAny>>,
        id: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let this = slf.get();
        if this.on_error.is_some() && this.dispatch.needs_start() {
            start_dispatcher(slf)?;
        }
        let namespace = arg_str(namespace, "namespace")?;
        let type_name = arg_str(type_name, "type")?;
        let parts = (|| -> PyResult<_> {
            // This thread's scratch buffer, kept by core between calls, handed back as the body.
            let mut body = this.pipeline.buffer();
            convert::write_event(&mut body, event).map_err(Error::from)?;
            let time = match time {
                Some(t) if !t.is_none() => Some(time_micros(t)?),
                _ => None,
            };
            let id = match id {
                Some(i) if !i.is_none() => Some(arg_str(i, "id")?),
                _ => None,
            };
            Ok((body, time, id))
        })();
        let (body, time, id) = match parts {
            Ok(p) => p,
            Err(e) => {
                // Offered but refused: let core count it like any refused envelope (an empty
                // body is never taken), so accepted = delivered + rejected + dropped holds.
                let _ = this.pipeline.log(EventInput::new(namespace, type_name, ""));
                return Err(e);
            }
        };
        let input = EventInput {
            namespace,
            type_name,
            event_json: Cow::Owned(body),
            time,
            id,
        };
        error::logged(this.pipeline.log(input))
    }

    fn flush_impl(&self, py: Python<'_>, seconds: f64) -> bool {
        let p = &self.pipeline;
        enter_evlog(py, || p.flush(timeout(seconds)))
    }

    fn shutdown_impl(&self, py: Python<'_>, seconds: f64) -> bool {
        self.closed.store(true, Ordering::Release);
        let p = &self.pipeline;
        let done = enter_evlog(py, || p.shutdown(timeout(seconds)));
        // The flush thread has reported (after a timeout, what it reports once the dispatcher
        // has exited counts as missed): the dispatcher delivers what is queued and exits.
        self.dispatch.stop();
        done
    }

    fn stats_impl<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.pipeline.stats();
        let d = PyDict::new(py);
        for (name, value) in stats.to_flat() {
            d.set_item(name, value as u64)?;
        }
        d.set_item("evlog_on_error_missed_total", self.dispatch.missed())?;
        Ok(d)
    }
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (path=None, *, on_error=None, **settings))]
    fn new(
        path: Option<PathBuf>,
        on_error: Option<Py<PyAny>>,
        settings: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        if let Some(cb) = &on_error {
            if !Python::with_gil(|py| cb.bind(py).is_callable()) {
                return Err(Error::Settings("on_error must be callable".into()).into());
            }
        }
        Ok(Self::build(path, on_error, settings)?)
    }

    /// Converts `event` to JSON, checks the envelope and queues it. Never blocks. True when
    /// queued; False when dropped for a transport reason (queue full, shut down), counted.
    #[pyo3(signature = (namespace, r#type, event, *, time=None, id=None))]
    fn log(
        slf: &Bound<'_, Self>,
        namespace: &Bound<'_, PyAny>,
        r#type: &Bound<'_, PyAny>,
        event: &Bound<'_, PyAny>,
        time: Option<&Bound<'_, PyAny>>,
        id: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        Self::log_impl(slf, namespace, r#type, event, time, id)
    }

    /// Waits (GIL released) until everything logged before has been answered by the sink.
    #[pyo3(signature = (timeout=DEFAULT_TIMEOUT))]
    fn flush(&self, py: Python<'_>, timeout: f64) -> bool {
        self.flush_impl(py, timeout)
    }

    /// Delivers what is queued (up to `timeout`), stops the flush thread; later logs return False.
    #[pyo3(signature = (timeout=DEFAULT_TIMEOUT))]
    fn shutdown(&self, py: Python<'_>, timeout: f64) -> bool {
        self.shutdown_impl(py, timeout)
    }

    /// Counters of this process by their names (docs/contracts.md).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.stats_impl(py)
    }

    /// The `on_error` callback, if any.
    #[getter]
    fn on_error(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.on_error.as_ref().map(|c| c.clone_ref(py))
    }

    /// Whether `shutdown()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        let seconds = self.pipeline.config().batch.shutdown_timeout.as_secs_f64();
        self.shutdown_impl(py, seconds);
        false
    }

    /// What this process's `on_error` dispatcher thread reads (called by `_start_dispatcher`).
    fn _error_feed(&self) -> ErrorFeed {
        self.dispatch.feed()
    }

    /// Called by `evlog`'s `os.register_at_fork(after_in_child=...)`.
    fn _after_fork_child(&self) {
        self.dispatch.after_fork_child();
    }
}

#[cold]
fn start_dispatcher(slf: &Bound<'_, Client>) -> PyResult<()> {
    if slf.get().dispatch.claim_start() {
        let py = slf.py();
        py.import("evlog")?
            .getattr("_start_dispatcher")?
            .call1((slf,))?;
    }
    Ok(())
}

/// A `str` argument of the envelope, or `InvalidEvent` naming it.
#[inline]
fn arg_str<'a>(v: &'a Bound<'_, PyAny>, field: &str) -> PyResult<&'a str> {
    match v.downcast::<PyString>() {
        Ok(s) => s.to_str(),
        Err(_) => {
            let ty = v.get_type().name()?.to_string();
            Err(Error::from(
                ConvertError::new(format!("must be a str, got {ty}")).within_field(field),
            )
            .into())
        }
    }
}

/// `time=`: a `datetime` (naive = UTC) or epoch milliseconds (int or float).
fn time_micros(t: &Bound<'_, PyAny>) -> PyResult<i64> {
    let bad = |rule: String| -> PyErr {
        Error::from(ConvertError::new(rule).within_field("time")).into()
    };
    if t.is_instance_of::<PyBool>() {
        return Err(bad(
            "must be a datetime or epoch milliseconds, got bool".into()
        ));
    }
    let micros = if t.is_instance_of::<PyInt>() {
        let ms: i64 = t
            .extract()
            .map_err(|_| bad("epoch milliseconds out of range".into()))?;
        envelope::time_from_epoch_millis(ms).map_err(Error::from)?
    } else if t.is_instance_of::<PyFloat>() {
        let ms: f64 = t.extract()?;
        let micros = (ms * 1000.0).round();
        if !micros.is_finite() || micros.abs() > 9.0e18 {
            return Err(bad(format!("epoch milliseconds {ms} out of range")));
        }
        micros as i64
    } else if t.is_instance_of::<PyString>() {
        return Err(bad(
            "must be a datetime or epoch milliseconds, got str (parse it first)".into(),
        ));
    } else {
        match convert::datetime_micros_checked(t) {
            Some(r) => r.map_err(|e| -> PyErr { Error::from(e.within_field("time")).into() })?,
            None => {
                let ty = t.get_type().name()?.to_string();
                return Err(bad(format!(
                    "must be a datetime or epoch milliseconds, got {ty}"
                )));
            }
        }
    };
    envelope::check_time_micros(micros).map_err(Error::from)?;
    Ok(micros)
}

/// Builds TOML text from the settings dict (via JSON, so every value type round-trips the same
/// way the file would); core then parses, overlays `EVLOG_*` and validates it.
fn settings_toml(settings: &Bound<'_, PyDict>) -> Result<String, Error> {
    let mut json = String::new();
    convert::write_value(&mut json, settings.as_any(), 0)
        .map_err(|e| Error::Settings(format!("settings: {e}")))?;
    let value: toml::Value = serde_json::from_str(&json).map_err(|e| {
        Error::Settings(format!(
            "settings cannot be expressed as TOML (None is not a value; leave the key out): {e}"
        ))
    })?;
    toml::to_string(&value)
        .map_err(|e| Error::Settings(format!("settings cannot be expressed as TOML: {e}")))
}

// ---- the module-level default client -------------------------------------------------------

static DEFAULT: ArcSwapOption<Py<Client>> = ArcSwapOption::const_empty();

/// Set when the implicit default configuration (first `evlog.log()`/`stats()` without
/// `configure()`) failed in this process: it is tried once, its error logged once.
static IMPLICIT_FAILED: AtomicBool = AtomicBool::new(false);
/// Events `evlog.log()` dropped because no configuration works (`reason="not_configured"`).
static NOT_CONFIGURED: AtomicU64 = AtomicU64::new(0);
/// The `reason` label of [`NOT_CONFIGURED`] in `evlog.stats()`.
const NOT_CONFIGURED_KEY: &str = "evlog_events_dropped_total{reason=\"not_configured\"}";

fn default_client(py: Python<'_>) -> PyResult<Bound<'_, Client>> {
    if let Some(c) = DEFAULT.load().as_ref() {
        return Ok(c.bind(py).clone());
    }
    default_client_slow(py)
}

#[cold]
fn default_client_slow(py: Python<'_>) -> PyResult<Bound<'_, Client>> {
    // First use without evlog.configure(): EVLOG_CONFIG / EVLOG_* / defaults.
    let client = Py::new(py, Client::build(None, None, None)?)?;
    let prev = DEFAULT.compare_and_swap(
        &None::<std::sync::Arc<Py<Client>>>,
        Some(std::sync::Arc::new(client)),
    );
    drop(prev);
    let c = DEFAULT.load();
    Ok(c.as_ref().expect("just set").bind(py).clone())
}

/// The default client for `evlog.log()` and `evlog.stats()`, or None when `configure()` was not
/// called and the implicit configuration does not work. Like Python's `logging`, a deployment
/// mistake must not raise out of a logging call in the middle of a request, but it must be
/// loud: the first failure is logged (ERROR, logger `evlog`; Python prints it to stderr when
/// logging is not set up) with the error naming the key, the path and the fix, and is not
/// tried again in this process (each try reads the disk); `configure()` still can.
#[cold]
fn implicit_default(py: Python<'_>) -> Option<Bound<'_, Client>> {
    if IMPLICIT_FAILED.load(Ordering::Acquire) {
        return DEFAULT.load().as_ref().map(|c| c.bind(py).clone());
    }
    match default_client(py) {
        Ok(c) => Some(c),
        Err(e) => {
            if !IMPLICIT_FAILED.swap(true, Ordering::AcqRel) {
                let msg = format!(
                    "evlog.configure() was not called and the default configuration \
                     (EVLOG_CONFIG, EVLOG_* variables, built-in defaults) does not work: {}: {}. \
                     Until evlog.configure() succeeds, evlog.log() returns False and counts each \
                     event in evlog.stats() as {NOT_CONFIGURED_KEY}",
                    e.get_type(py)
                        .name()
                        .map_or_else(|_| "ConfigError".into(), |n| n.to_string()),
                    e.value(py)
                );
                let logged = py
                    .import("logging")
                    .and_then(|m| m.call_method1("getLogger", ("evlog",)))
                    .and_then(|l| l.call_method1("error", ("%s", msg.as_str())));
                if logged.is_err() {
                    // Logging itself is broken (e.g. at interpreter exit): stderr still works.
                    eprintln!("evlog: {msg}");
                }
            }
            None
        }
    }
}

/// `evlog.log(namespace, type, event, *, time=None, id=None) -> bool` on the default client.
#[pyfunction]
#[pyo3(signature = (namespace, r#type, event, *, time=None, id=None))]
pub fn log(
    py: Python<'_>,
    namespace: &Bound<'_, PyAny>,
    r#type: &Bound<'_, PyAny>,
    event: &Bound<'_, PyAny>,
    time: Option<&Bound<'_, PyAny>>,
    id: Option<&Bound<'_, PyAny>>,
) -> PyResult<bool> {
    let guard = DEFAULT.load();
    match guard.as_ref() {
        Some(c) => Client::log_impl(c.bind(py), namespace, r#type, event, time, id),
        None => {
            drop(guard);
            match implicit_default(py) {
                Some(c) => Client::log_impl(&c, namespace, r#type, event, time, id),
                None => {
                    NOT_CONFIGURED.fetch_add(1, Ordering::Relaxed);
                    Ok(false)
                }
            }
        }
    }
}

/// [`NOT_CONFIGURED`] as of the previous `evlog.flush()`/`shutdown()` answer.
static NOT_CONFIGURED_ANSWERED: AtomicU64 = AtomicU64::new(0);

/// Whether no event was dropped as `not_configured` since the previous flush/shutdown answer:
/// like any drop, such a drop makes the next answer False.
fn none_dropped_unconfigured() -> bool {
    let n = NOT_CONFIGURED.load(Ordering::Relaxed);
    NOT_CONFIGURED_ANSWERED.swap(n, Ordering::Relaxed) == n
}

/// `evlog.flush(timeout=5.0) -> bool` on the default client; False too when `evlog.log()`
/// dropped events for want of a working configuration since the previous answer.
#[pyfunction]
#[pyo3(signature = (timeout=DEFAULT_TIMEOUT))]
pub fn flush(py: Python<'_>, timeout: f64) -> PyResult<bool> {
    let delivered = match DEFAULT.load_full() {
        Some(c) => c.get().flush_impl(py, timeout),
        None => true,
    };
    Ok(none_dropped_unconfigured() && delivered)
}

/// `evlog.shutdown(timeout=5.0) -> bool` on the default client (False as for `flush()`).
#[pyfunction]
#[pyo3(signature = (timeout=DEFAULT_TIMEOUT))]
pub fn shutdown(py: Python<'_>, timeout: f64) -> PyResult<bool> {
    let delivered = match DEFAULT.load_full() {
        Some(c) => c.get().shutdown_impl(py, timeout),
        None => true,
    };
    Ok(none_dropped_unconfigured() && delivered)
}

/// `evlog.stats() -> dict` of the default client, plus the events `evlog.log()` dropped
/// because no configuration worked (`dropped{reason="not_configured"}`, also counted in
/// `accepted`, so the counters still add up). Without a working configuration, every counter
/// is 0 but those.
#[pyfunction]
pub fn stats(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = match DEFAULT.load_full() {
        Some(c) => c.get().stats_impl(py)?,
        None => match implicit_default(py) {
            Some(c) => c.get().stats_impl(py)?,
            None => {
                let d = PyDict::new(py);
                for (name, value) in evlog_core::counters::Counters::new().snapshot(0).to_flat() {
                    d.set_item(name, value as u64)?;
                }
                d.set_item("evlog_on_error_missed_total", 0u64)?;
                d
            }
        },
    };
    let n = NOT_CONFIGURED.load(Ordering::Relaxed);
    let accepted: u64 = d
        .get_item(evlog_core::counters::names::ACCEPTED)?
        .map_or(Ok(0), |v| v.extract())?;
    d.set_item(evlog_core::counters::names::ACCEPTED, accepted + n)?;
    d.set_item(NOT_CONFIGURED_KEY, n)?;
    Ok(d)
}

/// The default client, created from the environment on first use.
#[pyfunction]
pub fn get_client(py: Python<'_>) -> PyResult<Bound<'_, Client>> {
    default_client(py)
}

/// Installs `client` as the default and returns the previous one (or None).
#[pyfunction]
pub fn swap_client(py: Python<'_>, client: Py<Client>) -> Option<Py<Client>> {
    DEFAULT
        .swap(Some(std::sync::Arc::new(client)))
        .map(|old| old.clone_ref(py))
}
