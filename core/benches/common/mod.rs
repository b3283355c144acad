//! Setup shared by the `log()` benchmarks.

use std::path::Path;
use std::sync::Arc;

use evlog_core::schema::SchemaRegistry;
use evlog_core::sink::null::NullSink;
use evlog_core::sink::Sink;
use evlog_core::{Config, Pipeline};

/// A ~200-byte page view.
pub const EVENT: &str = r#"{"user_id":123456,"url":"/courses/intro-to-rust/lesson/42","referrer":"https://www.example.com/search?q=rust","duration_ms":5321,"tags":["web","rust"],"session":"d9b2d63d-a233-4123-847a-5c9a6d1e2a33"}"#;

/// A pipeline whose flush thread validates every event into the null sink, with a queue large
/// enough that no timed call is refused.
pub fn pipeline() -> Pipeline {
    assert!(
        (190..=230).contains(&EVENT.len()),
        "event is {} bytes",
        EVENT.len()
    );
    let config = Config::from_toml_str("[queue]\ncapacity = 200000\nmax_bytes = \"256MiB\"\n")
        .expect("bench config");
    let schemas =
        SchemaRegistry::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/schemas"))
            .expect("bench schemas");
    Pipeline::with_parts(
        config,
        schemas,
        Arc::new(|| Ok(Box::new(NullSink) as Box<dyn Sink>)),
    )
}
