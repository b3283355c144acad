//! Writing JSON text directly into a `String`, for code that builds event bodies and rows without
//! an intermediate `serde_json::Value` (bindings converting native values, row encoding), and
//! reading strings without copying them ([`CowStr`]).
//!
//! Strings are escaped as `serde_json` escapes them. Floats are written in ryu's shortest
//! round-trip form: the digits, and the choice between `0.00001` and `1e-7`, are those of
//! `serde_json`; a positive exponent has no `+` (`1e16`, where serde_json 1.0.15x writes `1e+16`;
//! both read back to the same bits). The `other` column keeps a binding's number text as sent,
//! so this form is what users see there. JSON has no NaN or infinities: [`push_f64`] writes
//! them as the strings `"NaN"`, `"Infinity"` and `"-Infinity"`, BigQuery's spellings for FLOAT64.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A JSON string deserialized borrowing from the input when it has no escapes (serde's own
/// `Cow<str>` always copies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CowStr<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Appends `s` as a JSON string literal (quotes included): `"`, `\` and control characters are
/// escaped; everything else is copied in runs. `s` is UTF-8 by type, so the output is too.
pub fn push_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push('"');
    // Most strings need no escape: one branch-free pass (it vectorizes), then one copy.
    let plain = !s.bytes().fold(false, |acc, b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.push_str(s);
        out.push('"');
        return;
    }
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        // Only ASCII bytes are escaped, so `start..i` always lies on char boundaries.
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            out.push_str("\\u00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends an integer.
pub fn push_i64(out: &mut String, v: i64) {
    let _ = write!(out, "{v}");
}

/// Appends a float: the shortest text that parses back to the same bits (`1.0`, `-0.0`,
/// `0.00001`, `1e-7`, `1e16`; see the module docs); NaN and ±infinity as the strings `"NaN"`,
/// `"Infinity"` and `"-Infinity"` (JSON has no such numbers; BigQuery accepts these for FLOAT64).
pub fn push_f64(out: &mut String, v: f64) {
    if v.is_finite() {
        out.push_str(ryu::Buffer::new().format_finite(v));
    } else if v.is_nan() {
        out.push_str("\"NaN\"");
    } else if v > 0.0 {
        out.push_str("\"Infinity\"");
    } else {
        out.push_str("\"-Infinity\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_serde_json() {
        for s in [
            "",
            "plain",
            "q\"b\\s/",
            "\n\r\t\u{8}\u{c}",
            "\u{0}\u{1f}\u{7f}",
            "ünï💡",
            "é✓🎉 日本",
            "\u{7f}\u{2028}",
        ] {
            let mut out = String::new();
            push_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, s);
        }
        let mut out = String::new();
        push_str(&mut out, "a\u{1}b");
        assert_eq!(out, "\"a\\u0001b\"");
    }

    fn f(v: f64) -> String {
        let mut out = String::new();
        push_f64(&mut out, v);
        out
    }

    #[test]
    fn floats_round_trip_bit_for_bit() {
        for v in [
            0.0,
            -0.0,
            1.5,
            0.1,
            1.0 / 3.0,
            123456.789,
            1e300,
            1e-300,
            -2.5e-300,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            9.223372036854776e18,
        ] {
            let text = f(v);
            let back: f64 = serde_json::from_str(&text).unwrap();
            assert_eq!(back.to_bits(), v.to_bits(), "{text}");
        }
    }

    #[test]
    fn floats_take_the_decimal_or_exponent_form_serde_json_takes() {
        // Integers as floats keep `.0`, negative zero its sign; an exponent below 1e-5 and from
        // 1e16, as serde_json (Rust's `{:?}` writes `1e-5` for 1e-5..1e-4). Positive exponents
        // have no `+`: the `other` column keeps this text, and the bindings' tests assert it.
        for (v, want) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (-7.0, "-7.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e16"),
            (1e-5, "0.00001"),
            (1.5e-5, "0.000015"),
            (1e-7, "1e-7"),
            (1e300, "1e300"),
            (9.223372036854776e18, "9.223372036854776e18"),
        ] {
            assert_eq!(f(v), want, "{v:?}");
            let theirs = serde_json::to_string(&v).unwrap().replace("e+", "e");
            assert_eq!(f(v), theirs, "{v:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_finite_float_round_trips(v in proptest::num::f64::ANY) {
            proptest::prop_assume!(v.is_finite());
            let text = f(v);
            let back: f64 = serde_json::from_str(&text).unwrap();
            proptest::prop_assert_eq!(back.to_bits(), v.to_bits(), "{}", text);
        }
    }

    #[test]
    fn non_finite_floats_are_bigquery_strings() {
        assert_eq!(f(f64::NAN), "\"NaN\"");
        assert_eq!(f(-f64::NAN), "\"NaN\"");
        assert_eq!(f(f64::INFINITY), "\"Infinity\"");
        assert_eq!(f(f64::NEG_INFINITY), "\"-Infinity\"");
    }

    #[test]
    fn integers() {
        for (v, want) in [
            (0, "0"),
            (-7, "-7"),
            (i64::MAX, "9223372036854775807"),
            (i64::MIN, "-9223372036854775808"),
        ] {
            let mut out = String::new();
            push_i64(&mut out, v);
            assert_eq!(out, want);
        }
    }
}
