//! Rows into batches: one open batch per destination, closed when it reaches its row or byte
//! limit (no batch goes over `max_bytes` unless a single row does), or when the caller closes it
//! (its age, a flush, the end of what it read).

use std::time::Instant;

use foldhash::{HashMap, HashMapExt};

use crate::routing::Destination;
use crate::sink::{Batch, EncodedRow};

/// Groups rows per destination into [`Batch`]es of at most `max_rows` rows and `max_bytes`
/// bytes of row JSON. Closed batches wait in [`Batcher::take_ready`].
#[derive(Debug)]
pub struct Batcher {
    max_rows: usize,
    max_bytes: usize,
    open: HashMap<Destination, Open>,
    ready: Vec<Batch>,
    /// What a batch opened from now on counts its age from (`None`: the moment it opens).
    arrivals_from: Option<Instant>,
}

/// A batch still taking rows.
#[derive(Debug)]
struct Open {
    rows: Vec<EncodedRow>,
    bytes: usize,
    /// When its first row came, or earlier when the caller gave a lower bound
    /// ([`Batcher::set_arrivals_from`]).
    since: Instant,
}

impl Open {
    fn new(since: Option<Instant>) -> Self {
        Self {
            rows: Vec::new(),
            bytes: 0,
            since: since.unwrap_or_else(Instant::now),
        }
    }

    fn into_batch(self, destination: Destination) -> Batch {
        Batch {
            destination,
            rows: self.rows,
            bytes: self.bytes,
        }
    }
}

impl Batcher {
    /// Batches of at most `max_rows` rows and `max_bytes` bytes.
    pub fn new(max_rows: usize, max_bytes: usize) -> Self {
        Self {
            max_rows,
            max_bytes,
            open: HashMap::new(),
            ready: Vec::new(),
            arrivals_from: None,
        }
    }

    /// Rows added from now on came no earlier than `from`: a batch they open counts its age
    /// from then instead of from the moment it opens (a caller that takes rows some time after
    /// they came, so that `max_age` still bounds how long a row waits).
    pub fn set_arrivals_from(&mut self, from: Instant) {
        self.arrivals_from = Some(from);
    }

    /// Adds a row for `dest`; closes the destination's batch first if the row would take it over
    /// `max_bytes`, and after if it is then full.
    pub fn add(&mut self, dest: &Destination, row: EncodedRow) {
        self.extend(dest, std::iter::once(row));
    }

    /// Adds rows for `dest`, in order, as [`Batcher::add`] does one by one (the destination is
    /// looked up once).
    pub fn extend(&mut self, dest: &Destination, rows: impl IntoIterator<Item = EncodedRow>) {
        let mut rows = rows.into_iter().peekable();
        if rows.peek().is_none() {
            return;
        }
        let since = self.arrivals_from;
        let open = self
            .open
            .entry(dest.clone())
            .or_insert_with(|| Open::new(since));
        for row in rows {
            let len = row.json.len();
            if !open.rows.is_empty() && open.bytes + len > self.max_bytes {
                // Keep every request under the byte limit: ship what is there first.
                let full = std::mem::replace(open, Open::new(since));
                self.ready.push(full.into_batch(dest.clone()));
            }
            open.rows.push(row);
            open.bytes += len;
            if open.rows.len() >= self.max_rows || open.bytes >= self.max_bytes {
                let full = std::mem::replace(open, Open::new(since));
                self.ready.push(full.into_batch(dest.clone()));
            }
        }
        if open.rows.is_empty() {
            // Closed at its last row: the next row opens a new batch (and starts its age).
            self.open.remove(dest);
        }
    }

    /// Closes the batches whose first row came `max_age` or longer before `now`.
    pub fn close_aged(&mut self, now: Instant, max_age: std::time::Duration) {
        let aged: Vec<Destination> = self
            .open
            .iter()
            .filter(|(_, o)| now.duration_since(o.since) >= max_age)
            .map(|(d, _)| d.clone())
            .collect();
        for dest in aged {
            self.close(dest);
        }
    }

    /// Closes every open batch.
    pub fn close_all(&mut self) {
        let ready = &mut self.ready;
        ready.extend(self.open.drain().map(|(dest, o)| o.into_batch(dest)));
    }

    /// When the oldest open batch got its first row.
    pub fn oldest(&self) -> Option<Instant> {
        self.open.values().map(|o| o.since).min()
    }

    /// The closed batches, in the order they closed.
    pub fn take_ready(&mut self) -> Vec<Batch> {
        std::mem::take(&mut self.ready)
    }

    /// Whether closed batches wait.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    fn close(&mut self, dest: Destination) {
        if let Some(o) = self.open.remove(&dest) {
            self.ready.push(o.into_batch(dest));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::routing::PartitionKind;

    fn dest(t: &str) -> Destination {
        Destination {
            dataset: "events".into(),
            table: t.into(),
            partitioning: PartitionKind::Partitioned,
            day: "20261122".into(),
        }
    }

    fn row(json: &str) -> EncodedRow {
        EncodedRow {
            insert_id: "id".into(),
            json: json.into(),
        }
    }

    fn shape(batches: &[Batch]) -> Vec<(String, usize, usize)> {
        batches
            .iter()
            .map(|b| (b.destination.table.to_string(), b.rows.len(), b.bytes))
            .collect()
    }

    #[test]
    fn batches_close_at_their_row_and_byte_limits() {
        let mut b = Batcher::new(3, 10);
        for _ in 0..4 {
            b.add(&dest("a"), row("{}"));
        }
        assert_eq!(shape(&b.take_ready()), vec![("a".into(), 3, 6)]);
        // 2 bytes open in "a": 9 more would make 11 > 10, so "a" closes first.
        b.add(&dest("a"), row(r#"{"k":123}"#));
        assert_eq!(shape(&b.take_ready()), vec![("a".into(), 1, 2)]);
        // A row of exactly the limit closes its batch at once.
        b.add(&dest("b"), row(r#"{"k":1234}"#));
        assert_eq!(shape(&b.take_ready()), vec![("b".into(), 1, 10)]);
        assert!(!b.has_ready());
        let mut rest = {
            b.close_all();
            b.take_ready()
        };
        rest.sort_by(|x, y| x.destination.table.cmp(&y.destination.table));
        assert_eq!(shape(&rest), vec![("a".into(), 1, 9)]);
        assert_eq!(b.oldest(), None);
    }

    #[test]
    fn rows_added_together_batch_as_one_by_one() {
        let rows = || (0..7).map(|_| row("{}"));
        let mut together = Batcher::new(3, 1000);
        together.extend(&dest("a"), rows());
        let mut one_by_one = Batcher::new(3, 1000);
        for r in rows() {
            one_by_one.add(&dest("a"), r);
        }
        for b in [&mut together, &mut one_by_one] {
            assert_eq!(shape(&b.take_ready()), vec![("a".into(), 3, 6); 2]);
            b.close_all();
            assert_eq!(shape(&b.take_ready()), vec![("a".into(), 1, 2)]);
        }
        // A batch closed at its last row leaves nothing open.
        together.extend(&dest("a"), (0..3).map(|_| row("{}")));
        assert_eq!(together.oldest(), None);
        assert_eq!(together.take_ready().len(), 1);
    }

    #[test]
    fn aged_batches_close() {
        let mut b = Batcher::new(100, 1000);
        b.add(&dest("a"), row("{}"));
        let since = b.oldest().expect("open");
        b.close_aged(since + Duration::from_millis(5), Duration::from_millis(10));
        assert!(!b.has_ready());
        b.close_aged(since + Duration::from_millis(10), Duration::from_millis(10));
        assert_eq!(shape(&b.take_ready()), vec![("a".into(), 1, 2)]);
    }
}
