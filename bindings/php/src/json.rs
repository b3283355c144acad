//! JSON text writing without PHP: string escaping and number formatting.
//!
//! Kept free of ext-php-rs types so `cargo test` covers it without a PHP runtime.

use std::fmt::Write as _;

/// Appends `s` as a JSON string literal (quotes included). `s` is valid UTF-8 by type, so the
/// output is too; control characters, `"` and `\` are escaped, everything else is copied in runs.
pub fn push_str(out: &mut String, s: &str) {
    evlog_core::json::push_str(out, s);
}

/// Appends an integer.
pub fn push_i64(out: &mut String, v: i64) {
    let _ = write!(out, "{v}");
}

/// Appends a float. JSON has no NaN or infinities: they become the strings `"NaN"`,
/// `"Infinity"` and `"-Infinity"` (the spellings BigQuery accepts for FLOAT64).
pub fn push_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("\"NaN\"");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        });
    } else {
        // Debug is the shortest text that round-trips, with an exponent for very large or
        // small magnitudes ("1e300"), and always a valid JSON number for finite values.
        let _ = write!(out, "{v:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        let mut out = String::new();
        push_str(&mut out, v);
        out
    }

    #[test]
    fn strings_round_trip_through_serde_json() {
        for v in [
            "",
            "plain",
            "quote\" back\\slash",
            "ctl \u{0}\u{1}\u{1f}\n\r\t\u{8}\u{c}",
            "unicode é 日本 🎉",
            "\u{7f}\u{2028}",
        ] {
            let text = s(v);
            let back: String = serde_json::from_str(&text).unwrap();
            assert_eq!(back, v, "{text}");
        }
        assert_eq!(s("a\u{1}b"), "\"a\\u0001b\"");
    }

    #[test]
    fn floats_are_json_numbers_or_named_strings() {
        let f = |v: f64| {
            let mut out = String::new();
            push_f64(&mut out, v);
            out
        };
        assert_eq!(f(f64::NAN), "\"NaN\"");
        assert_eq!(f(f64::INFINITY), "\"Infinity\"");
        assert_eq!(f(f64::NEG_INFINITY), "\"-Infinity\"");
        for v in [
            0.0,
            -0.0,
            1.5,
            1e300,
            1e-300,
            123456.789,
            f64::MAX,
            f64::MIN_POSITIVE,
        ] {
            let text = f(v);
            let back: f64 = serde_json::from_str(&text).unwrap();
            assert_eq!(back.to_bits(), v.to_bits(), "{text}");
        }
    }
}
