//! A JSON value that borrows from the text it was parsed from: what row conversion reads.
//!
//! Parsing an event into `serde_json::Value` allocates a `String` per key and per string and a
//! B-tree per object, and conversion then moves and frees all of it; that was most of the cost
//! of an event in the collector and in the SDK's flush thread. [`parse`] builds a [`JRef`] that
//! borrows every key, string and number from the text, and an object is a `Vec` of pairs.
//!
//! Contract:
//! - [`parse`] accepts exactly RFC 8259 JSON (one value, whitespace around it), as serde_json
//!   does, with one exception: a number beyond the range of a double (`1e400`) is valid here,
//!   because it is kept as text. Nesting deeper than 128 arrays/objects is an error (as in
//!   serde_json), so a hostile event cannot exhaust the stack.
//! - Numbers are kept as their text ([`JNum`]), digit for digit; strings and keys are kept as
//!   sent, escapes included ([`JStr`]), and decoded only where a value is read.
//! - An object's members are kept in the order of the text, duplicates included. What reads a
//!   member by name gives the meaning `serde_json::Map` gives the same text: the last of
//!   duplicate keys wins ([`get`], [`sorted`]).
//! - [`JRef::write_compact`] writes the value as it was sent, without the whitespace between
//!   tokens: numbers and strings (escapes included) as in the text, members in text order,
//!   duplicates included. This is what `other` and JSON columns hold ("kept as sent").
//!   A value built from a `serde_json::Value` ([`JRef::from_value`]) has no text of its own; it
//!   is written as `serde_json::to_string` writes the `Value`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::json::CowStr;

/// Deepest nesting of arrays and objects [`parse`] accepts (serde_json's limit).
const MAX_DEPTH: usize = 128;

/// A borrowed JSON value (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JRef<'a> {
    Null,
    Bool(bool),
    Number(JNum<'a>),
    String(JStr<'a>),
    Array(Vec<JRef<'a>>),
    Object(Obj<'a>),
}

/// Object members in the order of the text (see the module docs).
pub(crate) type Obj<'a> = Vec<(JStr<'a>, JRef<'a>)>;

/// A JSON number as its text: valid JSON number syntax, exactly as sent (or, from a
/// `serde_json::Value`, as serde_json prints it). Read as a number the way serde_json would
/// read the same text: an integer that fits `u64`/`i64` is an integer, anything else a double.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JNum<'a>(Cow<'a, str>);

impl<'a> JNum<'a> {
    /// A number from its text, which must be JSON number syntax (e.g. what serde_json prints).
    pub(crate) fn owned(text: String) -> Self {
        JNum(Cow::Owned(text))
    }

    /// The number's text.
    pub(crate) fn text(&self) -> &str {
        &self.0
    }

    /// Whether the text is an integer literal (no fraction, no exponent), of any size.
    pub(crate) fn is_integer_literal(&self) -> bool {
        !self.0.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'))
    }

    /// As serde_json's `Number::as_i64` for the same text (`-0` is a double there).
    pub(crate) fn as_i64(&self) -> Option<i64> {
        if !self.is_integer_literal() || self.0 == "-0" {
            return None;
        }
        self.0.parse().ok()
    }

    /// As serde_json's `Number::as_u64` for the same text.
    pub(crate) fn as_u64(&self) -> Option<u64> {
        if !self.is_integer_literal() {
            return None;
        }
        self.0.parse().ok()
    }

    /// The nearest finite double, or `None` beyond the range of doubles.
    pub(crate) fn as_f64(&self) -> Option<f64> {
        self.0.parse::<f64>().ok().filter(|x| x.is_finite())
    }

    /// The `serde_json::Number` serde_json parses from the same text (`None` where serde_json
    /// would refuse the number as out of range).
    pub(crate) fn to_number(&self) -> Option<Number> {
        if let Some(u) = self.as_u64() {
            return Some(u.into());
        }
        if let Some(i) = self.as_i64() {
            return Some(i.into());
        }
        self.0.parse::<f64>().ok().and_then(Number::from_f64)
    }
}

impl From<i64> for JNum<'_> {
    fn from(n: i64) -> Self {
        JNum(Cow::Owned(n.to_string()))
    }
}

impl From<u64> for JNum<'_> {
    fn from(n: u64) -> Self {
        JNum(Cow::Owned(n.to_string()))
    }
}

impl fmt::Display for JNum<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A JSON string (or object key): either its text between the quotes as sent, escapes included,
/// or (from a `serde_json::Value`, or built by evlog) the decoded string. Equality and order are
/// by the decoded value, so `"a\u0062"` and `"ab"` are the same key.
#[derive(Debug, Clone, Default)]
pub(crate) struct JStr<'a> {
    text: Cow<'a, str>,
    /// `text` is JSON string content with at least one escape (as sent); otherwise `text` is
    /// the value itself (text without a backslash is both).
    escaped: bool,
}

impl<'a> JStr<'a> {
    /// A decoded string.
    pub(crate) fn plain(s: impl Into<Cow<'a, str>>) -> Self {
        JStr {
            text: s.into(),
            escaped: false,
        }
    }

    /// The string's value, decoded (borrowed unless the text has escapes).
    pub(crate) fn value(&self) -> Cow<'_, str> {
        if self.escaped {
            Cow::Owned(unescape(&self.text))
        } else {
            Cow::Borrowed(&self.text)
        }
    }

    /// Appends the JSON string literal: the text as sent when it came from JSON text, otherwise
    /// the value escaped as serde_json escapes it.
    pub(crate) fn write(&self, out: &mut String) {
        if self.escaped {
            out.reserve(self.text.len() + 2);
            out.push('"');
            out.push_str(&self.text);
            out.push('"');
        } else {
            crate::json::push_str(out, &self.text);
        }
    }

    /// Whether the text is borrowed from the input (for tests of the zero-copy path).
    #[cfg(test)]
    fn is_borrowed(&self) -> bool {
        matches!(self.text, Cow::Borrowed(_))
    }
}

impl PartialEq for JStr<'_> {
    fn eq(&self, other: &Self) -> bool {
        if !self.escaped && !other.escaped {
            return self.text == other.text;
        }
        self.value() == other.value()
    }
}

impl Eq for JStr<'_> {}

impl PartialOrd for JStr<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for JStr<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        if !self.escaped && !other.escaped {
            return self.text.cmp(&other.text);
        }
        self.value().cmp(&other.value())
    }
}

impl PartialEq<str> for JStr<'_> {
    fn eq(&self, other: &str) -> bool {
        if self.escaped {
            self.value() == other
        } else {
            self.text == other
        }
    }
}

impl<'a> JRef<'a> {
    /// Borrows a `serde_json::Value` (its maps are already sorted and unique).
    pub(crate) fn from_value(v: &'a Value) -> Self {
        match v {
            Value::Null => JRef::Null,
            Value::Bool(b) => JRef::Bool(*b),
            // serde_json prints the shortest text that reads back as the same number.
            Value::Number(n) => JRef::Number(JNum(Cow::Owned(n.to_string()))),
            Value::String(s) => JRef::String(JStr::plain(s.as_str())),
            Value::Array(a) => JRef::Array(a.iter().map(JRef::from_value).collect()),
            Value::Object(m) => JRef::Object(obj_from_map(m)),
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self, JRef::Null)
    }

    /// Appends the compact JSON text of the value, as sent (see the module docs).
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
            JRef::Number(n) => out.push_str(n.text()),
            JRef::String(s) => {
                let room = limit.saturating_sub(out.len());
                if s.text.len() > room {
                    // Only as much as can show: a megabyte string costs no more than a short one.
                    let mut cut = room.min(s.text.len());
                    while !s.text.is_char_boundary(cut) {
                        cut += 1;
                    }
                    JStr {
                        text: Cow::Borrowed(&s.text[..cut]),
                        escaped: s.escaped,
                    }
                    .write(out);
                    return false;
                }
                s.write(out);
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

/// Appends the compact JSON text of an object, members in order (see the module docs).
pub(crate) fn write_object(o: &[(JStr<'_>, JRef<'_>)], out: &mut String) {
    write_object_bounded(o, out, usize::MAX);
}

fn write_object_bounded(o: &[(JStr<'_>, JRef<'_>)], out: &mut String, limit: usize) -> bool {
    out.push('{');
    for (i, (k, v)) in o.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if out.len() > limit {
            return false;
        }
        k.write(out);
        out.push(':');
        if !v.write_compact_bounded(out, limit) {
            return false;
        }
    }
    out.push('}');
    true
}

fn is_sorted_unique(o: &[(JStr<'_>, JRef<'_>)]) -> bool {
    o.windows(2).all(|w| w[0].0 < w[1].0)
}

/// Member positions sorted by key, the last of duplicates only.
fn sorted_order(o: &[(JStr<'_>, JRef<'_>)]) -> Vec<usize> {
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
        .map(|(k, v)| (JStr::plain(k.as_str()), JRef::from_value(v)))
        .collect()
}

/// The member `key` (the last, if the key is repeated).
pub(crate) fn get<'o, 'a>(o: &'o [(JStr<'a>, JRef<'a>)], key: &str) -> Option<&'o JRef<'a>> {
    o.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// The members sorted by key, the last of duplicates only (what a `serde_json::Map` holds).
pub(crate) fn sorted(o: Obj<'_>) -> Obj<'_> {
    if is_sorted_unique(&o) {
        return o;
    }
    let order = sorted_order(&o);
    let mut slots: Vec<Option<(JStr<'_>, JRef<'_>)>> = o.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// Why [`parse`] refused a text; Display as serde_json's errors: `<what> at line L column C`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at line {line} column {column}")]
pub(crate) struct ParseError {
    what: &'static str,
    line: usize,
    column: usize,
}

/// Parses one JSON value, borrowing from `text` (see the module docs).
pub(crate) fn parse(text: &str) -> Result<JRef<'_>, ParseError> {
    let mut p = Parser {
        s: text,
        b: text.as_bytes(),
        i: 0,
        depth: 0,
    };
    let v = p.value()?;
    p.ws();
    if p.i < p.b.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    /// An error at the current position (line and column counted only now, on the error path).
    fn err(&self, what: &'static str) -> ParseError {
        let upto = &self.b[..self.i.min(self.b.len())];
        let line = 1 + upto.iter().filter(|&&b| b == b'\n').count();
        let line_start = upto.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        ParseError {
            what,
            line,
            column: self.i - line_start + 1,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    fn value(&mut self) -> Result<JRef<'a>, ParseError> {
        self.ws();
        match self.peek() {
            None => Err(self.err("EOF while parsing a value")),
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => Ok(JRef::String(self.string()?)),
            Some(b't') => self.ident("true", JRef::Bool(true)),
            Some(b'f') => self.ident("false", JRef::Bool(false)),
            Some(b'n') => self.ident("null", JRef::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("expected value")),
        }
    }

    fn ident(&mut self, word: &'static str, v: JRef<'a>) -> Result<JRef<'a>, ParseError> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("expected ident"))
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("recursion limit exceeded"));
        }
        self.i += 1;
        Ok(())
    }

    fn array(&mut self) -> Result<JRef<'a>, ParseError> {
        self.enter()?;
        let mut out = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            self.depth -= 1;
            return Ok(JRef::Array(out));
        }
        loop {
            out.push(self.value()?);
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        return Err(self.err("trailing comma"));
                    }
                }
                Some(b']') => break,
                None => return Err(self.err("EOF while parsing a list")),
                Some(_) => return Err(self.err("expected `,` or `]`")),
            }
        }
        self.i += 1;
        self.depth -= 1;
        Ok(JRef::Array(out))
    }

    fn object(&mut self) -> Result<JRef<'a>, ParseError> {
        self.enter()?;
        let mut out: Obj<'a> = Vec::with_capacity(8);
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            self.depth -= 1;
            return Ok(JRef::Object(out));
        }
        loop {
            match self.peek() {
                Some(b'"') => {}
                None => return Err(self.err("EOF while parsing an object")),
                Some(b'}') if !out.is_empty() => return Err(self.err("trailing comma")),
                Some(_) => return Err(self.err("key must be a string")),
            }
            let k = self.string()?;
            self.ws();
            match self.peek() {
                Some(b':') => self.i += 1,
                None => return Err(self.err("EOF while parsing an object")),
                Some(_) => return Err(self.err("expected `:`")),
            }
            let v = self.value()?;
            out.push((k, v));
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b'}') => break,
                None => return Err(self.err("EOF while parsing an object")),
                Some(_) => return Err(self.err("expected `,` or `}`")),
            }
        }
        self.i += 1;
        self.depth -= 1;
        Ok(JRef::Object(out))
    }

    /// A string at `"`: its content borrowed as sent, escapes checked (not decoded).
    fn string(&mut self) -> Result<JStr<'a>, ParseError> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        loop {
            self.skip_plain();
            match self.peek() {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(_) => {
                    return Err(self
                        .err("control character (\\u0000-\\u001F) found while parsing a string"))
                }
                None => return Err(self.err("EOF while parsing a string")),
            }
        }
        // Both ends are ASCII bytes, so the slice lies on char boundaries.
        let text = &self.s[start..self.i];
        self.i += 1;
        Ok(JStr {
            text: Cow::Borrowed(text),
            escaped,
        })
    }

    /// Advances to the next `"`, `\` or control byte (or the end), eight bytes at a time.
    fn skip_plain(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            let w = u64::from_le_bytes(w);
            // Per byte, the high bit is set in the lowest byte that is a quote, a backslash or
            // below 0x20 (higher bytes may be false positives, but the lowest set is exact).
            let quote = w ^ (ONES * u64::from(b'"'));
            let slash = w ^ (ONES * u64::from(b'\\'));
            let hit = (quote.wrapping_sub(ONES) & !quote)
                | (slash.wrapping_sub(ONES) & !slash)
                | (w.wrapping_sub(ONES * 0x20) & !w);
            let hit = hit & HIGH;
            if hit != 0 {
                self.i += (hit.trailing_zeros() / 8) as usize;
                return;
            }
            self.i += 8;
        }
        while let Some(&b) = self.b.get(self.i) {
            if b == b'"' || b == b'\\' || b < 0x20 {
                return;
            }
            self.i += 1;
        }
    }

    /// Checks one escape at `\` and moves past it; a `\u` high surrogate must be followed by a
    /// `\u` low surrogate (a lone surrogate is not a Unicode scalar value, so no `str` holds it).
    fn escape(&mut self) -> Result<(), ParseError> {
        self.i += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.i += 1;
                Ok(())
            }
            Some(b'u') => {
                self.i += 1;
                let cp = self.hex4()?;
                match cp {
                    0xD800..=0xDBFF => {
                        if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                            return Err(self.err("lone leading surrogate in hex escape"));
                        }
                        self.i += 2;
                        match self.hex4()? {
                            0xDC00..=0xDFFF => Ok(()),
                            _ => Err(self.err("lone leading surrogate in hex escape")),
                        }
                    }
                    0xDC00..=0xDFFF => Err(self.err("lone trailing surrogate in hex escape")),
                    _ => Ok(()),
                }
            }
            None => Err(self.err("EOF while parsing a string")),
            Some(_) => Err(self.err("invalid escape")),
        }
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let Some(digits) = self.b.get(self.i..self.i + 4) else {
            self.i = self.b.len();
            return Err(self.err("EOF while parsing a string"));
        };
        let mut n = 0;
        for &d in digits {
            let Some(v) = (d as char).to_digit(16) else {
                return Err(self.err("invalid escape"));
            };
            n = n * 16 + v;
        }
        self.i += 4;
        Ok(n)
    }

    /// A number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, kept as text.
    fn number(&mut self) -> Result<JRef<'a>, ParseError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.err("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.err("invalid number"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.err("invalid number"));
            }
            self.digits();
        }
        // A digit right after a leading zero (`01`) is not JSON.
        if matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.err("invalid number"));
        }
        Ok(JRef::Number(JNum(Cow::Borrowed(&self.s[start..self.i]))))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }
}

/// Decodes JSON string content that [`Parser::string`] checked. Never panics: on text it did
/// not check, a malformed escape becomes U+FFFD.
fn unescape(raw: &str) -> String {
    let b = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut start = 0;
    let mut i = 0;
    let hex = |at: usize| -> Option<u32> {
        let d = b.get(at..at + 4)?;
        std::str::from_utf8(d)
            .ok()
            .and_then(|t| u32::from_str_radix(t, 16).ok())
    };
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        out.push_str(&raw[start..i]);
        let (c, len) = match b.get(i + 1) {
            Some(b'"') => ('"', 2),
            Some(b'\\') => ('\\', 2),
            Some(b'/') => ('/', 2),
            Some(b'b') => ('\u{8}', 2),
            Some(b'f') => ('\u{c}', 2),
            Some(b'n') => ('\n', 2),
            Some(b'r') => ('\r', 2),
            Some(b't') => ('\t', 2),
            Some(b'u') => match hex(i + 2) {
                Some(hi @ 0xD800..=0xDBFF) => {
                    let lo = (b.get(i + 6..i + 8) == Some(b"\\u"))
                        .then(|| hex(i + 8))
                        .flatten()
                        .filter(|lo| (0xDC00..=0xDFFF).contains(lo));
                    match lo {
                        Some(lo) => (
                            char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                                .unwrap_or('\u{FFFD}'),
                            12,
                        ),
                        None => ('\u{FFFD}', 6),
                    }
                }
                Some(cp) => (char::from_u32(cp).unwrap_or('\u{FFFD}'), 6),
                None => ('\u{FFFD}', 2),
            },
            _ => ('\u{FFFD}', 1),
        };
        out.push(c);
        i = (i + len).min(b.len());
        // Escapes are ASCII, so `i` is on a char boundary unless the text was malformed.
        while !raw.is_char_boundary(i) {
            i += 1;
        }
        start = i;
    }
    out.push_str(&raw[start..]);
    out
}

/// Deserializing through serde, for callers that hold a `serde_json::Deserializer`. Numbers are
/// what serde reports (an integer beyond 64 bits arrives as a double and loses digits) and
/// strings are decoded: prefer [`parse`], which keeps the text as sent.
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
                Ok(Number::from_f64(x).map_or(JRef::Null, |n| {
                    JRef::Number(JNum(Cow::Owned(n.to_string())))
                }))
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(JRef::String(JStr::plain(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(JRef::String(JStr::plain(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(JRef::String(JStr::plain(s)))
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
                    out.push((JStr::plain(k), map.next_value()?));
                }
                Ok(JRef::Object(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests;
