//! The SDK's side of the end-to-end benchmark (`tests/bench/bigquery_e2e.sh`): an SDK in forward
//! mode logs EVENTS page_view events from THREADS threads as fast as `log()` takes them, into a
//! collector that writes them to the BigQuery test server.
//!
//! ```text
//! bq_e2e_bench COLLECTOR_URL EVENTS THREADS FIRST_ID
//! ```
//!
//! Ids are `e<FIRST_ID + i>`, so rounds into one server never collide. A full queue makes the
//! thread wait (200 µs) and try again: no event is dropped. Prints `events/s cpu_us/event` of the
//! SDK process (logging threads and the flush thread, user + system) once every event was
//! acknowledged by the collector (`flush()`).

use std::path::Path;
use std::time::{Duration, Instant};

use evlog_core::{Config, EventInput, Pipeline};
use evlog_tests::proc_stats::cpu_seconds;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, events, threads, first] = args.as_slice() else {
        eprintln!("usage: bq_e2e_bench COLLECTOR_URL EVENTS THREADS FIRST_ID");
        std::process::exit(2);
    };
    let events: u64 = events.parse().expect("EVENTS is a number");
    let threads: u64 = threads.parse().expect("THREADS is a number");
    let first: u64 = first.parse().expect("FIRST_ID is a number");
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/data/schemas");
    let toml = format!(
        "[sink]\nkind = \"forward\"\n[sink.forward]\nurl = {url:?}\nreport_interval = \"0s\"\n\
         [queue]\ncapacity = 200000\n[batch]\nmax_rows = 2000\nmax_age = \"50ms\"\n\
         [spool]\nenabled = false\n[schemas]\ndir = {schemas:?}\n"
    );
    let p = Pipeline::new(Config::from_toml_str(&toml).expect("config")).expect("pipeline");
    let per_thread = events / threads;
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let p = &p;
            s.spawn(move || {
                for i in t * per_thread..(t + 1) * per_thread {
                    let id = format!("e{}", first + i);
                    let body = format!(
                        r#"{{"user_id":{i},"url":"/courses/intro-to-rust/lesson/{i}","referrer":"https://www.example.com/search?q=rust","duration_ms":5321,"tags":["web","rust"]}}"#
                    );
                    loop {
                        let mut ev = EventInput::new("events", "page_view", body.as_str());
                        ev.id = Some(&id);
                        if p.log(ev).is_ok() {
                            break;
                        }
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            });
        }
    });
    assert!(p.flush(Duration::from_secs(600)), "{:?}", p.stats());
    let wall = start.elapsed().as_secs_f64();
    let s = p.stats();
    let sent = per_thread * threads;
    assert_eq!(s.delivered, sent, "every event acknowledged: {s:?}");
    // log() refusals (a full queue) were counted dropped and tried again: only those.
    assert_eq!(
        s.dropped_total(),
        s.dropped.get("queue_full").copied().unwrap_or(0),
        "{s:?}"
    );
    println!(
        "{:.0} {:.2}",
        sent as f64 / wall,
        (cpu_seconds() - cpu0) * 1e6 / sent as f64
    );
}
