//! Destinations and routes: which named sinks receive an event.
//!
//! Two words that sound alike and are not: **`[routing]`** ([`crate::routing`]) says *where
//! inside a warehouse* a table's rows land (dataset, table, day shard or partition); **`[[routes]]`**
//! (this module) says *which destinations* receive a table's events at all. A destination is a
//! named sink; [`crate::routing::Destination`] is the table and day a batch is written to, inside
//! whichever destination sends it.
//!
//! ## Configuration
//! ```toml
//! [destinations.warehouse]          # any name: letters, digits, `_`, `-`
//! kind = "bigquery"                 # then the sink's own keys, as under [sink.bigquery]
//! project = "my-project"
//! [destinations.archive]
//! kind = "file"
//! dir = "/var/lib/evlog/archive"
//!
//! [[routes]]                        # an event goes to the destinations of every route that takes it
//! tables = ["events.*"]             # namespace.type globs; "*" is every table
//! to = ["warehouse", "archive"]
//! [[routes]]
//! tables = ["debug.*"]
//! to = ["archive"]
//! where = { field = "level", equals = "error" }   # or exists = true|false, or in = [...]
//! sample = 0.1                      # the share taken, by event id
//! ```
//!
//! - Without `[destinations]`, `[sink]` is the one destination, named `default` (see
//!   [`DEFAULT_DESTINATION`]), and without `[[routes]]` it receives every table: a configuration
//!   written before destinations existed means what it meant. `[[routes]]` may still name
//!   `default` to send it only some tables. `[sink]` with settings of its own and
//!   `[destinations]` together are refused: which would the events go to?
//! - With `[destinations]`, `[[routes]]` are required. Destinations are indexed in name order
//!   ([`Routes::names`], a [`DestinationSet`] holds indexes); at most [`MAX_DESTINATIONS`].
//! - A route takes an event when one of its `tables` globs matches `namespace.type`, its
//!   `where` passes (the field, a dotted path into nested objects, is present / equals / is one
//!   of; numbers compare by value; an event whose body is not an object has no fields), and its
//!   `sample` takes the event's id. The event goes to the union of the `to` of every route that
//!   takes it; none is `evlog_events_dropped_total{reason="unrouted"}`.
//! - **Sampling** is decided by the event id alone ([`sample_point`]: FNV-1a 64 of the id's
//!   bytes, then splitmix64's finalizer; taken when `point / 2^64 < sample`), so an SDK, the
//!   collector behind it, a retry, a replay and every replica take the same events. Two routes
//!   with the same rate take the same events; a lower rate takes a subset of a higher one's.
//! - Errors name the key as written, indexes from 0: `routes[1].to[0]: no destination "x";
//!   defined: a, b`, `routes[0].tables[2]: bad table glob …`, `routes[3].sample: …`,
//!   `destinations.archive.dir: …`.
//!
//! Routing is done off the `log()` path (the flush thread, the collector's ingest): it costs a
//! glob match per route and table, a hash of the id for a sampled route, and a parse of the
//! body only for a table some route with a `where` applies to.

mod config;
mod routes;
#[cfg(test)]
mod tests;

pub(crate) use self::config::validate_destinations;
pub use self::config::{
    DestinationConfig, RouteConfig, WhereConfig, DEFAULT_DESTINATION, MAX_DESTINATIONS,
};
pub use self::routes::{sample_point, sampled, DestinationSet, Routes};
