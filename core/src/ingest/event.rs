//! The event types: [`EventInput`], what a caller hands over, and [`RawEvent`], the event as it
//! waits to be processed (in the pipeline's queue, in the spool, in a collector request).

use std::borrow::Cow;

use compact_str::CompactString;

use crate::ids;

/// One event as `log()` takes it, and as [`RawEvent::new`] builds an event from. Bindings build
/// `event_json` directly from native values.
#[derive(Debug, Clone)]
pub struct EventInput<'a> {
    /// Dataset-level name.
    pub namespace: &'a str,
    /// Table-level name.
    pub type_name: &'a str,
    /// The event's fields as JSON object text.
    pub event_json: Cow<'a, str>,
    /// Event time in µs since the epoch; default: now.
    pub time: Option<i64>,
    /// Event id (insertId); default: a new UUIDv7.
    pub id: Option<&'a str>,
}

impl<'a> EventInput<'a> {
    /// An event with default time and id.
    pub fn new(
        namespace: &'a str,
        type_name: &'a str,
        event_json: impl Into<Cow<'a, str>>,
    ) -> Self {
        Self {
            namespace,
            type_name,
            event_json: event_json.into(),
            time: None,
            id: None,
        }
    }
}

/// An event taken and not yet processed: its envelope checked, its receive time and id stamped,
/// its body not parsed. [`Processor::process`](super::Processor::process) turns it into a row
/// or a rejection.
#[derive(Debug)]
pub struct RawEvent {
    /// Envelope namespace (checked).
    pub(crate) namespace: CompactString,
    /// Envelope type (checked).
    pub(crate) type_name: CompactString,
    /// Event time (µs) if the caller gave one.
    pub(crate) time: Option<i64>,
    /// When it was received (µs); `received_at`, and `event_time` by default.
    pub(crate) received_at: i64,
    /// The event id.
    pub(crate) id: EventId,
    /// The event's JSON object text, not yet parsed. In the pipeline its buffer returns to the
    /// pool afterwards.
    pub(crate) body: String,
}

impl RawEvent {
    /// A test's event number `i` in `events`/`t`: received at `i` µs, generated id `i`.
    #[cfg(test)]
    pub(crate) fn numbered(i: usize, body: String) -> Self {
        Self {
            namespace: "events".into(),
            type_name: "t".into(),
            time: None,
            received_at: i as i64,
            id: EventId::Generated(i as u128),
            body,
        }
    }

    /// The event `input`, received at `received_at` (µs since the epoch). The caller has checked
    /// the envelope (`crate::envelope`'s rules); without an id it gets a new UUIDv7 of
    /// `received_at`. An owned body is moved, not copied.
    pub fn new(input: EventInput<'_>, received_at: i64) -> Self {
        Self {
            namespace: input.namespace.into(),
            type_name: input.type_name.into(),
            time: input.time,
            received_at,
            id: EventId::given_or_new(input.id, received_at),
            body: input.event_json.into_owned(),
        }
    }

    /// Makes this the event `input` (as [`RawEvent::new`]), reusing the body's buffer: a caller
    /// that processes many events one after the other keeps one `RawEvent`.
    pub fn refill(&mut self, input: &EventInput<'_>, received_at: i64) {
        self.namespace = input.namespace.into();
        self.type_name = input.type_name.into();
        self.time = input.time;
        self.received_at = received_at;
        self.id = EventId::given_or_new(input.id, received_at);
        self.body.clear();
        self.body.push_str(&input.event_json);
    }

    /// Envelope namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Envelope type.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The event's JSON object text, as received.
    pub fn body(&self) -> &str {
        &self.body
    }
}

/// An event id: generated when the event was taken (formatted later, off the hot path) or given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EventId {
    /// A UUIDv7.
    Generated(u128),
    /// The caller's id.
    Given(CompactString),
}

impl EventId {
    /// The caller's (checked) id, or a new UUIDv7 of `received_at`.
    #[inline]
    pub(crate) fn given_or_new(given: Option<&str>, received_at: i64) -> Self {
        match given {
            Some(id) => EventId::Given(id.into()),
            None => EventId::Generated(ids::uuid_v7(received_at)),
        }
    }

    /// The id as text.
    pub(crate) fn to_text(&self) -> String {
        match self {
            EventId::Generated(u) => ids::format_uuid(*u),
            EventId::Given(s) => s.to_string(),
        }
    }

    /// Appends the id as a JSON string.
    pub(crate) fn push_json(&self, out: &mut String) {
        match self {
            EventId::Generated(u) => ids::push_uuid_json(out, *u),
            EventId::Given(s) => crate::json::push_str(out, s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_and_refilled_events_keep_what_was_given() {
        let mut input = EventInput::new("events", "t", r#"{"a":1}"#);
        input.id = Some("id-1");
        input.time = Some(5);
        let mut e = RawEvent::new(input, 6);
        assert_eq!(
            (e.namespace(), e.type_name(), e.body()),
            ("events", "t", r#"{"a":1}"#)
        );
        assert_eq!(
            (e.time, e.received_at, e.id.to_text()),
            (Some(5), 6, "id-1".into())
        );

        e.refill(&EventInput::new("other", "u", "{}"), 1_763_800_000_000_000);
        assert_eq!(
            (e.namespace(), e.type_name(), e.body()),
            ("other", "u", "{}")
        );
        assert_eq!(e.time, None);
        // No id given: a UUIDv7 of the receive time.
        let EventId::Generated(u) = e.id else {
            panic!("a generated id expected")
        };
        assert_eq!((u >> 80) as i64, 1_763_800_000_000_000 / 1000);
    }
}
