//! Ingest-side envelope parsing without `serde_json::Value` trees.
//!
//! An envelope is read as its top-level keys with *raw* (unparsed, borrowed) values, so the
//! `event` object is only skipped over here; core's [`Processor`](evlog_core::ingest::Processor)
//! parses it once, at ingest, and the write-ahead log keeps the converted row.
//!
//! The rules are core's [`Envelope::from_value`]: when the fast path finds anything it does not
//! accept (a missing or non-string name, an unknown key, a non-object event...), the envelope is
//! rebuilt as a `Value` and handed to core, so errors (field, rule, message) are core's own.

use std::borrow::Cow;
use std::fmt;

use evlog_core::envelope::{self, EnvelopeError};
use evlog_core::json::CowStr;
use evlog_core::Envelope;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// One element of a request: an object's keys with raw values, or a JSON value of another kind.
#[derive(Debug)]
pub enum RawEnvelope<'a> {
    /// An object.
    Object(Fields<'a>),
    /// Not an object; its JSON kind for the error message.
    Other(&'static str),
}

/// Names of the envelope's keys, in [`Fields::known`] order.
const KNOWN: [&str; 5] = ["namespace", "type", "time", "id", "event"];

/// An envelope object's keys with raw values: the known ones in fixed slots (a repeated key: the
/// last wins, as in a `Value` map), anything else kept aside (no allocation unless there is).
#[derive(Debug, Default)]
pub struct Fields<'a> {
    known: [Option<&'a RawValue>; 5],
    other: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'de> Deserialize<'de> for RawEnvelope<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawEnvelope<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an envelope object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut fields = Fields::default();
                while let Some(CowStr(k)) = m.next_key::<CowStr<'de>>()? {
                    let v: &'de RawValue = m.next_value()?;
                    match KNOWN.iter().position(|n| *n == k) {
                        Some(i) => fields.known[i] = Some(v),
                        None => fields.other.push((k, v)),
                    }
                }
                Ok(RawEnvelope::Object(fields))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(RawEnvelope::Other("an array"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(RawEnvelope::Other("null"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(RawEnvelope::Other("a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(RawEnvelope::Other("a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(RawEnvelope::Other("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(RawEnvelope::Other("a number"))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(RawEnvelope::Other("a string"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A checked envelope borrowing from the request body where it can.
#[derive(Debug)]
pub struct Checked<'a> {
    /// Namespace (checked).
    pub namespace: Cow<'a, str>,
    /// Type (checked).
    pub type_name: Cow<'a, str>,
    /// Event time (µs), if given.
    pub time: Option<i64>,
    /// Event id (checked), if given.
    pub id: Option<Cow<'a, str>>,
    /// The event object's JSON text.
    pub event: Cow<'a, str>,
}

fn is_null(v: &RawValue) -> bool {
    v.get() == "null"
}

fn string(v: &RawValue) -> Option<Cow<'_, str>> {
    if !v.get().starts_with('"') {
        return None;
    }
    serde_json::from_str::<CowStr<'_>>(v.get())
        .ok()
        .map(|s| s.0)
}

impl<'a> RawEnvelope<'a> {
    /// Checks the envelope by core's rules (see the module docs).
    pub fn check(self) -> Result<Checked<'a>, EnvelopeError> {
        let fields = match self {
            RawEnvelope::Object(f) => f,
            RawEnvelope::Other(kind) => {
                return Err(EnvelopeError {
                    field: "envelope",
                    rule: format!("must be a JSON object, got {kind}"),
                })
            }
        };
        match fast(&fields) {
            Some(c) => Ok(c),
            None => slow(&fields),
        }
    }
}

/// The accepted cases, or `None` for anything core would refuse (or that needs a closer look).
fn fast<'a>(fields: &Fields<'a>) -> Option<Checked<'a>> {
    if !fields.other.is_empty() {
        return None;
    }
    let [ns, ty, time, id, event] = fields.known;
    let namespace = string(ns?)?;
    envelope::check_namespace(&namespace).ok()?;
    let type_name = string(ty?)?;
    envelope::check_type(&type_name).ok()?;
    let time = match time {
        None => None,
        Some(v) if is_null(v) => None,
        Some(v) => {
            let value: Value = serde_json::from_str(v.get()).ok()?;
            Some(envelope::parse_time_value(&value).ok()?)
        }
    };
    let id = match id {
        None => None,
        Some(v) if is_null(v) => None,
        Some(v) => {
            let s = string(v)?;
            envelope::check_id(&s).ok()?;
            Some(s)
        }
    };
    let event = event?;
    if !event.get().starts_with('{') {
        return None;
    }
    Some(Checked {
        namespace,
        type_name,
        time,
        id,
        event: Cow::Borrowed(event.get()),
    })
}

/// Core's verdict on the envelope rebuilt as a `Value`.
fn slow<'a>(fields: &Fields<'a>) -> Result<Checked<'a>, EnvelopeError> {
    let mut map = Map::new();
    let known = KNOWN
        .iter()
        .zip(fields.known)
        .filter_map(|(k, v)| Some((Cow::Borrowed(*k), v?)));
    for (k, v) in known.chain(fields.other.iter().cloned()) {
        let value: Value = if k == "event" && v.get().starts_with('{') {
            // Core only checks that the event is an object; its text goes on as sent below (a
            // `Value` would turn an integer beyond 64 bits into a double).
            Value::Object(Map::new())
        } else {
            // The body parsed already, so every raw value is valid JSON.
            serde_json::from_str(v.get()).unwrap_or(Value::Null)
        };
        map.insert(k.to_string(), value);
    }
    let env = Envelope::from_value(Value::Object(map))?;
    let event = match fields.known[4] {
        Some(raw) => Cow::Borrowed(raw.get()),
        None => Cow::Owned(Value::Object(env.event).to_string()),
    };
    Ok(Checked {
        namespace: Cow::Owned(env.namespace),
        type_name: Cow::Owned(env.type_name),
        time: env.time,
        id: env.id.map(Cow::Owned),
        event,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// namespace, type, time, id, event.
    type Parts<E> = (String, String, Option<i64>, Option<String>, E);

    fn check(text: &str) -> Result<Parts<String>, String> {
        let raw: RawEnvelope<'_> = serde_json::from_str(text).expect("json");
        raw.check()
            .map(|c| {
                (
                    c.namespace.into_owned(),
                    c.type_name.into_owned(),
                    c.time,
                    c.id.map(Cow::into_owned),
                    c.event.into_owned(),
                )
            })
            .map_err(|e| e.to_string())
    }

    fn core(text: &str) -> Result<Parts<Value>, String> {
        let v: Value = serde_json::from_str(text).expect("json");
        Envelope::from_value(v)
            .map(|e| {
                (
                    e.namespace,
                    e.type_name,
                    e.time,
                    e.id,
                    Value::Object(e.event),
                )
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn agrees_with_core_on_good_and_bad_envelopes() {
        let cases = [
            json!({"namespace": "events", "type": "transaction", "event": {"a": 1}}).to_string(),
            json!({"namespace": "events", "type": "t", "time": 1763800000000i64, "id": "x-1", "event": {}}).to_string(),
            json!({"namespace": "events", "type": "t", "time": "2026-11-22T10:00:00Z", "event": {"n": [1, {"b": null}]}}).to_string(),
            json!({"namespace": "events", "type": "t", "time": null, "id": null, "event": {}}).to_string(),
            r#"{"namespace": "ev\u0065nts", "type": "t", "event": {"a": "x\"y"}}"#.to_string(),
            r#"{"namespace": "a", "namespace": "b", "type": "t", "event": {}}"#.to_string(),
            json!({"type": "t", "event": {}}).to_string(),
            json!({"namespace": null, "type": "t", "event": {}}).to_string(),
            json!({"namespace": 3, "type": "t", "event": {}}).to_string(),
            json!({"namespace": "a b", "type": "t", "event": {}}).to_string(),
            json!({"namespace": "a", "type": "", "event": {}}).to_string(),
            json!({"namespace": "a", "type": "t", "time": "yesterday", "event": {}}).to_string(),
            json!({"namespace": "a", "type": "t", "time": 1e300, "event": {}}).to_string(),
            json!({"namespace": "a", "type": "t", "time": true, "event": {}}).to_string(),
            json!({"namespace": "a", "type": "t", "id": "", "event": {}}).to_string(),
            json!({"namespace": "a", "type": "t", "id": 5, "event": {}}).to_string(),
            json!({"namespace": "a", "type": "t"}).to_string(),
            json!({"namespace": "a", "type": "t", "event": [1]}).to_string(),
            json!({"namespace": "a", "type": "t", "event": "{}"}).to_string(),
            json!({"namespace": "a", "type": "t", "event": {}, "evnet": {}}).to_string(),
            "[1, 2]".to_string(),
            "null".to_string(),
            "7".to_string(),
            "\"s\"".to_string(),
            "false".to_string(),
        ];
        for text in cases {
            let ours = check(&text);
            let theirs = core(&text);
            match (&ours, &theirs) {
                (Ok(o), Ok(t)) => {
                    assert_eq!((&o.0, &o.1, o.2, &o.3), (&t.0, &t.1, t.2, &t.3), "{text}");
                    let ev: Value = serde_json::from_str(&o.4).expect("event json");
                    assert_eq!(ev, t.4, "{text}");
                }
                (Err(o), Err(t)) => assert_eq!(o, t, "{text}"),
                _ => panic!("{text}: ours {ours:?}, core {theirs:?}"),
            }
        }
    }
}
