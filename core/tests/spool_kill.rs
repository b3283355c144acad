//! A process killed with SIGKILL mid-write loses nothing it had acknowledged: every record whose
//! `append` returned is replayed, in order, by the next process.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use evlog_core::spool::{Spool, SpoolOptions};

const CHILD_ENV: &str = "EVLOG_SPOOL_KILL_CHILD_DIR";

fn options(dir: &std::path::Path) -> SpoolOptions {
    SpoolOptions {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 30,
        segment_bytes: 64 * 1024,
        fsync: false, // SIGKILL does not lose the page cache; fsync guards against power loss
    }
}

/// The child: appends numbered records as fast as it can, printing each acknowledged number.
#[test]
fn spool_kill_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // only meaningful when started by the parent test
    };
    let mut spool = Spool::open(options(dir.as_ref())).unwrap();
    let mut out = std::io::stdout().lock();
    for n in 0u64.. {
        // Vary sizes so kills land at every point of a record.
        let payload = format!("{n}:{}", "x".repeat((n % 300) as usize));
        spool.append(&[payload.as_bytes()]).unwrap();
        writeln!(out, "ack {n}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn sigkill_mid_write_loses_no_acknowledged_record() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    for round in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "spool_kill_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut acked = Vec::new();
        let target = 1_000 + round * 1_500;
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.len() < target && Instant::now() < deadline {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(n) = line.strip_prefix("ack ") {
                        acked.push(n.parse::<u64>().unwrap());
                    }
                }
                _ => break,
            }
        }
        assert!(
            acked.len() >= target,
            "child stopped early: {} acks",
            acked.len()
        );
        // SIGKILL, mid-stream.
        child.kill().unwrap();
        // Acks printed before the kill are still in the pipe.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("ack ") {
                acked.push(n.parse::<u64>().unwrap());
            }
        }
        child.wait().unwrap();

        let mut spool = Spool::open(options(dir.path())).unwrap();
        let mut replayed = Vec::new();
        while let Some(mut seg) = spool.next_segment().unwrap() {
            while let Some(r) = seg.next(&spool.counters).unwrap() {
                let text = String::from_utf8(r.payload).unwrap();
                let (n, pad) = text.split_once(':').unwrap();
                let n: u64 = n.parse().unwrap();
                assert_eq!(pad.len() as u64, n % 300, "record {n} intact");
                replayed.push(n);
                seg.commit(r.end).unwrap();
            }
        }
        let last_acked = *acked.last().unwrap();
        // Every acknowledged record, in order; at most one more (written, not yet acknowledged).
        assert!(replayed.len() as u64 > last_acked);
        assert!(replayed.len() as u64 <= last_acked + 2);
        assert!(replayed.iter().enumerate().all(|(i, n)| *n == i as u64));
        assert!(
            spool.segments().unwrap().is_empty(),
            "replayed segments are deleted"
        );
    }
}
