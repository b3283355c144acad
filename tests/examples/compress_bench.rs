//! CPU and size of the forward sink's request compression, zstd against gzip (core's own
//! `sink::Encoding`, the sink's code: each with its per-thread state reused as the flush
//! thread reuses it), on NDJSON envelopes like the ones the sink frames: varied events (user ids,
//! paths, times, prices and random event ids differ from event to event), in requests of 10, 50
//! and 500 events.
//!
//!   cargo run --release -p evlog-tests --example compress_bench -- [ROUNDS]
//!
//! Each round times every codec on every request size in turn (alternating, same process);
//! prints per codec and size the median ns per event over ROUNDS (default 7) with min and max,
//! and the compression ratio (text bytes / compressed bytes). Two zstd levels the sink does not
//! use (−1, a "fast" level, and 3, zstd's default) run beside them, through the zstd crate with
//! a reused context as the sink's: what the choice of level 1 was weighed against. `forward_cpu.rs` logs one event
//! body over and over, which compresses far better than real traffic: this is the varied case.
use std::time::Instant;

use evlog_core::sink::Encoding;

/// `n` envelopes as `wire::push_envelope` frames them, varied by a generator seeded with `seed`.
fn body(n: usize, seed: u64) -> Vec<u8> {
    let mut s = String::with_capacity(n * 300);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let secs = 1_764_866_000 + i as u64 / 40;
        s.push_str(&format!(
            "{{\"namespace\":\"events\",\"type\":\"page_view\",\"time\":\"2026-12-04T17:{:02}:{:02}.{:06}Z\",\
             \"id\":\"0193{:08x}-{:04x}-7{:03x}-{:04x}-{:012x}\",\"event\":{{\"user_id\":{},\
             \"path\":\"/products/{}\",\"ua\":\"Mozilla/5.0 (X11; Linux x86_64)\",\"ms\":{}.{:06},\
             \"amount\":\"{}.{:02}\",\"ok\":{}}}}}\n",
            (secs / 60) % 60,
            secs % 60,
            (x >> 20) % 1_000_000,
            (x >> 8) as u32,
            (x >> 3) as u16,
            (x >> 13) as u16 & 0xfff,
            0x8000 | ((x >> 17) as u16 & 0x3fff),
            x & 0xffff_ffff_ffff,
            (x >> 40) % 100_000,
            (x >> 33) % 5000,
            secs,
            (x >> 22) % 1_000_000,
            (x >> 45) % 200,
            (x >> 50) % 100,
            x & 1 == 0,
        ));
    }
    s.into_bytes()
}

fn median_min_max(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(7)
        .max(1);
    let mut other_levels: Vec<zstd::bulk::Compressor<'_>> = [-1, 3]
        .iter()
        .map(|&l| {
            let mut c = zstd::bulk::Compressor::new(l).expect("zstd level");
            c.include_checksum(true).expect("checksum");
            c
        })
        .collect();
    let codecs = [
        "zstd (level 1)",
        "gzip",
        "zstd -1 (not used)",
        "zstd 3 (not used)",
    ];
    let sizes = [10usize, 50, 500];
    // 8 different bodies per size, so no codec sees the same text twice in a row.
    let bodies: Vec<Vec<Vec<u8>>> = sizes
        .iter()
        .map(|&n| (0..8).map(|k| body(n, k + 1)).collect())
        .collect();
    let mut times = vec![vec![Vec::new(); sizes.len()]; codecs.len()];
    let mut ratio = vec![vec![0.0; sizes.len()]; codecs.len()];
    for _ in 0..rounds {
        for (si, &n) in sizes.iter().enumerate() {
            let reps = 200_000 / n;
            for ci in 0..codecs.len() {
                let (mut text, mut packed) = (0usize, 0usize);
                let start = Instant::now();
                for r in 0..reps {
                    let b = &bodies[si][r % 8];
                    packed += match ci {
                        0 => Encoding::Zstd.encode(b).len(),
                        1 => Encoding::Gzip.encode(b).len(),
                        k => other_levels[k - 2].compress(b).expect("zstd").len(),
                    };
                    text += b.len();
                }
                let ns = start.elapsed().as_nanos() as f64 / (reps * n) as f64;
                times[ci][si].push(ns);
                ratio[ci][si] = text as f64 / packed as f64;
            }
        }
    }
    println!("## Request compression, varied events, {rounds} rounds alternating (core's sink::Encoding)");
    println!();
    println!("| codec | events per request | bytes per event | ns per event, median | min – max | ratio |");
    println!("|---|---|---|---|---|---|");
    for (si, &n) in sizes.iter().enumerate() {
        for (ci, name) in codecs.iter().enumerate() {
            let (med, lo, hi) = median_min_max(times[ci][si].clone());
            println!(
                "| {name} | {n} | {} | {med:.0} | {lo:.0} – {hi:.0} | {:.2} |",
                bodies[si][0].len() / n,
                ratio[ci][si]
            );
        }
    }
}
