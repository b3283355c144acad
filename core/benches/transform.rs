//! Cost of `[[transforms]]` per event per rule (`TransformSet::apply` on a parsed ~200-byte
//! event), for the targets of issue 17: rename/drop ≤ 100 ns, HMAC of a short string ≤ 1 µs.
//! Each event is a fresh copy made outside the timing (see `per_event`); `none` (an entry for
//! another table) is what `apply` costs before any rule, so a rule's own cost is its time less
//! `none`'s.
//! References: `map remove` and `map rename` are the bare `serde_json::Map` operations under
//! `drop` and `rename`; `parse+write` is what a caller pays to turn event text into the map and
//! back.
//!
//!     cargo bench -p evlog-core --bench transform -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use evlog_core::transform::{TransformConfig, TransformSet};
use serde_json::{Map, Value};

/// A ~200-byte event with the fields people transform.
const EVENT: &str = r#"{"uid":"u-123456","email":"ada@example.com","ip":"203.0.113.7","card":"4111111111111111","password":"hunter2","msg":"login from ada@example.com","user":{"email":"ada@example.com"},"items":[{"sku":"SKU-17","qty":1}]}"#;

const KEY: &str = "bench-key-0123456789abcdef";

fn set(rules: &str) -> TransformSet {
    #[derive(serde::Deserialize)]
    struct File {
        transforms: Vec<TransformConfig>,
    }
    let file: File = toml::from_str(rules).expect("bench rules");
    TransformSet::compile(&file.transforms, |_| Some(KEY.to_owned())).expect("bench rules")
}

fn one(rule: &str) -> TransformSet {
    set(&format!("[[transforms]]\ntables = [\"events.*\"]\n{rule}"))
}

/// Time of `f` on `iters` fresh copies of `event`, counting only `f`: copies are made (and
/// dropped) outside the timing in small chunks, so each is still in cache when `f` runs, as an
/// event just parsed would be.
fn per_event(
    iters: u64,
    event: &Map<String, Value>,
    mut f: impl FnMut(&mut Map<String, Value>),
) -> Duration {
    const CHUNK: u64 = 16;
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let mut copies: Vec<_> = (0..n).map(|_| event.clone()).collect();
        let start = Instant::now();
        for e in &mut copies {
            f(black_box(e));
        }
        total += start.elapsed();
        drop(black_box(copies));
        left -= n;
    }
    total
}

fn bench(c: &mut Criterion) {
    assert!(
        (190..=230).contains(&EVENT.len()),
        "event is {} bytes",
        EVENT.len()
    );
    let event: Map<String, Value> = serde_json::from_str(EVENT).expect("bench event");
    let cases = [
        (
            "none",
            set("[[transforms]]\ntables = [\"shop.*\"]\ndrop = [\"password\"]"),
        ),
        ("rename", one(r#"rename = { "uid" = "user_id" }"#)),
        ("drop", one(r#"drop = ["password"]"#)),
        ("set", one(r#"set = { "source" = "web" }"#)),
        ("default", one(r#"default = { "source" = "web" }"#)),
        ("copy", one(r#"copy = { "uid" = "user_id" }"#)),
        ("hash", one(r#"hash = ["email"]"#)),
        ("hash nested", one(r#"hash = ["user.email"]"#)),
        ("mask", one(r#"mask = { "card" = 4 }"#)),
        ("truncate", one(r#"truncate = { "msg" = 10 }"#)),
        ("redact email", one(r#"redact = { "msg" = ["email"] }"#)),
        (
            "redact all",
            one(r#"redact = { "msg" = ["email", "ipv4", "ipv6", "card"] }"#),
        ),
        (
            "rename items[]",
            one(r#"rename = { "items[].qty" = "items[].quantity" }"#),
        ),
        (
            "typical",
            one(r#"rename = { "uid" = "user_id" }
hash = ["user.email"]
mask = { "card" = 4 }
drop = ["password", "token"]"#),
        ),
    ];
    let mut g = c.benchmark_group("transform");
    g.throughput(Throughput::Elements(1));
    for (name, set) in &cases {
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                per_event(iters, &event, |e| {
                    black_box(set.apply("events", "page_view", None, e));
                })
            })
        });
    }
    // The map operations `drop` and `rename` are built on, alone: the floor for those rules.
    g.bench_function("map remove", |b| {
        b.iter_custom(|iters| {
            per_event(iters, &event, |e| {
                drop(black_box(e.remove(black_box("password"))))
            })
        })
    });
    g.bench_function("map rename", |b| {
        b.iter_custom(|iters| {
            per_event(iters, &event, |e| {
                if let Some(v) = e.remove(black_box("uid")) {
                    e.insert(black_box("user_id").to_owned(), v);
                }
            })
        })
    });
    g.bench_function("parse+write", |b| {
        b.iter(|| {
            let m: Map<String, Value> = serde_json::from_str(black_box(EVENT)).expect("event");
            black_box(serde_json::to_string(&m).expect("event"))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
