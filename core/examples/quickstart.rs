//! Quick start: log a few events through the in-process pipeline into the file sink and show
//! where they landed.
//!
//! `cargo run -p evlog-core --example quickstart [-- <config.toml>]` (default
//! `collector/examples/evlog.toml`, run from the repository root).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use evlog_core::{Config, EventInput, Pipeline};

fn main() -> ExitCode {
    let path = std::env::args().nth(1).map_or_else(
        || PathBuf::from("collector/examples/evlog.toml"),
        PathBuf::from,
    );
    let config = match Config::from_path(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out_dir = config.sink.file.dir.clone();
    let pipeline = match Pipeline::new(config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };

    let events = [
        (
            "transaction",
            r#"{"user_id": 42, "amount": "9.99", "currency": "USD", "coupon": "XMAS", "items": [{"sku": "SET-1", "price": "9.99", "qty": 1}], "platform": "web"}"#,
        ),
        (
            "transaction",
            r#"{"user_id": 7, "amount": "19.50", "currency": "EUR"}"#,
        ),
        (
            "page_view",
            r#"{"user_id": 42, "url": "/flashcards/spanish", "duration_ms": 5321, "tags": ["study", "spanish"]}"#,
        ),
        (
            "page_view",
            r#"{"url": "/", "experiment": {"name": "new-home", "arm": "B"}}"#,
        ),
        // Rejected: amount is not a number, so it goes to the dead-letter file with the reason.
        ("transaction", r#"{"user_id": 9, "amount": "lots"}"#),
    ];
    for (type_name, json) in events {
        if let Err(e) = pipeline.log(EventInput::new("events", type_name, json)) {
            eprintln!("log refused an event: {e}");
        }
    }
    let flushed = pipeline.flush(Duration::from_secs(10));
    let stats = pipeline.stats();
    println!("flushed: {flushed}");
    for (name, value) in stats.to_flat() {
        println!("  {name} {value}");
    }
    println!("\nevents landed in {}:", out_dir.display());
    show_files(&out_dir.join("events"));
    if flushed && stats.is_settled() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn show_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        println!("  (nothing in {})", dir.display());
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        println!("  {} ({} rows)", path.display(), text.lines().count());
        if let Some(last) = text.lines().last() {
            println!("    last row: {last}");
        }
    }
}
