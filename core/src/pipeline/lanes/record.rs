//! A lane's records: how an event is laid out in a lane's byte ring.
//!
//! Every record is a little-endian `u32`, the length of what follows it, then a flags byte, then:
//! - [`NEXT`]: a target byte (0 a kept ring by index, 1 a new kept ring, 2 a one-shot ring) and
//!   a `u32` index: the producer went on writing in that ring (see `lanes`);
//! - [`OWN_BUFFER`]: nothing more; the event, its body in a buffer of its own, is the next one
//!   in the lane's queue of such events;
//! - otherwise an event: if [`NAMES`], the namespace and then the type, each a `u16` length
//!   and its bytes, which are the lane's names from then on (a record without them has the
//!   last ones sent); `received_at` (`i64`, µs); if [`TIME`], the caller's event time (`i64`,
//!   µs); if [`GIVEN_ID`], the caller's id, a `u8` length and its bytes (without it the
//!   consumer makes the event's UUIDv7 from `received_at` as it reads the record, off the
//!   caller's path); then the body's bytes to the end of the record.
//!
//! A record is committed to its ring whole (one release store), so a reader sees all of it or
//! none. A ring is a byte ring, so a record may be cut at the ring's end: writing and reading
//! go through the two slices the ring hands out.

use compact_str::CompactString;

/// Bytes of a record's length prefix.
pub(super) const LEN_BYTES: usize = 4;
/// The record names the lane's namespace and type.
pub(super) const NAMES: u8 = 1;
/// The record carries the caller's event time.
pub(super) const TIME: u8 = 2;
/// The record carries the caller's id.
pub(super) const GIVEN_ID: u8 = 4;
/// The event is in the lane's queue of events with bodies in buffers of their own.
pub(super) const OWN_BUFFER: u8 = 8;
/// A marker: the producer went on in another ring.
pub(super) const NEXT: u8 = 16;
/// Bytes of a marker record. Every other record leaves this much room behind it, so a marker
/// always fits.
pub(super) const MARKER_BYTES: usize = LEN_BYTES + 1 + 1 + 4;
/// The record for an event in the lane's queue of events with bodies of their own.
pub(super) const OWN_BUFFER_RECORD: [u8; LEN_BYTES + 1] = [1, 0, 0, 0, OWN_BUFFER];

/// Where the producer went on writing after a full ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// A kept ring both sides already hold (by index; it was empty, so the consumer is not on it).
    Kept(usize),
    /// A new kept ring, appended on both sides; its consumer end is next in `new_rings`.
    NewKept,
    /// A one-shot ring; its consumer end is next in `new_rings`.
    OneShot,
}

/// The marker record naming `target`.
pub(super) fn marker(target: Target) -> [u8; MARKER_BYTES] {
    let (kind, index) = match target {
        Target::Kept(i) => (0, i as u32),
        Target::NewKept => (1, 0),
        Target::OneShot => (2, 0),
    };
    let mut m = [0; MARKER_BYTES];
    m[..LEN_BYTES].copy_from_slice(&((MARKER_BYTES - LEN_BYTES) as u32).to_le_bytes());
    m[LEN_BYTES] = NEXT;
    m[LEN_BYTES + 1] = kind;
    m[LEN_BYTES + 2..].copy_from_slice(&index.to_le_bytes());
    m
}

/// An event as the producer writes it.
pub(super) struct EventRecord<'a> {
    /// The lane's names, when they changed since the last record that carried them.
    pub(super) names: Option<(&'a str, &'a str)>,
    pub(super) time: Option<i64>,
    pub(super) received_at: i64,
    /// The caller's id (checked: at most 128 bytes).
    pub(super) id: Option<&'a str>,
    pub(super) body: &'a [u8],
}

impl EventRecord<'_> {
    /// Bytes of the whole record, its length prefix included.
    #[inline]
    pub(super) fn size(&self) -> usize {
        let names = self.names.map_or(0, |(ns, ty)| 4 + ns.len() + ty.len());
        let time = if self.time.is_some() { 8 } else { 0 };
        let id = self.id.map_or(0, |id| 1 + id.len());
        LEN_BYTES + 1 + names + 8 + time + id + self.body.len()
    }

    /// Writes the record (of [`Self::size`] bytes) into `first` and then `second`.
    #[inline]
    pub(super) fn write(&self, first: &mut [u8], second: &mut [u8]) {
        let mut out = Out {
            first,
            second,
            at: 0,
        };
        let flags = self.names.map_or(0, |_| NAMES)
            | self.time.map_or(0, |_| TIME)
            | self.id.map_or(0, |_| GIVEN_ID);
        // The fixed part in one piece: length, flags, received_at and the time if any.
        let mut head = [0u8; LEN_BYTES + 1 + 8 + 8];
        head[..LEN_BYTES].copy_from_slice(&((self.size() - LEN_BYTES) as u32).to_le_bytes());
        head[LEN_BYTES] = flags;
        let mut n = LEN_BYTES + 1;
        if let Some((ns, ty)) = self.names {
            out.put(&head[..n]);
            out.put(&(ns.len() as u16).to_le_bytes());
            out.put(ns.as_bytes());
            out.put(&(ty.len() as u16).to_le_bytes());
            out.put(ty.as_bytes());
            n = 0;
        }
        head[n..n + 8].copy_from_slice(&self.received_at.to_le_bytes());
        n += 8;
        if let Some(t) = self.time {
            head[n..n + 8].copy_from_slice(&t.to_le_bytes());
            n += 8;
        }
        out.put(&head[..n]);
        if let Some(id) = self.id {
            out.put(&[id.len() as u8]);
            out.put(id.as_bytes());
        }
        out.put(self.body);
    }
}

/// Sequential writes into a ring's two slices.
struct Out<'a> {
    first: &'a mut [u8],
    second: &'a mut [u8],
    at: usize,
}

impl Out<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        let split = self.first.len().saturating_sub(self.at).min(bytes.len());
        if split > 0 {
            self.first[self.at..self.at + split].copy_from_slice(&bytes[..split]);
        }
        if split < bytes.len() {
            let from = self.at + split - self.first.len();
            self.second[from..from + bytes.len() - split].copy_from_slice(&bytes[split..]);
        }
        self.at += bytes.len();
    }
}

/// A record as the consumer reads it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Record {
    Next(Target),
    OwnBuffer,
    Event {
        names: Option<(CompactString, CompactString)>,
        time: Option<i64>,
        received_at: i64,
        id: Option<CompactString>,
        /// Where the body starts, from the record's first byte.
        body_at: usize,
    },
}

/// The length prefix of the record starting in `first` (then `second`): the bytes that follow it.
#[inline]
pub(super) fn len(first: &[u8], second: &[u8]) -> usize {
    let mut r = In {
        first,
        second,
        at: 0,
    };
    u32::from_le_bytes(r.array()) as usize
}

/// Reads the whole record in `first` then `second` (its length prefix included), up to its body.
#[inline]
pub(super) fn read(first: &[u8], second: &[u8]) -> Record {
    let mut r = In {
        first,
        second,
        at: LEN_BYTES,
    };
    let [flags] = r.array();
    if flags & NEXT != 0 {
        let [kind] = r.array();
        let index = u32::from_le_bytes(r.array()) as usize;
        return Record::Next(match kind {
            0 => Target::Kept(index),
            1 => Target::NewKept,
            _ => Target::OneShot,
        });
    }
    if flags & OWN_BUFFER != 0 {
        return Record::OwnBuffer;
    }
    let names = (flags & NAMES != 0).then(|| {
        let n = u16::from_le_bytes(r.array()).into();
        let ns = r.text(n);
        let n = u16::from_le_bytes(r.array()).into();
        let ty = r.text(n);
        (ns, ty)
    });
    let received_at = i64::from_le_bytes(r.array());
    let time = (flags & TIME != 0).then(|| i64::from_le_bytes(r.array()));
    let id = (flags & GIVEN_ID != 0).then(|| {
        let [n] = r.array();
        r.text(n.into())
    });
    Record::Event {
        names,
        time,
        received_at,
        id,
        body_at: r.at,
    }
}

/// The bytes from `at` to the end, of `first` then `second`.
#[inline]
pub(super) fn tail<'a>(first: &'a [u8], second: &'a [u8], at: usize) -> (&'a [u8], &'a [u8]) {
    if at <= first.len() {
        (&first[at..], second)
    } else {
        (&[], &second[at - first.len()..])
    }
}

/// Sequential reads from a ring's two slices.
struct In<'a> {
    first: &'a [u8],
    second: &'a [u8],
    at: usize,
}

impl In<'_> {
    #[inline]
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0; N];
        let (x, y) = tail(self.first, self.second, self.at);
        let split = x.len().min(N);
        a[..split].copy_from_slice(&x[..split]);
        a[split..].copy_from_slice(&y[..N - split]);
        self.at += N;
        a
    }

    /// `n` bytes as text (names and ids were checked `str`s when written).
    fn text(&mut self, n: usize) -> CompactString {
        let (x, y) = tail(self.first, self.second, self.at);
        let split = x.len().min(n);
        let mut bytes = Vec::with_capacity(n);
        bytes.extend_from_slice(&x[..split]);
        bytes.extend_from_slice(&y[..n - split]);
        self.at += n;
        CompactString::from_utf8_lossy(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `rec` into a ring of `cap` bytes starting at `start`, and reads it back.
    fn round_trip(rec: &EventRecord<'_>, start: usize, cap: usize) -> (Record, Vec<u8>) {
        let size = rec.size();
        let mut ring = vec![0u8; cap];
        let first_len = size.min(cap - start);
        {
            let (head, tail_part) = ring.split_at_mut(start);
            rec.write(&mut tail_part[..first_len], &mut head[..size - first_len]);
        }
        let (first, second) = (&ring[start..start + first_len], &ring[..size - first_len]);
        assert_eq!(len(first, second), size - LEN_BYTES);
        let read = read(first, second);
        let Record::Event { body_at, .. } = read else {
            panic!("not an event: {read:?}")
        };
        let (a, b) = tail(first, second, body_at);
        (read, [a, b].concat())
    }

    #[test]
    fn every_field_comes_back_wherever_the_ring_cuts_the_record() {
        let recs = [
            EventRecord {
                names: None,
                time: None,
                received_at: 7,
                id: None,
                body: br#"{"a":1}"#,
            },
            EventRecord {
                names: Some(("web", "page_view")),
                time: Some(-3),
                received_at: i64::MAX,
                id: Some("id-é"),
                body: "{\"s\":\"é€\"}".as_bytes(),
            },
            EventRecord {
                names: Some(("n", "t")),
                time: None,
                received_at: 0,
                id: Some(""),
                body: b"",
            },
        ];
        for rec in &recs {
            let size = rec.size();
            let cap = size + 3;
            for start in 0..cap {
                let (read, body) = round_trip(rec, start, cap);
                assert_eq!(
                    read,
                    Record::Event {
                        names: rec.names.map(|(a, b)| (a.into(), b.into())),
                        time: rec.time,
                        received_at: rec.received_at,
                        id: rec.id.map(Into::into),
                        body_at: size - rec.body.len(),
                    },
                    "cut at {start}"
                );
                assert_eq!(body, rec.body, "cut at {start}");
            }
        }
    }

    #[test]
    fn markers_and_own_buffer_records() {
        for t in [
            Target::Kept(0),
            Target::Kept(70_000),
            Target::NewKept,
            Target::OneShot,
        ] {
            let m = marker(t);
            for cut in 0..=m.len() {
                let (a, b) = m.split_at(cut);
                assert_eq!(len(a, b), MARKER_BYTES - LEN_BYTES);
                assert_eq!(read(a, b), Record::Next(t));
            }
        }
        assert_eq!(len(&OWN_BUFFER_RECORD, &[]), 1);
        assert_eq!(read(&OWN_BUFFER_RECORD, &[]), Record::OwnBuffer);
    }
}
