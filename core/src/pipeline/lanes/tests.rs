//! The lanes' contract: order, nothing lost, rings reused, bodies and envelopes whole.

use super::*;

fn stamp(i: usize) -> Stamp<'static> {
    Stamp {
        time: None,
        received_at: i as i64,
        id: None,
    }
}

/// Logs `body` with `names` and `stamp` into pipeline `pipeline_id`'s lane, as `log()` does.
fn push_with(
    pipeline_id: u64,
    st: &Arc<ProcState>,
    names: (&str, &str),
    stamp: Stamp<'_>,
    body: Cow<'_, str>,
) {
    with_lane(
        pipeline_id,
        0,
        (stamp, body),
        || Arc::clone(st),
        |st, io, (stamp, body)| {
            io.check_names(names.0, names.1).expect("names");
            io.push(stamp, body, &st.pool)
        },
    )
    .expect("lane");
}

/// Body `i`: ~15 to ~600 bytes, most with multi-byte characters, so records are cut at the
/// ring's end at every offset, characters included.
fn body(i: usize) -> String {
    let fill = "é€x".repeat(i % 97);
    format!("{{\"i\":{i},\"s\":\"{fill}\"}}")
}

/// Event `i` with a short body.
fn push(pipeline_id: u64, st: &Arc<ProcState>, i: usize) {
    let b = format!("{{\"i\":{i}}}");
    push_with(pipeline_id, st, ("web", "hit"), stamp(i), Cow::Owned(b));
}

/// Short events that fill `rings` rings.
fn events_in(rings: usize) -> usize {
    rings * RING_BYTES / 30
}

fn kept_rings(pipeline_id: u64) -> usize {
    with_lane(
        pipeline_id,
        0,
        (),
        || unreachable!(),
        |_, io, ()| io.rings.kept.len(),
    )
    .unwrap()
}

fn free_bytes(pipeline_id: u64) -> usize {
    with_lane(
        pipeline_id,
        0,
        (),
        || unreachable!(),
        |_, io, ()| io.rings.ring().slots(),
    )
    .unwrap()
}

#[test]
fn one_thread_keeps_order_across_rings() {
    let st = Arc::new(ProcState::new(0, &[]));
    let mut lanes = Lanes::default();
    let n = events_in(5) + 3;
    for i in 0..n {
        push(1, &st, i);
    }
    let mut seen = Vec::new();
    let took = lanes.take_published(&st, n as u64, |e| {
        assert_eq!(e.body, format!("{{\"i\":{}}}", e.received_at));
        assert_eq!((e.namespace.as_str(), e.type_name.as_str()), ("web", "hit"));
        seen.push(e.received_at as usize);
        Some(e.body)
    });
    assert_eq!(took, n);
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
    // The bodies' buffers went back to the consumer's stash and were reused: the pool got none.
    assert_eq!(st.pool.len(), 0);
    assert_eq!(lanes.stash.len(), 1);
    // Interleaved pushes and takes cross ring boundaries in both orders.
    let mut next = n;
    let mut expect = n;
    for round in 0..50 {
        for _ in 0..(round * 701) % 9_000 {
            push(1, &st, next);
            next += 1;
        }
        lanes.take(&st, 3_700, |e| {
            assert_eq!(e.received_at as usize, expect);
            expect += 1;
            None
        });
    }
    lanes.take(&st, usize::MAX, |e| {
        assert_eq!(e.received_at as usize, expect);
        expect += 1;
        None
    });
    assert_eq!(expect, next);
}

#[test]
fn rings_are_reused_and_a_deep_backlog_spills_into_one_shot_rings() {
    let st = Arc::new(ProcState::new(0, &[]));
    let mut lanes = Lanes::default();
    let mut next = 0;
    let mut expect = 0;
    let mut check = |e: RawEvent| {
        assert_eq!(e.received_at as usize, expect);
        expect += 1;
        None
    };
    // Deeper than the kept rings hold.
    for _ in 0..events_in(MAX_KEPT + 3) {
        push(2, &st, next);
        next += 1;
    }
    lanes.take(&st, usize::MAX, &mut check);
    assert_eq!(lanes.list[0].kept.len(), MAX_KEPT);
    // Bursts of every size, taken in pieces: rings are reused, never more than kept.
    let per_ring = events_in(1) as u64;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..100 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        for _ in 0..rng % (3 * per_ring) {
            push(2, &st, next);
            next += 1;
        }
        lanes.take(
            &st,
            (rng >> 20) as usize % (2 * per_ring as usize),
            &mut check,
        );
    }
    lanes.take(&st, usize::MAX, &mut check);
    assert_eq!(expect, next);
    assert_eq!(kept_rings(2), MAX_KEPT);
    assert_eq!(lanes.list[0].kept.len(), MAX_KEPT);
}

#[test]
fn many_threads_nothing_lost_and_exited_lanes_are_removed() {
    let st = Arc::new(ProcState::new(0, &[]));
    let mut lanes = Lanes::default();
    const THREADS: usize = 8;
    const PER: usize = 10_000;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let st = Arc::clone(&st);
            std::thread::spawn(move || {
                for i in 0..PER {
                    push(7, &st, t * PER + i);
                }
            })
        })
        .collect();
    let mut seen = vec![false; THREADS * PER];
    let mut last = [None::<usize>; THREADS];
    let mut count = 0;
    let mut record = |e: RawEvent| {
        let i = e.received_at as usize;
        assert!(!seen[i], "event {i} twice");
        assert_eq!(e.body, format!("{{\"i\":{i}}}"));
        seen[i] = true;
        // Per-thread order holds.
        let t = i / PER;
        assert!(last[t].is_none_or(|p| p < i));
        last[t] = Some(i);
        count += 1;
        Some(e.body)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while handles.iter().any(|h| !h.is_finished()) {
        lanes.take(&st, 1000, &mut record);
        assert!(
            std::time::Instant::now() < deadline,
            "producers did not finish"
        );
    }
    for h in handles {
        h.join().expect("producer");
    }
    lanes.take(&st, usize::MAX, &mut record);
    assert_eq!(count, THREADS * PER);
    assert!(lanes.list.is_empty(), "{} lanes left", lanes.list.len());
}

#[test]
fn records_come_out_whole_and_in_order_across_the_rings_end() {
    let st = Arc::new(ProcState::new(0, &[]));
    let mut lanes = Lanes::default();
    let names = [("web", "page_view"), ("a", "b"), ("ns_1", "typé-1")];
    // Every field varies, so records of every length are cut at every offset of the ring.
    let id = |i: usize| (i % 5 == 0).then(|| format!("id-{i}-é"));
    let time = |i: usize| (i % 3 == 0).then_some(i as i64 * 1000 - 7);
    let which = |i: usize| names[(i / 7) % names.len()];
    let mut next = 0;
    let mut expect = 0;
    let mut check = |e: RawEvent| {
        let i = e.received_at as usize;
        assert_eq!(i, expect);
        assert_eq!(e.body, body(i), "event {i}");
        assert_eq!((e.namespace.as_str(), e.type_name.as_str()), which(i));
        assert_eq!(e.time, time(i));
        match (&e.id, id(i)) {
            (EventId::Given(got), Some(want)) => assert_eq!(got.as_str(), want),
            (EventId::Generated(_), None) => {}
            (got, want) => panic!("event {i}: id {got:?}, wanted {want:?}"),
        }
        expect += 1;
        Some(e.body)
    };
    // ~40 times round the ring, in takes of every size; owned and borrowed bodies.
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    while next < 20_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        for _ in 0..rng % 300 {
            let b = body(next);
            let given = id(next);
            let s = Stamp {
                time: time(next),
                received_at: next as i64,
                id: given.as_deref(),
            };
            if next % 3 == 0 {
                push_with(11, &st, which(next), s, Cow::Borrowed(&b));
            } else {
                push_with(11, &st, which(next), s, Cow::Owned(b));
            }
            next += 1;
        }
        lanes.take(&st, (rng >> 24) as usize % 400, &mut check);
    }
    lanes.take(&st, usize::MAX, &mut check);
    assert_eq!(expect, next);
}

#[test]
fn names_travel_only_when_they_change_and_a_refused_check_changes_nothing() {
    let st = Arc::new(ProcState::new(0, &[]));
    let mut lanes = Lanes::default();
    push(14, &st, 0);
    let after_first = free_bytes(14);
    push(14, &st, 1);
    let second = after_first - free_bytes(14);
    // The second record has no names: length, flags, received_at and its 7-byte body.
    assert_eq!(second, 4 + 1 + 8 + 7);
    // A check that fails between two events leaves the names of the last good one.
    let bad = with_lane(
        14,
        0,
        (),
        || unreachable!(),
        |_, io, ()| io.check_names("web", "no/slash"),
    );
    assert!(bad.unwrap().is_err());
    push(14, &st, 2);
    // A name checked for an event that was then not logged (its body was refused) is sent
    // with the next event that is.
    with_lane(
        14,
        0,
        (),
        || unreachable!(),
        |_, io, ()| io.check_names("other", "kind").expect("names"),
    )
    .unwrap();
    push_with(14, &st, ("other", "kind"), stamp(3), Cow::Borrowed("{}"));
    push(14, &st, 4);
    let mut seen = Vec::new();
    lanes.take(&st, usize::MAX, |e| {
        seen.push(format!("{}.{}", e.namespace, e.type_name));
        None
    });
    assert_eq!(
        seen,
        ["web.hit", "web.hit", "web.hit", "other.kind", "web.hit"]
    );
}

#[test]
fn ids_are_generated_by_the_consumer_from_received_at() {
    let st = Arc::new(ProcState::new(0, &[]));
    let mut lanes = Lanes::default();
    let at = 1_795_341_600_123_456;
    for i in 0..1000 {
        push_with(15, &st, ("web", "hit"), stamp(at + i), Cow::Borrowed("{}"));
    }
    let mut ids = std::collections::HashSet::new();
    lanes.take(&st, usize::MAX, |e| {
        let EventId::Generated(u) = e.id else {
            panic!("{:?}", e.id)
        };
        let text = crate::ids::format_uuid(u);
        assert_eq!(&text[14..15], "7", "a UUIDv7: {text}");
        // Its time is the event's received_at, to the millisecond.
        assert_eq!((u >> 80) as i64, e.received_at / 1000);
        assert!(ids.insert(u), "{text} twice");
        None
    });
    assert_eq!(ids.len(), 1000);
}

#[test]
fn a_large_body_travels_in_its_own_buffer_in_order() {
    let st = Arc::new(ProcState::new(0, &[]));
    let mut lanes = Lanes::default();
    let large = |i: usize| format!("{{\"i\":{i},\"s\":\"{}\"}}", "y".repeat(INLINE_MAX));
    let text = |i: usize| if i % 50 == 7 { large(i) } else { body(i) };
    // Nothing taken: the records go on into more rings.
    let n = 3 * RING_BYTES / 100;
    let mut own = None;
    for i in 0..n {
        let t = text(i);
        if i == 7 {
            own = Some(t.as_ptr());
        }
        if i % 100 == 57 {
            push_with(12, &st, ("web", "hit"), stamp(i), Cow::Borrowed(&t));
        } else {
            push_with(12, &st, ("web", "hit"), stamp(i), Cow::Owned(t));
        }
    }
    let mut expect = 0;
    lanes.take(&st, usize::MAX, |e| {
        assert_eq!(e.received_at as usize, expect);
        assert_eq!(e.body, text(expect));
        if expect == 7 {
            // The caller's own buffer, not a copy.
            assert_eq!(Some(e.body.as_ptr()), own);
        }
        expect += 1;
        None
    });
    assert_eq!(expect, n);
    // Taken, the rings are empty again.
    assert_eq!(free_bytes(12), RING_BYTES);
}

#[test]
fn the_scratch_buffer_stays_with_its_thread() {
    let st = Arc::new(ProcState::new(0, &[]));
    let mut lanes = Lanes::default();
    let mut buf = String::with_capacity(512);
    buf.push_str(r#"{"a":1}"#);
    let at = buf.as_ptr();
    push_with(13, &st, ("web", "hit"), stamp(0), Cow::Owned(buf));
    let scratch = with_lane(13, 0, (), || unreachable!(), |_, io, ()| io.take_scratch())
        .unwrap()
        .expect("kept");
    assert!(scratch.is_empty() && scratch.capacity() == 512 && scratch.as_ptr() == at);
    // Taken: none kept until the next body gives one back.
    let again = with_lane(13, 0, (), || unreachable!(), |_, io, ()| io.take_scratch());
    assert_eq!(again.unwrap(), None);
    let mut seen = Vec::new();
    lanes.take(&st, usize::MAX, |e| {
        seen.push(e.body.clone());
        Some(e.body)
    });
    assert_eq!(seen, [r#"{"a":1}"#]);
    // A huge buffer is not kept.
    let mut huge = String::with_capacity(super::super::POOL_MAX_CAPACITY + 1);
    huge.push_str("{}");
    push_with(13, &st, ("web", "hit"), stamp(1), Cow::Owned(huge));
    let none = with_lane(13, 0, (), || unreachable!(), |_, io, ()| io.take_scratch());
    assert_eq!(none.unwrap(), None);
}

#[test]
fn short_equality() {
    let names = [
        "",
        "a",
        "abc",
        "abcd",
        "abcdefg",
        "abcdefgh",
        "abcdefghijklmnop",
        "abcdefghijklmnopq",
    ];
    for a in names {
        for b in names {
            assert_eq!(same(a.as_bytes(), b.as_bytes()), a == b, "{a} {b}");
        }
        // One differing byte anywhere is seen.
        for i in 0..a.len() {
            let mut c = a.as_bytes().to_vec();
            c[i] ^= 1;
            assert!(!same(a.as_bytes(), &c), "{a} at {i}");
        }
    }
}

#[test]
fn names_are_checked_then_cached() {
    let st = Arc::new(ProcState::new(0, &[]));
    let r = with_lane(
        3,
        0,
        (),
        || Arc::clone(&st),
        |_, io, ()| {
            let a = io.check_names("events", "page_view").map(|()| {
                let (ns, ty) = io.names.clone().expect("kept");
                (ns.to_string(), ty.to_string())
            });
            let bad = io.check_names("events", "no/slash").unwrap_err();
            let again = io.check_names("events", "page_view").is_ok();
            (a, bad.field, again)
        },
    )
    .expect("lane");
    assert_eq!(r.0, Ok(("events".to_string(), "page_view".to_string())));
    assert_eq!(r.1, "type");
    assert!(r.2);
}
