//! Writing JSON text directly into a `String`, for code that builds event bodies and rows without
//! an intermediate `serde_json::Value` (bindings converting native values, row encoding), and
//! reading strings without copying them ([`CowStr`]).
//!
//! Strings are escaped as `serde_json` escapes them. Floats are written in the shortest
//! round-trip form (zmij's, the same text as ryu's, which the tests check): the digits, and the
//! choice between `0.00001` and `1e-7`, are those of `serde_json`; a positive exponent has no `+`
//! (`1e16`, where serde_json 1.0.15x writes `1e+16`; both read back to the same bits). The `other` column keeps a binding's number text as sent,
//! so this form is what users see there. JSON has no NaN or infinities: [`push_f64`] writes
//! them as the strings `"NaN"`, `"Infinity"` and `"-Infinity"`, BigQuery's spellings for FLOAT64.

use std::borrow::Cow;
use std::fmt;

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
    // A `&str` is UTF-8 already: nothing is checked, so nothing can be refused.
    let _ = push_escaped(out, s.as_bytes(), false);
}

/// Appends an object member's name: `,` when `comma`, then `bytes` as a JSON string literal (as
/// [`push_utf8`], UTF-8 checked in the same pass), then `:`. On an error `out` is left as it was.
/// One call instead of three: a binding writes one per field, and most names are short.
pub fn push_utf8_key(out: &mut String, bytes: &[u8], comma: bool) -> Result<(), InvalidUtf8> {
    push_key(out, bytes, comma, true).map_err(|valid_up_to| InvalidUtf8 { valid_up_to })
}

/// [`push_utf8_key`] for a name that is UTF-8 by type (nothing to check, nothing refused).
pub fn push_str_key(out: &mut String, s: &str, comma: bool) {
    let _ = push_key(out, s.as_bytes(), comma, false);
}

#[inline(always)]
fn push_key(out: &mut String, bytes: &[u8], comma: bool, validate: bool) -> Result<(), usize> {
    let entry_len = out.len();
    // SAFETY: only ASCII is pushed here, and push_short writes `bytes` only once they were found
    // to be plain ASCII; push_scanned keeps its own invariant (see there).
    #[allow(unsafe_code)]
    let v = unsafe { out.as_mut_vec() };
    if push_short(v, bytes, validate, comma, true) {
        return Ok(());
    }
    if comma {
        v.push(b',');
    }
    if let Err(at) = push_scanned(out, bytes, validate) {
        out.truncate(entry_len);
        return Err(at);
    }
    out.push(':');
    Ok(())
}

/// Longest string [`push_short`] takes.
const SHORT: usize = 16;

/// The common case in one store: `bytes` of at most [`SHORT`] plain ASCII bytes (nothing to
/// escape, and nothing to check when `validate`) written as `[,]"bytes"[:]` through a fixed-size
/// copy into `v`'s spare room, instead of a capacity check per piece. Returns false, having
/// written nothing, for anything else.
#[inline(always)]
fn push_short(v: &mut Vec<u8>, bytes: &[u8], validate: bool, comma: bool, colon: bool) -> bool {
    const SPACES: u64 = LO * 0x20;
    let n = bytes.len();
    if n > SHORT {
        return false;
    }
    let (head, tail) = if n >= 8 {
        (word8(&bytes[..8]), word8(&bytes[n - 8..]))
    } else if n > 0 {
        (tail_word(bytes), SPACES)
    } else {
        (SPACES, SPACES)
    };
    if attention(head, validate) | attention(tail, validate) != 0 {
        return false;
    }
    let mut buf = [0u8; SHORT + 4];
    let mut k = usize::from(comma);
    buf[0] = b',';
    buf[k] = b'"';
    k += 1;
    // Two stores that overlap in the middle cover any length of their range.
    if n >= 8 {
        buf[k..k + 8].copy_from_slice(&bytes[..8]);
        buf[k + n - 8..k + n].copy_from_slice(&bytes[n - 8..]);
    } else if n >= 4 {
        buf[k..k + 4].copy_from_slice(&bytes[..4]);
        buf[k + n - 4..k + n].copy_from_slice(&bytes[n - 4..]);
    } else if n >= 2 {
        buf[k..k + 2].copy_from_slice(&bytes[..2]);
        buf[k + n - 2..k + n].copy_from_slice(&bytes[n - 2..]);
    } else if n == 1 {
        buf[k] = bytes[0];
    }
    k += n;
    buf[k] = b'"';
    k += 1;
    buf[k] = b':';
    k += usize::from(colon);
    v.reserve(buf.len());
    let len = v.len();
    // SAFETY: `reserve` made room for `buf.len()` bytes past `len`; the first `k` of them are
    // initialised by the copy, and `k <= buf.len()`.
    #[allow(unsafe_code)]
    unsafe {
        std::ptr::copy_nonoverlapping(buf.as_ptr(), v.as_mut_ptr().add(len), buf.len());
        v.set_len(len + k);
    }
    true
}

/// Eight bytes as one little-endian word.
#[inline(always)]
fn word8(s: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[..8]);
    u64::from_le_bytes(w)
}

/// Bytes that are not UTF-8, found by [`push_utf8`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8 {
    /// Offset of the first byte of the first invalid sequence: what
    /// [`std::str::Utf8Error::valid_up_to`] reports for the same bytes.
    pub valid_up_to: usize,
}

/// Appends `bytes` as a JSON string literal, as [`push_str`] does, checking in the same pass that
/// they are UTF-8 (for bindings whose strings are bytes: one pass instead of `from_utf8` and then
/// [`push_str`]). On an error `out` is left as it was.
pub fn push_utf8(out: &mut String, bytes: &[u8]) -> Result<(), InvalidUtf8> {
    push_escaped(out, bytes, true).map_err(|valid_up_to| InvalidUtf8 { valid_up_to })
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;
/// [`ESCAPE`]'s mark for a byte of a multi-byte character.
const NON_ASCII: u8 = 1;

/// Per byte: `0` copied as is, [`NON_ASCII`], or the character after the `\` of its escape
/// (`u` for `\u00XX`).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b'u';
        b += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    let mut b = 0x80;
    while b < 0x100 {
        t[b] = NON_ASCII;
        b += 1;
    }
    t
};

/// Flags (bit 7 of each byte) the bytes of `w` that need attention: control characters, `"`, `\`,
/// and bytes >= 0x80 when `validate`. Zero means none does; the lowest flag is exact (the ones
/// above it may be false, through borrows), which is all the caller uses.
#[inline(always)]
fn attention(w: u64, validate: bool) -> u64 {
    // Bit Twiddling Hacks' "has a byte less than n" and "has a zero byte" words.
    let below_0x20 = w.wrapping_sub(LO * 0x20) & !w;
    let q = w ^ (LO * u64::from(b'"'));
    let quote = q.wrapping_sub(LO) & !q;
    let s = w ^ (LO * u64::from(b'\\'));
    let backslash = s.wrapping_sub(LO) & !s;
    let non_ascii = if validate { w } else { 0 };
    (below_0x20 | quote | backslash | non_ascii) & HI
}

/// The 1 to 7 bytes of `s` in one word, for [`attention`] (some twice, spaces for the rest):
/// short strings, most keys, are checked at once instead of byte by byte.
#[inline(always)]
fn tail_word(s: &[u8]) -> u64 {
    const SPACES: u64 = LO * 0x20;
    let n = s.len();
    if n >= 4 {
        let lo = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
        let hi = u32::from_le_bytes([s[n - 4], s[n - 3], s[n - 2], s[n - 1]]);
        u64::from(lo) | u64::from(hi) << 32
    } else if n >= 2 {
        let lo = u16::from_le_bytes([s[0], s[1]]);
        let hi = u16::from_le_bytes([s[n - 2], s[n - 1]]);
        SPACES << 32 | u64::from(hi) << 16 | u64::from(lo)
    } else {
        SPACES << 8 | u64::from(s[0])
    }
}

/// The body of [`push_str`] and [`push_utf8`]: [`push_short`] when it takes the string, else
/// [`push_scanned`].
#[inline(always)]
fn push_escaped(out: &mut String, bytes: &[u8], validate: bool) -> Result<(), usize> {
    // SAFETY: push_short writes `bytes` only once they were found to be plain ASCII.
    #[allow(unsafe_code)]
    if push_short(unsafe { out.as_mut_vec() }, bytes, validate, false, false) {
        return Ok(());
    }
    push_scanned(out, bytes, validate)
}

/// Scans eight bytes at a time while none needs attention (plain ASCII, the common case),
/// copies runs with one `extend_from_slice`, escapes what JSON requires and, when `validate`,
/// checks each multi-byte character. Errs with the offset of the first invalid sequence, `out`
/// restored.
#[inline(always)]
fn push_scanned(out: &mut String, bytes: &[u8], validate: bool) -> Result<(), usize> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let entry_len = out.len();
    // SAFETY: `out` holds UTF-8 at every point, even if this unwinds: only ASCII is pushed, and
    // bytes of `bytes` only as runs `run..i` whose every character was checked (`validate`) or
    // came from a `&str` (not `validate`), `i` being a character start (the scan and the escapes
    // stop only on ASCII bytes; the checker steps over whole characters). On an error the
    // vector is cut back to its length at entry, a character boundary of a `String`.
    #[allow(unsafe_code)]
    let v = unsafe { out.as_mut_vec() };
    v.reserve(bytes.len() + 2);
    v.push(b'"');
    let n = bytes.len();
    let mut run = 0; // the first byte not yet copied
    let mut i = 0;
    while i < n {
        if let Some(chunk) = bytes.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let m = attention(u64::from_le_bytes(word), validate);
            if m == 0 {
                i += 8;
                continue;
            }
            i += (m.trailing_zeros() / 8) as usize;
        } else if attention(tail_word(&bytes[i..]), validate) == 0 {
            break; // the last one to seven bytes are plain
        }
        let b = bytes[i];
        match ESCAPE[b as usize] {
            0 => i += 1,
            NON_ASCII if !validate => i += 1,
            NON_ASCII => match utf8_char_len(&bytes[i..]) {
                Some(len) => i += len,
                None => {
                    v.truncate(entry_len);
                    return Err(i);
                }
            },
            e => {
                v.extend_from_slice(&bytes[run..i]);
                if e == b'u' {
                    let hex = [HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]];
                    v.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex[0], hex[1]]);
                } else {
                    v.extend_from_slice(&[b'\\', e]);
                }
                i += 1;
                run = i;
            }
        }
    }
    v.extend_from_slice(&bytes[run..]);
    v.push(b'"');
    Ok(())
}

/// Length of the UTF-8 character at the start of `s` (first byte >= 0x80), or `None` when it is
/// not one by the standard's (and `std::str::from_utf8`'s) rules: no overlong form, surrogate,
/// value above U+10FFFF or truncated sequence.
#[inline]
fn utf8_char_len(s: &[u8]) -> Option<usize> {
    let cont = |i: usize| s.get(i).is_some_and(|&b| b & 0xc0 == 0x80);
    let b1 = *s.get(1)?;
    match s[0] {
        0xc2..=0xdf => (b1 & 0xc0 == 0x80).then_some(2),
        b0 @ 0xe0..=0xef => {
            let second = match b0 {
                0xe0 => (0xa0..=0xbf).contains(&b1),
                0xed => (0x80..=0x9f).contains(&b1),
                _ => b1 & 0xc0 == 0x80,
            };
            (second && cont(2)).then_some(3)
        }
        b0 @ 0xf0..=0xf4 => {
            let second = match b0 {
                0xf0 => (0x90..=0xbf).contains(&b1),
                0xf4 => (0x80..=0x8f).contains(&b1),
                _ => b1 & 0xc0 == 0x80,
            };
            (second && cont(2) && cont(3)).then_some(4)
        }
        _ => None,
    }
}

/// Appends an integer (two digits per step: `core::fmt` costs several times more).
pub fn push_i64(out: &mut String, v: i64) {
    const PAIRS: &[u8; 200] = b"\
        0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    // The digits end at DIGITS_END, the sign before them; the text is then copied with one
    // fixed-size store of DIGITS_END bytes from where it starts (the zeros past it are not kept).
    const DIGITS_END: usize = 20;
    let mut buf = [0u8; 2 * DIGITS_END];
    let mut pos = DIGITS_END;
    let mut n = v.unsigned_abs();
    while n >= 100 {
        let d = (n % 100) as usize * 2;
        n /= 100;
        pos -= 2;
        buf[pos..pos + 2].copy_from_slice(&PAIRS[d..d + 2]);
    }
    if n >= 10 {
        let d = n as usize * 2;
        pos -= 2;
        buf[pos..pos + 2].copy_from_slice(&PAIRS[d..d + 2]);
    } else {
        pos -= 1;
        buf[pos] = b'0' + n as u8;
    }
    if v < 0 {
        // At most 19 digits (|i64::MIN|), so there is room for the sign.
        pos -= 1;
        buf[pos] = b'-';
    }
    let text = &buf[pos..pos + DIGITS_END];
    // SAFETY: only ASCII digits and `-` are written; see below for the length.
    #[allow(unsafe_code)]
    let out = unsafe { out.as_mut_vec() };
    out.reserve(DIGITS_END);
    let len = out.len();
    // SAFETY: `reserve` made room for DIGITS_END bytes past `len`; the first `DIGITS_END - pos`
    // are the text (`pos` is where it starts, DIGITS_END where it ends).
    #[allow(unsafe_code)]
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), out.as_mut_ptr().add(len), DIGITS_END);
        out.set_len(len + DIGITS_END - pos);
    }
}

/// Appends a float: the shortest text that parses back to the same bits (`1.0`, `-0.0`,
/// `0.00001`, `1e-7`, `1e16`; see the module docs); NaN and ±infinity as the strings `"NaN"`,
/// `"Infinity"` and `"-Infinity"` (JSON has no such numbers; BigQuery accepts these for FLOAT64).
pub fn push_f64(out: &mut String, v: f64) {
    if v.is_finite() {
        let mut buf = zmij::Buffer::new();
        let text = buf.format_finite(v);
        // zmij writes a positive exponent with its sign (`1e+16`), this form without: the sign
        // sits just before the exponent's one to three digits, at the end.
        let b = text.as_bytes();
        let sign = (2..=4).find(|&k| b.len() > k && b[b.len() - k] == b'+');
        match sign {
            None => out.push_str(text),
            Some(k) => {
                out.push_str(&text[..b.len() - k]);
                out.push_str(&text[b.len() - k + 1..]);
            }
        }
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

    #[test]
    fn long_strings_escape_at_every_position() {
        // The scan reads eight bytes at a time: an escape or a multi-byte character in each
        // position of a word, and in the tail after the last whole word.
        for len in 0..20 {
            for at in 0..len {
                for special in [
                    "\"", "\\", "\n", "\u{1}", "\u{1f}", "é", "日", "🎉", "\u{7f}",
                ] {
                    let s: String = (0..len)
                        .map(|i| {
                            if i == at {
                                special.to_string()
                            } else {
                                "a".into()
                            }
                        })
                        .collect();
                    let mut out = String::from("x");
                    push_str(&mut out, &s);
                    let want = format!("x{}", serde_json::to_string(&s).unwrap());
                    assert_eq!(out, want, "{s:?}");
                    let mut out = String::from("x");
                    push_utf8(&mut out, s.as_bytes()).unwrap();
                    assert_eq!(out, want, "{s:?}");
                    let mut out = String::from("x");
                    push_utf8_key(&mut out, s.as_bytes(), true).unwrap();
                    assert_eq!(out, format!("x,{}:", &want[1..]), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn invalid_utf8_is_refused_where_from_utf8_refuses_it() {
        for bytes in [
            &b"ok\xc3\x28"[..],
            b"k\xff",
            b"\xc0\x80",         // overlong
            b"\xe0\x80\x80",     // overlong
            b"\xed\xa0\x80",     // surrogate
            b"\xf4\x90\x80\x80", // above U+10FFFF
            b"\xf5\x80\x80\x80",
            b"abcdefgh\xe6\x97", // truncated after a whole word
            b"abcdefghijklmno\x80",
        ] {
            let e = std::str::from_utf8(bytes).unwrap_err();
            let mut out = String::from("kept");
            let got = push_utf8(&mut out, bytes).unwrap_err();
            assert_eq!(got.valid_up_to, e.valid_up_to(), "{bytes:?}");
            assert_eq!(out, "kept");
        }
    }

    proptest::proptest! {
        #[test]
        fn push_utf8_is_from_utf8_then_push_str(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    &b"a"[..], b"plain text", b"\"", b"\\", b"\n", b"\x01", b"\x7f", "é".as_bytes(),
                    "日本".as_bytes(), "🎉".as_bytes(), b"\xc3", b"\x80", b"\xed\xa0\x80", b"\xf0\x9f",
                    b"\xff", b"12345678",
                ]),
                0..12,
            )
        ) {
            let bytes: Vec<u8> = parts.concat();
            let mut out = String::from("x");
            match std::str::from_utf8(&bytes) {
                Ok(s) => {
                    proptest::prop_assert_eq!(push_utf8(&mut out, &bytes), Ok(()));
                    proptest::prop_assert_eq!(&out[1..], serde_json::to_string(s).unwrap());
                    let mut plain = String::from("x");
                    push_str(&mut plain, s);
                    proptest::prop_assert_eq!(plain, out);
                }
                Err(e) => {
                    let got = push_utf8(&mut out, &bytes);
                    proptest::prop_assert_eq!(got, Err(InvalidUtf8 { valid_up_to: e.valid_up_to() }));
                    proptest::prop_assert_eq!(out, "x");
                }
            }
        }

        #[test]
        fn a_key_is_comma_string_colon(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    &b"a"[..], b"plain text", b"\"", b"\\", b"\n", b"\x01", b"\x7f", "é".as_bytes(),
                    "日本".as_bytes(), b"\xc3", b"\xff", b"12345678", b"user_id",
                ]),
                0..6,
            ),
            comma in proptest::bool::ANY,
        ) {
            let bytes: Vec<u8> = parts.concat();
            let mut out = String::from("{\"x\":1");
            let got = push_utf8_key(&mut out, &bytes, comma);
            match std::str::from_utf8(&bytes) {
                Ok(s) => {
                    proptest::prop_assert_eq!(got, Ok(()));
                    let sep = if comma { "," } else { "" };
                    let want = format!("{{\"x\":1{sep}{}:", serde_json::to_string(s).unwrap());
                    proptest::prop_assert_eq!(&out, &want);
                    let mut plain = String::from("{\"x\":1");
                    push_str_key(&mut plain, s, comma);
                    proptest::prop_assert_eq!(plain, want);
                }
                Err(e) => {
                    proptest::prop_assert_eq!(got, Err(InvalidUtf8 { valid_up_to: e.valid_up_to() }));
                    proptest::prop_assert_eq!(out, "{\"x\":1");
                }
            }
        }

        #[test]
        fn any_integer_as_display_writes_it(v in proptest::num::i64::ANY) {
            let mut out = String::new();
            push_i64(&mut out, v);
            proptest::prop_assert_eq!(out, v.to_string());
        }
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

        /// The text is ryu's (what evlog wrote before zmij, and what the `other` column and the
        /// bindings' tests hold), for any finite float: bits drawn at random cover every
        /// exponent and both forms.
        #[test]
        fn any_finite_float_is_written_as_ryu_writes_it(bits in proptest::num::u64::ANY) {
            let v = f64::from_bits(bits);
            proptest::prop_assume!(v.is_finite());
            let mut ryu = ryu::Buffer::new();
            proptest::prop_assert_eq!(f(v), ryu.format_finite(v));
        }
    }

    #[test]
    fn floats_at_the_forms_edges_are_written_as_ryu_writes_them() {
        for e in -330..=310 {
            for m in [1.0, 1.5, 9.999999999999999, 2.2250738585072014] {
                let v: f64 = format!("{m}e{e}").parse().unwrap();
                for v in [
                    v,
                    -v,
                    f64::from_bits(v.to_bits() + 1),
                    f64::from_bits(v.to_bits().saturating_sub(1)),
                ] {
                    if v.is_finite() {
                        assert_eq!(f(v), ryu::Buffer::new().format_finite(v), "{v:?}");
                    }
                }
            }
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
            (9, "9"),
            (10, "10"),
            (-99, "-99"),
            (100, "100"),
            (1_700_000_000, "1700000000"),
        ] {
            let mut out = String::new();
            push_i64(&mut out, v);
            assert_eq!(out, want);
        }
    }
}
