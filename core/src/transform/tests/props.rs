//! Properties on arbitrary events and rules: `drop` leaves no such path, nothing panics.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

use super::*;
use crate::transform::path::{self, Path, Seg};

/// Any JSON, with keys from a small alphabet so that paths often hit.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z0-9@.: é-]{0,16}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map("[abc]", inner, 1..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn event() -> impl Strategy<Value = Map<String, Value>> {
    btree_map("[abc]", json(), 1..6).prop_map(|m| m.into_iter().collect())
}

fn seg() -> impl Strategy<Value = Seg> {
    prop_oneof![
        "[abc]".prop_map(|k| Seg::Key(k.into())),
        (0usize..3).prop_map(Seg::Index),
        Just(Seg::Each),
    ]
}

/// A path's text: a key, then any steps.
fn path_text() -> impl Strategy<Value = String> {
    ("[abc]", vec(seg(), 0..3)).prop_map(|(first, rest)| {
        let mut segs = vec![Seg::Key(first.into())];
        segs.extend(rest);
        Path { segs: segs.into() }.to_string()
    })
}

/// How many values `text` names in `v`.
fn locations(v: &mut Value, text: &str) -> usize {
    let p = Path::parse(text).unwrap();
    let mut n = 0;
    path::for_each(v, &p.segs, &mut |_| {}, &mut |_| n += 1);
    n
}

/// One rule as an entry of its own: `kind` picks the rule.
fn entry(kind: u8, a: &str, b: &str, n: u8) -> TransformConfig {
    let mut e = TransformConfig {
        tables: vec!["*".into()],
        ..TransformConfig::default()
    };
    match kind % 9 {
        0 => drop(e.rename.insert(a.into(), b.into())),
        1 => drop(e.copy.insert(a.into(), b.into())),
        2 => drop(e.set.insert(a.into(), json!({"n": n}))),
        3 => drop(e.default.insert(a.into(), json!([n]))),
        4 => e.hash.push(a.into()),
        5 => drop(e.mask.insert(a.into(), json!(n % 6))),
        6 => drop(e.truncate.insert(a.into(), json!(n % 6 + 1))),
        7 => drop(
            e.redact
                .insert(a.into(), json!(["email", "ipv4", "ipv6", "card"])),
        ),
        _ => e.drop.push(a.into()),
    }
    e
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// After `drop`, the path names nothing (a path ending in `[N]` names the next element
    /// after the shift, so it is left out).
    #[test]
    fn drop_leaves_no_such_path(event in event(), text in path_text()) {
        prop_assume!(!text.ends_with(']') || text.ends_with("[]"));
        let set = TransformSet::compile(&[entry(8, &text, "", 0)], env).unwrap();
        let mut m = event;
        set.apply("events", "page_view", None, &mut m);
        let mut v = Value::Object(m);
        prop_assert_eq!(locations(&mut v, &text), 0, "{} still in {}", text, v);
    }

    /// Any rules on any event: no panic, and the same result every time (hashing is keyed,
    /// nothing is random).
    #[test]
    fn arbitrary_rules_never_panic(
        event in event(),
        rules in vec((any::<u8>(), path_text(), path_text(), any::<u8>()), 1..8),
    ) {
        // Keep the rules that compile alone (rename/copy shapes refuse some pairs).
        let entries: Vec<_> = rules
            .iter()
            .map(|(k, a, b, n)| entry(*k, a, b, *n))
            .filter(|e| TransformSet::compile(std::slice::from_ref(e), env).is_ok())
            .collect();
        let set = TransformSet::compile(&entries, env).unwrap();
        for dest in [None, Some("live")] {
            let (mut m1, mut m2) = (event.clone(), event.clone());
            let a1 = set.apply("events", "page_view", dest, &mut m1);
            let a2 = set.apply("events", "page_view", dest, &mut m2);
            prop_assert_eq!((m1, a1), (m2, a2));
        }
    }

    /// The scanners on any text: no panic, and markers only where text was replaced.
    #[test]
    fn redact_never_panics(s in prop_oneof![any::<String>(), "[0-9a-f.:@ é-]{0,40}"]) {
        let mut p = redact::Patterns::default();
        for n in redact::NAMES {
            p.add(n);
        }
        if let Some(out) = p.redact(&s) {
            prop_assert!(out != s);
        }
    }

    /// Path text never panics the parser, and what parses writes back to itself.
    #[test]
    fn paths_parse_or_refuse(s in prop_oneof![any::<String>(), "[ab.\\[\\]0-9\"\\\\]{0,12}"]) {
        if let Ok(p) = Path::parse(&s) {
            prop_assert_eq!(Path::parse(&p.to_string()), Ok(p));
        }
    }

    /// Globs never panic on any text.
    #[test]
    fn globs_never_panic(g in "[a-z*?.]{0,8}", ns in "[a-z]{0,6}", ty in "[a-zé]{0,6}") {
        if let Ok(glob) = glob::TableGlob::parse(&g) {
            let _ = glob.matches(&ns, &ty);
        }
    }
}
