//! The live page: what the collector is doing right now, for people (`GET /ui`) and for
//! `evlog-collector top` / `tail`, from one server-sent event feed (`GET /ui/feed`).
//!
//! - [`feed`]: the state behind it: counts per table, the tail of recent rows per table, recent
//!   dead letters, a snapshot of every count once a second for the last minutes; bounded ring
//!   buffers, captured only while someone watches.
//! - [`sse`]: one subscriber's stream, its filters and its bounds.
//! - The page itself is one HTML file with its CSS and JavaScript inlined ([`PAGE`], embedded
//!   in the binary: no CDN, works offline). The HTTP side (auth, the snapshot's JSON) is in
//!   `crate::http::ui`.
//!
//! SDK reports: a snapshot's `sources` list holds the counters SDK processes in forward mode
//! report (`crate::reports`), per app and host, and each table's `sdk_dropped` the events they
//! lost before routing that were meant for it (see `collector/README.md`, "Live page").

pub mod feed;
pub mod sse;

pub use feed::{Feed, Item, Tally};

/// The page: HTML with its CSS and JavaScript inlined.
pub const PAGE: &str = concat!(
    include_str!("assets/head.html"),
    "<style>\n",
    include_str!("assets/page.css"),
    "</style>\n",
    include_str!("assets/body.html"),
    "<script>\n",
    include_str!("assets/page.js"),
    "</script>\n</body>\n</html>\n",
);
