//! The file sink's unit tests.

use std::io::Write;

use compact_str::CompactString;

use super::*;
use crate::routing::{Destination, PartitionKind};
use crate::sink::{Batch, EncodedRow, Sink};

fn batch(rows: &[&str]) -> Batch {
    Batch {
        destination: Destination {
            dataset: "events".into(),
            table: "transaction".into(),
            partitioning: PartitionKind::DayShard,
            day: CompactString::from("20261122"),
        },
        rows: rows
            .iter()
            .enumerate()
            .map(|(i, r)| EncodedRow {
                insert_id: i.to_string(),
                json: r.to_string(),
            })
            .collect(),
        bytes: rows.iter().map(|r| r.len()).sum(),
    }
}

#[test]
fn appends_whole_batches_and_repairs_torn_tails() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FileSinkConfig {
        dir: dir.path().to_path_buf(),
        ..FileSinkConfig::default()
    };
    let mut sink = FileSink::new(&cfg).unwrap();
    let out = sink.deliver(vec![batch(&[r#"{"a":1}"#, r#"{"a":2}"#])]);
    assert_eq!(out[0].delivered, 2);
    let path = dir.path().join("events/transaction20261122.ndjson");
    // Simulate a writer killed mid-line.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"a\":")
        .unwrap();
    let mut other = FileSink::new(&cfg).unwrap();
    other.deliver(vec![batch(&[r#"{"a":3}"#])]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");
}

#[test]
fn a_batch_whose_fsync_fails_leaves_no_rows_behind() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FileSinkConfig {
        dir: dir.path().to_path_buf(),
        fsync: true,
        ..FileSinkConfig::default()
    };
    let mut sink = FileSink::new(&cfg).unwrap();
    assert_eq!(sink.deliver(vec![batch(&[r#"{"a":1}"#])])[0].delivered, 1);
    crate::fsync::fail_next();
    let out = sink.deliver(vec![batch(&[r#"{"a":2}"#, r#"{"a":3}"#])]);
    assert_eq!(out[0].delivered, 0);
    assert_eq!(out[0].failed.len(), 2);
    let err = out[0].error.as_ref().expect("an error").to_string();
    assert!(err.contains("injected fsync failure"), "{err}");
    let path = dir.path().join("events/transaction20261122.ndjson");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n");
    // The retry lands once.
    assert_eq!(
        sink.deliver(vec![batch(&[r#"{"a":2}"#, r#"{"a":3}"#])])[0].delivered,
        2
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"
    );
}

#[test]
fn failed_open_reports_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FileSinkConfig {
        dir: dir.path().to_path_buf(),
        ..FileSinkConfig::default()
    };
    let mut sink = FileSink::new(&cfg).unwrap();
    // A directory where the dataset directory should be a file's parent: make "events" a file.
    std::fs::write(dir.path().join("events"), b"x").unwrap();
    let out = sink.deliver(vec![batch(&[r#"{"a":1}"#])]);
    assert_eq!(out[0].delivered, 0);
    assert_eq!(out[0].failed.len(), 1);
    let msg = out[0].error.as_ref().unwrap().to_string();
    assert!(msg.contains("events"), "{msg}");
}

#[test]
fn closes_least_recently_used_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FileSinkConfig {
        dir: dir.path().to_path_buf(),
        max_open_files: 1,
        ..FileSinkConfig::default()
    };
    let mut sink = FileSink::new(&cfg).unwrap();
    let mut b2 = batch(&[r#"{"b":1}"#]);
    b2.destination.day = "20261123".into();
    sink.deliver(vec![batch(&[r#"{"a":1}"#]), b2, batch(&[r#"{"a":2}"#])]);
    assert_eq!(sink.open.len(), 1);
    let a = std::fs::read_to_string(dir.path().join("events/transaction20261122.ndjson")).unwrap();
    assert_eq!(a.lines().count(), 2);
}
