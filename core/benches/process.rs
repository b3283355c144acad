//! Validation and conversion of one event (`Processor::process`): the work the flush thread and
//! the collector do per event, off the `log()` path. Prints criterion's time per event for the
//! collector benchmark's `transaction` event (nested `items`, decimals) and a flat page view.
//!
//!     cargo bench -p evlog-core --bench process

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use evlog_core::config::Config;
use evlog_core::ingest::{Processor, RawEvent};
use evlog_core::schema::SchemaRegistry;
use evlog_core::EventInput;

fn bench(c: &mut Criterion) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/schemas");
    let schemas = SchemaRegistry::load_dir(&dir).expect("test schemas");
    let p = Processor::new(schemas, &Config::default());
    let events = [
        (
            "transaction",
            r#"{"user_id":17,"amount":"19.99","currency":"EUR","items":[{"sku":"SKU-17","price":"19.99","qty":1}]}"#,
        ),
        (
            "page_view",
            r#"{"user_id":17,"url":"/products/17?ref=mail","referrer":"https://example.com/","duration_ms":1500,"tags":["a","b"],"ab":"B"}"#,
        ),
    ];
    let mut g = c.benchmark_group("process");
    g.throughput(Throughput::Elements(1));
    for (ty, body) in events {
        // No id: a generated UUIDv7, formatted per call as the flush thread does.
        let raw = RawEvent::new(EventInput::new("events", ty, body), 1_763_800_000_000_000);
        let (_, row) = p.process(&raw).expect("valid event");
        assert!(!row.json.is_empty());
        g.bench_function(ty, |b| b.iter(|| black_box(p.process(black_box(&raw)))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
