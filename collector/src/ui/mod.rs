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
//! Room for SDK reports: a snapshot has a `sources` list (empty for now) where per-process
//! counters reported by SDKs in forward mode would go, each labelled by app and host and
//! carrying the table names its events were meant for, so the page can show them beside the
//! tables (see `collector/README.md`, "Live page").

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
