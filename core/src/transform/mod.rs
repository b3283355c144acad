//! Transforms: declarative changes to an event's fields (`[[transforms]]`), applied per table
//! and, optionally, only to the copy bound for some destinations.
//!
//! ```toml
//! [[transforms]]
//! tables = ["events.*"]               # namespace.type globs (see `glob`)
//! destinations = ["live"]             # optional: only the copy sent there
//! rename = { "uid" = "user_id" }
//! hash = ["user.email"]               # keyed HMAC-SHA256, hex
//! mask = { "card" = 4 }               # keep the last 4 characters
//! drop = ["password", "token"]
//! ```
//!
//! # Contract
//! - [`TransformSet::compile`] checks every entry once (globs, paths, numbers, patterns, the
//!   hash key) and fails with a [`TransformError`] naming the entry, the rule and the path:
//!   `transforms[2].mask."card": expected a non-negative integer`. Entries count from 0.
//! - [`TransformSet::apply`] changes one event (a JSON object) in place and never fails: a rule
//!   that cannot apply at a location leaves the event as it was there and is counted in
//!   [`Applied`] with a [`SkipReason`]; the other rules still run.
//! - Entries apply in file order, each to the tables its `tables` globs name; an entry with
//!   `destinations` applies only to the copy bound for one of them (`apply(…, Some(name), …)`),
//!   one without applies to every copy and to the event before it is split
//!   (`apply(…, None, …)`). Whether the names exist is checked by the caller, which knows the
//!   destinations ([`TransformSet::check_destinations`]).
//! - Within an entry the rules apply in this order, whatever order the file lists them in:
//!   `rename`, `copy`, `set`, `default`, `hash`, `mask`, `truncate`, `redact`, `drop`. So later
//!   rules name renamed fields by their new names, a value can be copied and then hashed, and
//!   `drop` removes what the other rules have read. The paths of one map-shaped rule (`rename`,
//!   `copy`, `set`, …) apply in the sorted order of their text (a TOML table has no order);
//!   list-shaped rules (`hash`, `drop`) in list order. A rename chain inside one entry
//!   (`a` → `b`, `b` → `c`) is refused: put the links in entries of their own.
//!
//! # Rules
//! | rule | acts on | result |
//! |---|---|---|
//! | `rename = { from = "to" }` | any value | moved to `to`, replacing what is there |
//! | `copy = { from = "to" }` | any value | copied to `to`, replacing what is there |
//! | `set = { path = value }` | the place | `value` written, created or replaced |
//! | `default = { path = value }` | an absent place | `value` written; a present value (`null` included) stays |
//! | `hash = [path]` | string, number | 64 hex digits of HMAC-SHA256 of the string's UTF-8 (of a number's JSON text: `17` and `"17"` hash alike) |
//! | `mask = { path = N }` | string, number | the last N characters kept, each other one `*` (`"****1111"`); N or fewer characters stay |
//! | `truncate = { path = N }` | string | the first N characters (N ≥ 1) |
//! | `redact = { path = [patterns] }` | string | `email`, `ipv4`, `ipv6`, `card` matches replaced with `[email]`… (see `redact`) |
//! | `drop = [path]` | any value | removed; `items[2]` shifts later elements, `items[]` empties the array |
//!
//! Characters are Unicode scalar values. `null` is left alone by the string rules (nothing to
//! hide). `rename` and `copy` act inside each element when both paths go through the same `[]`
//! (`"items[].qty" = "items[].quantity"`); a rename's source ends with a key.
//!
//! # Paths
//! `user.email` walks nested objects; `items[].sku` is `sku` in every element of the array
//! `items`, `items[0].sku` in its first element only; indexes repeat (`grid[0][]`). A key that
//! holds `.`, `[`, `]`, `"` or `\` is written in double quotes, with `\"` and `\\` inside:
//! `'"a.b".c'` in TOML (a literal string, so the quotes need no escaping) is the key `c` inside
//! the key `a.b`. Writing (`set`, `default`, the target of `rename`/`copy`) creates missing
//! objects on the way, never arrays or elements.
//!
//! # Counts
//! [`Applied`] counts per location (`items[].sku` on three elements is three): `applied` where a
//! rule found what it acts on (a `truncate` of a short string counts; a `default` over a present
//! value does not), and skips where it could not apply.
//!
//! # Cannot apply
//! Never failing the event, the event unchanged there:
//! `not_an_object` (a key step, or the place to write, is under something that is not an
//! object), `not_an_array` (`[…]` on something that is not an array), `not_a_string` (a string
//! rule on a bool, object or array; `truncate`/`redact` on a number), `index_out_of_range` (a
//! write through `[N]` past the end of an array, or through a missing array). An absent path is
//! not a failure: there is nothing to act on, and it is not counted at all.
//!
//! # The hash key
//! From `hash_key` in the entry, else the environment variable named by `hash_key_env` (default
//! `EVLOG_TRANSFORM_KEY`), read once at compile time; at least 16 bytes. It is never printed:
//! [`HashKey`]'s `Debug` and serialization are `<redacted>`, errors name where the key should
//! be, never the key, and only the keyed HMAC state is kept.
//!
//! Files: `config.rs` (the entry as written), `compile.rs` (checks, errors), `glob.rs` (table
//! globs), `path.rs` (path syntax and walks), `rules.rs` (what each rule does), `hash.rs`,
//! `redact.rs` (the scanners).

mod compile;
mod config;
pub mod glob;
mod hash;
mod path;
mod redact;
mod rules;

use serde_json::{Map, Value};

use self::compile::Entry;
pub use self::compile::{TransformError, MIN_KEY_BYTES};
pub use self::config::{HashKey, TransformConfig, DEFAULT_KEY_ENV};

/// Why a rule could not apply at a location (the label is for counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// A key step met something that is not an object.
    NotAnObject,
    /// An index step met something that is not an array.
    NotAnArray,
    /// A string rule met a value it does not rewrite.
    NotAString,
    /// A write through an array element that does not exist.
    IndexOutOfRange,
}

impl SkipReason {
    /// Every reason, in the order of [`Applied`]'s counts.
    pub const ALL: [SkipReason; 4] = [
        SkipReason::NotAnObject,
        SkipReason::NotAnArray,
        SkipReason::NotAString,
        SkipReason::IndexOutOfRange,
    ];

    /// The counter label: `not_an_object`, `not_an_array`, `not_a_string`,
    /// `index_out_of_range`.
    pub fn label(self) -> &'static str {
        match self {
            SkipReason::NotAnObject => "not_an_object",
            SkipReason::NotAnArray => "not_an_array",
            SkipReason::NotAString => "not_a_string",
            SkipReason::IndexOutOfRange => "index_out_of_range",
        }
    }
}

/// What [`TransformSet::apply`] did to one event, counted per location (`items[].sku` on three
/// elements counts three). Sums with `+=`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Locations where a rule acted.
    pub applied: u32,
    /// Locations where a rule could not apply, by [`SkipReason`] (indexed as
    /// [`SkipReason::ALL`]).
    skipped: [u32; SkipReason::ALL.len()],
}

impl Applied {
    /// Locations where a rule could not apply, all reasons together.
    pub fn skipped(&self) -> u32 {
        self.skipped.iter().sum()
    }

    /// Locations where a rule could not apply for `reason`.
    pub fn skipped_for(&self, reason: SkipReason) -> u32 {
        self.skipped[reason as usize]
    }

    /// The reasons with a non-zero count.
    pub fn skip_reasons(&self) -> impl Iterator<Item = (SkipReason, u32)> + '_ {
        SkipReason::ALL
            .iter()
            .map(|&r| (r, self.skipped[r as usize]))
            .filter(|&(_, n)| n > 0)
    }

    fn skip(&mut self, reason: SkipReason) {
        self.skipped[reason as usize] += 1;
    }
}

impl std::ops::AddAssign for Applied {
    fn add_assign(&mut self, other: Applied) {
        self.applied += other.applied;
        for (a, b) in self.skipped.iter_mut().zip(other.skipped) {
            *a += b;
        }
    }
}

/// The compiled `[[transforms]]`: what [`apply`](TransformSet::apply) runs per event.
#[derive(Debug, Default)]
pub struct TransformSet {
    entries: Box<[Entry]>,
}

impl TransformSet {
    /// Checks and compiles the entries; `env` reads environment variables (the hash keys).
    pub fn compile(
        entries: &[TransformConfig],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<TransformSet, TransformError> {
        Ok(TransformSet {
            entries: compile::compile(entries, &env)?.into(),
        })
    }

    /// [`compile`](TransformSet::compile) with the process environment: the one call the
    /// pipeline and the collector make at start.
    pub fn from_config(entries: &[TransformConfig]) -> Result<TransformSet, TransformError> {
        Self::compile(entries, |var| std::env::var(var).ok())
    }

    /// Whether there is nothing to apply (no entries).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Fails on the first destination name for which `known` is false, naming it
    /// (`transforms[1].destinations[0]: unknown destination "live"`).
    pub fn check_destinations(&self, known: impl Fn(&str) -> bool) -> Result<(), TransformError> {
        for (i, entry) in self.entries.iter().enumerate() {
            for (j, name) in entry.destinations.iter().flatten().enumerate() {
                if !known(name) {
                    return Err(TransformError {
                        key: format!("transforms[{i}].destinations[{j}]"),
                        rule: format!("unknown destination {name:?}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Whether some entry may apply to the copies bound for `destination` (it has no
    /// `destinations`, or names it), whatever their table.
    pub fn touches(&self, destination: &str) -> bool {
        self.entries.iter().any(|e| e.names_copy(Some(destination)))
    }

    /// Whether some entry for this table applies only to some destinations: if not, every
    /// copy of its events is transformed alike and one `apply(…, None, …)` serves them all.
    pub fn varies_by_destination(&self, namespace: &str, type_name: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.destinations.is_some() && e.names_table(namespace, type_name))
    }

    /// Whether some entry applies to the copy of `namespace.type_name` bound for `destination`
    /// (`None`: before it is split), i.e. whether [`apply`](TransformSet::apply) would run a rule.
    pub fn applies(&self, namespace: &str, type_name: &str, destination: Option<&str>) -> bool {
        self.entries
            .iter()
            .any(|e| e.names_table(namespace, type_name) && e.names_copy(destination))
    }

    /// Applies every entry for the table `namespace.type_name` and the copy bound for
    /// `destination` (`None`: the event before it is split per destination; only entries
    /// without `destinations` apply) to `event`, in place.
    pub fn apply(
        &self,
        namespace: &str,
        type_name: &str,
        destination: Option<&str>,
        event: &mut Map<String, Value>,
    ) -> Applied {
        let mut out = Applied::default();
        // The walks work on a `Value`; moving the map in and out is three words, not a copy.
        let mut root: Option<Value> = None;
        for entry in self.entries.iter() {
            if !entry.names_table(namespace, type_name) || !entry.names_copy(destination) {
                continue;
            }
            let root = root.get_or_insert_with(|| Value::Object(std::mem::take(event)));
            for op in entry.ops.iter() {
                op.run(root, &mut out);
            }
        }
        // A path starts with a key, so no rule replaces the event itself: it is still an object.
        if let Some(Value::Object(m)) = root {
            // What is replaced is the empty map `take` left, which owns no allocation: forget
            // it rather than run its destructor.
            std::mem::forget(std::mem::replace(event, m));
        }
        out
    }
}

impl Entry {
    fn names_table(&self, namespace: &str, type_name: &str) -> bool {
        self.tables.iter().any(|g| g.matches(namespace, type_name))
    }

    fn names_copy(&self, destination: Option<&str>) -> bool {
        match (&self.destinations, destination) {
            (None, _) => true,
            (Some(names), Some(d)) => names.iter().any(|n| **n == *d),
            (Some(_), None) => false,
        }
    }
}

#[cfg(test)]
mod tests;
