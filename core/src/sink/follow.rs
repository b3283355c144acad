//! What a sink derives from the schemas in use (the BigQuery sink's table catalog, the
//! OpenSearch sink's templates and document shapes), kept in step with the
//! [`LiveProcessor`]: a sink asks [`Follow::changed`] at the start of each delivery, and
//! rebuilds what it derived when the processor was replaced since (a reload stored a new one).
//! Asking costs one atomic load and a pointer comparison.

use std::sync::Arc;

use crate::ingest::{LiveProcessor, Processor};

/// The processor a sink last derived its state from, and where to look for a newer one.
#[derive(Default)]
pub(crate) struct Follow {
    live: Option<LiveProcessor>,
    /// Held (not just its address) so that a freed processor's address, reused by a new one,
    /// cannot pass for it.
    seen: Option<Arc<Processor>>,
}

impl std::fmt::Debug for Follow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follow")
            .field("live", &self.live.is_some())
            .finish()
    }
}

impl Follow {
    /// Follows `live`; the processor in it now counts as seen, and is returned to derive from.
    pub(crate) fn new(live: &LiveProcessor) -> (Self, Arc<Processor>) {
        let now = live.load_full();
        let follow = Self {
            live: Some(Arc::clone(live)),
            seen: Some(Arc::clone(&now)),
        };
        (follow, now)
    }

    /// Follows nothing: [`Follow::changed`] is always `None` (a sink built with a fixed catalog).
    pub(crate) fn fixed() -> Self {
        Self::default()
    }

    /// The processor in use when it is not the one seen last (which it then becomes).
    pub(crate) fn changed(&mut self) -> Option<Arc<Processor>> {
        let live = self.live.as_ref()?;
        let now = live.load();
        if self.seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &now)) {
            return None;
        }
        let now = arc_swap::Guard::into_inner(now);
        self.seen = Some(Arc::clone(&now));
        Some(now)
    }
}
