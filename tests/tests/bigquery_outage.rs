//! A BigQuery outage under steady logging is absorbed by the spool with bounded memory, and
//! drained afterwards. Its own test binary, so the memory it measures is its own.

use std::collections::HashSet;
use std::time::Duration;

use evlog_core::Pipeline;

mod common;
use common::{config, outage, start_server, wait_for, PROJECT};

#[test]
fn a_twenty_second_outage_is_absorbed_by_the_spool_and_drained_after() {
    let server = start_server();
    let spool = tempfile::tempdir().unwrap();
    let extra = format!(
        "[spool]\nenabled = true\ndir = {:?}\nfsync = false\n",
        spool.path()
    );
    let p = Pipeline::new(config(&server, &extra)).expect("pipeline");
    let logged = outage::twenty_seconds_down(&p, &server);
    outage::drained(&p, logged);
    let today = evlog_core::time::yyyymmdd(evlog_core::time::now_micros());
    let ids = server.insert_ids(PROJECT, "events", &format!("page_view{today}"));
    let unique: HashSet<_> = ids.iter().flatten().collect();
    assert_eq!(unique.len() as u64, logged, "0 lost");
    assert!(
        wait_for(Duration::from_secs(10), || std::fs::read_dir(spool.path())
            .map(|d| d
                .filter_map(Result::ok)
                .all(|e| !e.file_name().to_string_lossy().ends_with(".evs")))
            .unwrap_or(false)),
        "spool emptied"
    );
}
