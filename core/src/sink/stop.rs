//! The shutdown deadline a pipeline hands its sinks ([`StopSignal`]).
//!
//! Contract: once [`StopSignal::stop_at`] is called, a sink that watches the signal (the HTTP
//! sinks, through [`crate::sink::http::Attempts`]) makes no further retry (a backoff sleeping
//! at that moment ends at once), and no attempt outlives the deadline: an attempt still running
//! at the deadline (a blackholed host waiting out `connect_timeout`, a slow answer) is abandoned
//! and its rows are reported failed. The pipeline then spools or drops them, counted, before
//! `shutdown()` returns. The signal can be raised while the sink is in the middle of a delivery
//! with a full retry budget: that is what keeps a shutdown from waiting out retries it cannot
//! afford.
//!
//! A sink that does not watch it (file, memory, null, custom sinks) is not interrupted.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// See the module docs. Shared by the pipeline (which raises it) and its sinks (which watch it).
#[derive(Debug, Default)]
pub struct StopSignal {
    stopping: AtomicBool,
    deadline: Mutex<Option<Instant>>,
    /// Wakes a sink's runtime that is waiting (a backoff, an attempt) when the signal is raised.
    notify: tokio::sync::Notify,
}

impl StopSignal {
    /// A signal not raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the signal: no more retries, and nothing runs past `deadline`.
    pub fn stop_at(&self, deadline: Instant) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(deadline);
        self.stopping.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Whether [`StopSignal::stop_at`] was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The deadline, once raised.
    pub fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the deadline has passed.
    pub fn past_deadline(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// Runs `fut` to completion, or until the deadline passes (`None`), including a deadline
    /// set while it runs. Must run inside a tokio runtime with timers.
    pub async fn bound<T>(&self, fut: impl Future<Output = T>) -> Option<T> {
        let mut fut = pin!(fut);
        loop {
            // Registered before the deadline is read, so a `stop_at` in between is not missed.
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            let deadline = self.deadline();
            let expiry = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                out = &mut fut => return Some(out),
                () = expiry => return None,
                () = notified => continue,
            }
        }
    }

    /// Sleeps `time`; false (at once) when the signal is raised before or during the sleep.
    pub async fn sleep(&self, time: Duration) -> bool {
        let mut notified = pin!(self.notify.notified());
        notified.as_mut().enable();
        if self.is_stopping() {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(time) => true,
            () = notified => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_raise_ends_a_sleep_and_bounds_a_running_future() {
        let signal = std::sync::Arc::new(StopSignal::new());
        let s2 = std::sync::Arc::clone(&signal);
        let raiser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            s2.stop_at(Instant::now() + Duration::from_millis(50));
        });
        let rt = rt();
        let started = Instant::now();
        assert!(!rt.block_on(signal.sleep(Duration::from_secs(60))));
        let out = rt.block_on(signal.bound(std::future::pending::<()>()));
        assert_eq!(out, None, "the deadline ends a future that never finishes");
        assert!(started.elapsed() < Duration::from_secs(30));
        raiser.join().unwrap();
        assert!(signal.is_stopping() && signal.past_deadline());
        assert_eq!(rt.block_on(signal.bound(async { 7 })), Some(7));
        assert!(!rt.block_on(signal.sleep(Duration::from_secs(60))));
    }
}
