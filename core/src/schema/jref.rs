//! A JSON value that borrows from the text it was parsed from: what row conversion reads.
//!
//! Parsing an event into `serde_json::Value` allocates a `String` per key and per string and a
//! B-tree per object, and conversion then moves and frees all of it; that was most of the cost
//! of an event in the collector and in the SDK's flush thread. [`JRef`] borrows every string
//! that has no escape, and an object is a `Vec` of pairs.
//!
//! Contract: an object's members are kept in the order of the text, duplicates included; what
//! reads them gives the meaning `serde_json::Map` (a `BTreeMap`) gives the same text: the last
//! of duplicate keys wins ([`get`], [`sorted`]), and [`JRef::write_compact`] writes members
//! sorted by key, without duplicates — the text `serde_json::to_string` writes for the `Value`.
//! Sorting is left to the writer because rows rarely carry objects that are written out whole
//! (leftovers in `other`, JSON columns, error excerpts).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::json::CowStr;

/// A borrowed JSON value (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JRef<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<JRef<'a>>),
    Object(Obj<'a>),
}

/// Object members in the order of the text (see the module docs).
pub(crate) type Obj<'a> = Vec<(Cow<'a, str>, JRef<'a>)>;

impl<'a> JRef<'a> {
    /// Borrows a `serde_json::Value` (its maps are already sorted and unique).
    pub(crate) fn from_value(v: &'a Value) -> Self {
        match v {
            Value::Null => JRef::Null,
            Value::Bool(b) => JRef::Bool(*b),
            Value::Number(n) => JRef::Number(n.clone()),
            Value::String(s) => JRef::String(Cow::Borrowed(s)),
            Value::Array(a) => JRef::Array(a.iter().map(JRef::from_value).collect()),
            Value::Object(m) => JRef::Object(obj_from_map(m)),
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self, JRef::Null)
    }

    /// Appends the compact JSON text of the value (as `serde_json::to_string` of the `Value`).
    pub(crate) fn write_compact(&self, out: &mut String) {
        self.write_compact_bounded(out, usize::MAX);
    }

    /// As [`write_compact`](Self::write_compact), but stops (returning false) once `out` is
    /// longer than `limit`: for excerpts of values that may be huge.
    pub(crate) fn write_compact_bounded(&self, out: &mut String, limit: usize) -> bool {
        if out.len() > limit {
            return false;
        }
        match self {
            JRef::Null => out.push_str("null"),
            JRef::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            JRef::Number(n) => {
                let _ = fmt::Write::write_fmt(out, format_args!("{n}"));
            }
            JRef::String(s) => {
                let room = limit.saturating_sub(out.len());
                if s.len() > room {
                    // Only as much as can show: a megabyte string costs no more than a short one.
                    let mut cut = room.min(s.len());
                    while !s.is_char_boundary(cut) {
                        cut += 1;
                    }
                    crate::json::push_str(out, &s[..cut]);
                    return false;
                }
                crate::json::push_str(out, s);
            }
            JRef::Array(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if !v.write_compact_bounded(out, limit) {
                        return false;
                    }
                }
                out.push(']');
            }
            JRef::Object(o) => return write_object_bounded(o, out, limit),
        }
        true
    }
}

/// Appends the compact JSON text of an object.
pub(crate) fn write_object(o: &[(Cow<'_, str>, JRef<'_>)], out: &mut String) {
    write_object_bounded(o, out, usize::MAX);
}

fn write_object_bounded(o: &[(Cow<'_, str>, JRef<'_>)], out: &mut String, limit: usize) -> bool {
    out.push('{');
    let mut first = true;
    let mut member = |k: &str, v: &JRef<'_>, out: &mut String| {
        if !std::mem::take(&mut first) {
            out.push(',');
        }
        if out.len() > limit {
            return false;
        }
        crate::json::push_str(out, k);
        out.push(':');
        v.write_compact_bounded(out, limit)
    };
    if is_sorted_unique(o) {
        for (k, v) in o {
            if !member(k, v, out) {
                return false;
            }
        }
    } else {
        for i in sorted_order(o) {
            if !member(&o[i].0, &o[i].1, out) {
                return false;
            }
        }
    }
    out.push('}');
    true
}

fn is_sorted_unique(o: &[(Cow<'_, str>, JRef<'_>)]) -> bool {
    o.windows(2).all(|w| w[0].0 < w[1].0)
}

/// Member positions sorted by key, the last of duplicates only.
fn sorted_order(o: &[(Cow<'_, str>, JRef<'_>)]) -> Vec<usize> {
    let mut ix: Vec<usize> = (0..o.len()).collect();
    // Stable: duplicates keep their text order, so the last of a run is the last in the text.
    ix.sort_by(|&a, &b| o[a].0.cmp(&o[b].0));
    let mut out: Vec<usize> = Vec::with_capacity(ix.len());
    for i in ix {
        match out.last_mut() {
            Some(last) if o[*last].0 == o[i].0 => *last = i,
            _ => out.push(i),
        }
    }
    out
}

/// Borrows a `serde_json::Map`.
pub(crate) fn obj_from_map(m: &Map<String, Value>) -> Obj<'_> {
    m.iter()
        .map(|(k, v)| (Cow::Borrowed(k.as_str()), JRef::from_value(v)))
        .collect()
}

/// The member `key` (the last, if the key is repeated).
pub(crate) fn get<'o, 'a>(o: &'o [(Cow<'a, str>, JRef<'a>)], key: &str) -> Option<&'o JRef<'a>> {
    o.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// The members sorted by key, the last of duplicates only (what a `serde_json::Map` holds).
pub(crate) fn sorted(o: Obj<'_>) -> Obj<'_> {
    if is_sorted_unique(&o) {
        return o;
    }
    let order = sorted_order(&o);
    let mut slots: Vec<Option<(Cow<'_, str>, JRef<'_>)>> = o.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

impl<'de> Deserialize<'de> for JRef<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JRef<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any valid JSON value")
            }
            fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
                Ok(JRef::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
                Ok(JRef::Number(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
                Ok(JRef::Number(n.into()))
            }
            fn visit_f64<E>(self, x: f64) -> Result<Self::Value, E> {
                // As serde_json's `Value`: a non-finite float becomes null.
                Ok(Number::from_f64(x).map_or(JRef::Null, JRef::Number))
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(JRef::String(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(JRef::String(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(JRef::String(Cow::Owned(s)))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(JRef::Null)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(JRef::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                JRef::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(v) = seq.next_element()? {
                    out.push(v);
                }
                Ok(JRef::Array(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out: Obj<'de> = Vec::with_capacity(map.size_hint().unwrap_or(8).min(4096));
                while let Some(CowStr(k)) = map.next_key()? {
                    out.push((k, map.next_value()?));
                }
                Ok(JRef::Object(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same text parsed both ways writes the same compact JSON, and the objects agree with
    /// `serde_json::Map` (order, duplicates).
    #[test]
    fn agrees_with_serde_json_value() {
        for text in [
            r#"{"b":1,"a":[true,false,null],"c":{"z":"x\"y","y":-0.5,"x":1e300}}"#,
            r#"{"k":1,"k":2,"a":{"d":1,"d":{"e":3}}}"#,
            r#"{"ü":"\u00fc\n\t\u0001","u":"💡","":18446744073709551615,"n":-9223372036854775808}"#,
            r#"[1.0,0.1,1.7976931348623157e308,5e-324,123456789012345678901234567890,-0.0]"#,
            r#""plain""#,
            r#"{"B":1,"a":2,"_":3,"A":4,"b":{"y":[{"q":1,"p":2}]}}"#,
            "{}",
            "[]",
        ] {
            let value: Value = serde_json::from_str(text).unwrap();
            let jref: JRef<'_> = serde_json::from_str(text).unwrap();
            let mut out = String::new();
            jref.write_compact(&mut out);
            assert_eq!(out, serde_json::to_string(&value).unwrap(), "{text}");
            let mut borrowed = String::new();
            JRef::from_value(&value).write_compact(&mut borrowed);
            assert_eq!(borrowed, out, "{text}");
            if let (JRef::Object(o), Value::Object(m)) = (jref, &value) {
                let keys: Vec<String> =
                    sorted(o).into_iter().map(|(k, _)| k.into_owned()).collect();
                assert!(keys.iter().eq(m.keys()), "{text}");
            }
        }
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let text = r#"{"plain":"abc","esc":"a\nb"}"#;
        let JRef::Object(o) = serde_json::from_str::<JRef<'_>>(text).unwrap() else {
            panic!("object")
        };
        assert!(matches!(
            get(&o, "plain"),
            Some(JRef::String(Cow::Borrowed("abc")))
        ));
        assert!(matches!(get(&o, "esc"), Some(JRef::String(Cow::Owned(s))) if s == "a\nb"));
        assert!(o.iter().all(|(k, _)| matches!(k, Cow::Borrowed(_))));
    }

    #[test]
    fn get_and_sorted_take_the_last_duplicate() {
        let text = r#"{"b":1,"a":2,"b":3}"#;
        let JRef::Object(o) = serde_json::from_str::<JRef<'_>>(text).unwrap() else {
            panic!("object")
        };
        assert_eq!(get(&o, "b"), Some(&JRef::Number(3.into())));
        let s = sorted(o);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0], (Cow::Borrowed("a"), JRef::Number(2.into())));
        assert_eq!(s[1], (Cow::Borrowed("b"), JRef::Number(3.into())));
    }
}
