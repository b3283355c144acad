use std::collections::VecDeque;
use std::io::Write;

use proptest::prelude::*;

use super::*;

fn opts(dir: &Path) -> SpoolOptions {
    SpoolOptions {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 30,
        segment_bytes: 1 << 20,
        fsync: false,
    }
}

/// Reads every record from every replayable segment, committing as it goes.
fn drain(spool: &mut Spool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(mut seg) = spool.next_segment().unwrap() {
        while let Some(r) = seg.next(&spool.counters).unwrap() {
            out.push(r.payload);
            seg.commit(r.end).unwrap();
        }
        seg.commit(0).unwrap();
    }
    out
}

#[test]
fn appends_replays_in_order_and_deletes_committed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(SpoolOptions {
        segment_bytes: 100,
        ..opts(dir.path())
    })
    .unwrap();
    let payloads: Vec<Vec<u8>> = (0..20)
        .map(|i| format!("record-{i}").into_bytes())
        .collect();
    for p in &payloads {
        spool.append(&[p]).unwrap();
    }
    assert!(spool.segments().unwrap().len() > 1, "small segments rotate");
    assert_eq!(drain(&mut spool), payloads);
    assert!(spool.segments().unwrap().is_empty());
    assert_eq!(spool.counters.corrupt_records.load(Ordering::Relaxed), 0);
}

#[test]
fn a_failed_fsync_leaves_nothing_to_replay_of_that_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(SpoolOptions {
        fsync: true,
        ..opts(dir.path())
    })
    .unwrap();
    spool.append(&[b"kept-1"]).unwrap();
    crate::fsync::fail_next();
    let err = spool.append(&[b"failed-1", b"failed-2"]).unwrap_err();
    assert!(matches!(&err, SpoolError::Io { op: "sync", .. }), "{err}");
    assert!(err.to_string().contains("injected fsync failure"), "{err}");
    // Later appends go on, into a new segment.
    spool.append(&[b"kept-2"]).unwrap();
    assert_eq!(spool.segments().unwrap().len(), 2);
    // What was reported as failed is never replayed; nothing counts as corrupt.
    assert_eq!(
        drain(&mut spool),
        vec![b"kept-1".to_vec(), b"kept-2".to_vec()]
    );
    assert_eq!(spool.counters.corrupt_records.load(Ordering::Relaxed), 0);
    assert_eq!(spool.counters.appended.load(Ordering::Relaxed), 2);

    // A failure on a fresh segment's first append leaves no empty file behind.
    crate::fsync::fail_next();
    assert!(spool.append(&[b"failed-3"]).is_err());
    assert!(spool.segments().unwrap().is_empty());
    assert!(drain(&mut spool).is_empty());
}

#[test]
fn committed_offset_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut spool = Spool::open(opts(dir.path())).unwrap();
        spool.append(&[b"a", b"b", b"c"]).unwrap();
        spool.close_writer();
        let mut seg = spool.next_segment().unwrap().unwrap();
        let a = seg.next(&spool.counters).unwrap().unwrap();
        assert_eq!(a.payload, b"a");
        seg.commit(a.end).unwrap();
        // "b" read but not committed: replayed after the restart.
        seg.next(&spool.counters).unwrap().unwrap();
    }
    let mut spool = Spool::open(opts(dir.path())).unwrap();
    assert_eq!(drain(&mut spool), [b"b".to_vec(), b"c".to_vec()]);
}

#[test]
fn torn_tail_and_corruption_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(opts(dir.path())).unwrap();
    spool.append(&[b"first", b"second", b"third"]).unwrap();
    spool.close_writer();
    let seg = spool.segments().unwrap()[0].clone();
    let mut bytes = fs::read(&seg).unwrap();
    // Corrupt the payload of "second".
    let i = bytes.windows(6).position(|w| w == b"second").unwrap();
    bytes[i] ^= 0xFF;
    // And a torn record at the tail.
    bytes.extend_from_slice(&MAGIC.to_le_bytes());
    bytes.extend_from_slice(&100u32.to_le_bytes());
    bytes.extend_from_slice(b"\0\0\0\0torn");
    fs::write(&seg, &bytes).unwrap();
    assert_eq!(drain(&mut spool), [b"first".to_vec(), b"third".to_vec()]);
    assert_eq!(spool.counters.corrupt_records.load(Ordering::Relaxed), 2);
    assert!(
        spool.segments().unwrap().is_empty(),
        "fully read segment deleted"
    );
}

#[test]
fn records_across_read_ahead_chunks_read_back_and_corruption_past_the_first_chunk_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(SpoolOptions {
        segment_bytes: 64 << 20,
        ..opts(dir.path())
    })
    .unwrap();
    // Small records straddling chunk boundaries, and records larger than a whole chunk.
    let payloads: Vec<Vec<u8>> = (0..3000usize)
        .map(|i| {
            let len = if i % 997 == 0 {
                READ_AHEAD + 4099
            } else {
                1 + i * 37 % 500
            };
            let mut p = format!("r{i}:").into_bytes();
            p.resize(len.max(p.len()), b'a' + (i % 26) as u8);
            p
        })
        .collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    spool.append(&refs).unwrap();
    spool.close_writer();
    let seg = spool.segments().unwrap()[0].clone();
    let mut bytes = fs::read(&seg).unwrap();
    assert!(bytes.len() > 3 * READ_AHEAD);
    // Corrupt one record well past the first chunk.
    let victim = 2500;
    let tag = format!("r{victim}:");
    let at = bytes
        .windows(tag.len())
        .position(|w| w == tag.as_bytes())
        .unwrap();
    bytes[at + 1] ^= 0xFF;
    fs::write(&seg, &bytes).unwrap();
    let want: Vec<Vec<u8>> = payloads
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, p)| p.clone())
        .collect();
    assert!(drain(&mut spool) == want, "every other record, in order");
    assert_eq!(spool.counters.corrupt_records.load(Ordering::Relaxed), 1);
}

#[test]
fn a_segment_removed_between_open_and_lock_is_not_replayed_again() {
    // Reader B opens a segment, is preempted before it locks it; reader A replays the whole
    // segment, commits and removes it (with its offset file); then B gets the lock.
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Spool::open(opts(dir.path())).unwrap();
    writer.append(&[b"only-once".as_slice()]).unwrap();
    writer.close_writer();
    let path = writer.segments().unwrap().remove(0);
    let opened_by_b = File::open(&path).unwrap();
    let mut a = Spool::open(opts(dir.path())).unwrap();
    assert_eq!(drain(&mut a), vec![b"only-once".to_vec()]);
    assert!(!path.exists(), "A removed the segment it finished");
    assert!(
        take_segment(path, opened_by_b).unwrap().is_none(),
        "B must not replay a removed segment from offset 0"
    );
}

#[test]
fn live_writer_segment_is_not_replayed_by_another_handle() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Spool::open(opts(dir.path())).unwrap();
    writer.append(&[b"x"]).unwrap();
    let mut reader = Spool::open(opts(dir.path())).unwrap();
    assert!(
        reader.next_segment().unwrap().is_none(),
        "locked by the writer"
    );
    writer.close_writer();
    assert_eq!(drain(&mut reader), [b"x".to_vec()]);
}

#[test]
fn bounded_by_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(SpoolOptions {
        max_bytes: 100,
        ..opts(dir.path())
    })
    .unwrap();
    spool.append(&[&[0u8; 50]]).unwrap();
    let err = spool.append(&[&[0u8; 50]]).unwrap_err();
    assert!(matches!(err, SpoolError::Full { .. }), "{err}");
    assert!(err.to_string().contains("spool full"));
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Vec<u8>>),
    /// Read up to n records and commit the first k of them.
    ReadCommit(usize, usize),
    /// Drop every handle (a crash after the last acknowledged write) and reopen.
    Crash,
    /// A writer died in the middle of a record: a torn record at the end of a new segment.
    TornWrite(Vec<u8>, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..4).prop_map(Op::Append),
        3 => (0usize..6, 0usize..6).prop_map(|(n, k)| Op::ReadCommit(n, k.min(n))),
        1 => Just(Op::Crash),
        1 => (prop::collection::vec(any::<u8>(), 1..40), 1usize..50).prop_map(|(p, cut)| Op::TornWrite(p, cut)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the interleaving of appends, partial replays, crashes and torn writes, replay
    /// yields exactly the acknowledged, uncommitted records, in order.
    #[test]
    fn model_based(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let o = SpoolOptions { segment_bytes: 200, ..opts(dir.path()) };
        let mut spool = Spool::open(o.clone()).unwrap();
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut torn = 0;
        for op in ops {
            match op {
                Op::Append(ps) => {
                    let refs: Vec<&[u8]> = ps.iter().map(Vec::as_slice).collect();
                    spool.append(&refs).unwrap();
                    model.extend(ps);
                }
                Op::ReadCommit(n, k) => {
                    // Reads go through segments in order; commit a prefix of what was read.
                    let mut read = 0;
                    while read < n {
                        let Some(mut seg) = spool.next_segment().unwrap() else { break };
                        let mut last_end = None;
                        while read < n {
                            let Some(r) = seg.next(&spool.counters).unwrap() else { break };
                            prop_assert_eq!(Some(&r.payload), model.get(read));
                            if read < k {
                                last_end = Some(r.end);
                            }
                            read += 1;
                        }
                        let committed_here = last_end.is_some();
                        if let Some(end) = last_end {
                            seg.commit(end).unwrap();
                        }
                        if !committed_here || read >= k {
                            break;
                        }
                    }
                    let k = k.min(read);
                    // Only records committed in the first segment(s) leave the model.
                    model.drain(..k);
                    // Re-sync the model with what is actually committed: replay everything now
                    // would show the rest. Uncommitted reads stay in the model.
                    break_if_mismatch(&mut spool, &model)?;
                }
                Op::Crash => {
                    drop(spool);
                    spool = Spool::open(o.clone()).unwrap();
                }
                Op::TornWrite(p, cut) => {
                    // A writer that died mid-record: every writer has its own segment, so each
                    // torn write is the tail of a segment of its own.
                    torn += 1;
                    let path = dir.path().join(format!("seg-{:020}-0-torn{torn:04}.evs", 99_999_999_999_999_999u64));
                    let mut rec = Vec::new();
                    rec.extend_from_slice(&MAGIC.to_le_bytes());
                    rec.extend_from_slice(&(p.len() as u32).to_le_bytes());
                    rec.extend_from_slice(&crc32c::crc32c(&p).to_le_bytes());
                    rec.extend_from_slice(&p);
                    rec.truncate(cut.min(rec.len() - 1));
                    let mut f = OpenOptions::new().create_new(true).append(true).open(&path).unwrap();
                    f.write_all(&rec).unwrap();
                }
            }
        }
        drop(spool);
        let mut spool = Spool::open(o).unwrap();
        let all = drain(&mut spool);
        prop_assert_eq!(all, model.into_iter().collect::<Vec<_>>());
    }
}

/// Reads everything without committing and compares with the model (a read-only check).
fn break_if_mismatch(spool: &mut Spool, model: &VecDeque<Vec<u8>>) -> Result<(), TestCaseError> {
    let mut seen = Vec::new();
    let mut readers = Vec::new();
    while let Some(mut seg) = spool.next_segment().unwrap() {
        while let Some(r) = seg.next(&spool.counters).unwrap() {
            seen.push(r.payload);
        }
        readers.push(seg); // hold the lock so next_segment moves on
    }
    drop(readers);
    prop_assert_eq!(seen, model.iter().cloned().collect::<Vec<_>>());
    Ok(())
}

/// A reader polling the directory while a writer keeps starting segments (the collector's WAL:
/// sealed every few ms, streamed by other threads) never takes a new, still empty segment for a
/// finished one: every acknowledged record is read back.
#[test]
fn readers_racing_new_segments_lose_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (dir, done) = (dir.path().to_path_buf(), std::sync::Arc::clone(&done));
        std::thread::spawn(move || {
            let mut spool = Spool::open(opts(&dir)).unwrap();
            let mut got = Vec::new();
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let batch = drain(&mut spool);
                if finished && batch.is_empty() {
                    return got;
                }
                got.extend(batch);
            }
        })
    };
    let mut writer = Spool::open(opts(dir.path())).unwrap();
    let n = 3000u32;
    for i in 0..n {
        writer.append(&[&i.to_le_bytes()]).unwrap();
        writer.close_writer();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut got: Vec<u32> = reader
        .join()
        .unwrap()
        .into_iter()
        .map(|p| u32::from_le_bytes(p.try_into().unwrap()))
        .collect();
    got.sort_unstable();
    let missing: Vec<u32> = (0..n).filter(|i| got.binary_search(i).is_err()).collect();
    assert!(missing.is_empty(), "records lost: {missing:?}");
    assert_eq!(got.len(), n as usize, "records read twice");
}

/// A lazily opened spool touches nothing until its first append, reads as empty meanwhile, and
/// a private one refuses a directory others can enter (made by someone else before us).
#[test]
fn a_lazy_private_spool_is_created_on_first_append_and_refuses_a_shared_directory() {
    use std::os::unix::fs::PermissionsExt as _;
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let dir = root.path().join("evlog-test").join("forward-0123");
    let mut spool = Spool::open_lazily(opts(&dir), true);
    assert!(!dir.exists());
    assert!(spool.segments().unwrap().is_empty());
    spool.append(&[b"one"]).unwrap();
    for d in [dir.parent().unwrap(), dir.as_path()] {
        let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
    assert_eq!(spool.segments().unwrap().len(), 1);

    let shared = root.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut spool = Spool::open_lazily(opts(&shared.join("forward-0123")), true);
    let e = spool.append(&[b"one"]).unwrap_err();
    assert!(matches!(e, SpoolError::NotPrivate { .. }), "{e}");
    assert!(e.to_string().contains("spool.dir"), "{e}");
}
