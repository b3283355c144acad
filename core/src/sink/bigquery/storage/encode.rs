//! Rows to protobuf: a single-pass, schema-guided transcoder from a row's JSON text to the
//! wire bytes of the [`Layout`](super::descriptor::Layout)'s row message.
//!
//! Why a transcoder and not a protobuf writer beside the JSON writer (`schema/convert.rs`):
//! rows reach a sink as `EncodedRow.json` from several producers that all keep JSON text (the
//! SDK's converter, the collector's `/v1/rows` check, dead letters, and the spool and WAL
//! replaying rows written by an earlier process); a second writer would make every one of them
//! carry both forms through disk. The JSON is evlog's own canonical text, so one pass over it is
//! cheap: no `serde_json::Value`, no tree; strings without escapes are copied straight from the
//! text, and only escaped strings and RECORDs (encoded into a buffer for their length prefix)
//! allocate.
//!
//! Contract:
//! - Members are matched to columns by name (exact, else ASCII case-insensitive, as BigQuery
//!   matches names); a member no column names is an error naming it, as is a value that does
//!   not fit its column's type. `null` members are omitted (proto2 absence = NULL); REPEATED
//!   columns take arrays, each element its own field entry; `null` inside an array is an error
//!   (BigQuery refuses NULL array elements).
//! - Values, in the forms `schema/convert.rs` writes: STRING a string (a number or bool as its
//!   text); BYTES base64 text, decoded; INT64 an integer or its string; FLOAT64 a number or
//!   `"NaN"`/`"Infinity"`/`"-Infinity"`; BOOL `true`/`false`; TIMESTAMP the
//!   [`crate::time::parse_timestamp`] text, as µs; DATE `YYYY-MM-DD`, as days; NUMERIC,
//!   BIGNUMERIC, TIME, DATETIME, JSON, GEOGRAPHY their text (an object or array value of a JSON
//!   or GEOGRAPHY column is sent as its JSON text).
//! - Field order on the wire is the row's member order (protobuf allows any order).

use prost::encoding::{encode_key, encode_varint, WireType};

use super::descriptor::{ColType, Column};
use crate::time;

/// Why a row could not be encoded; `field` is the dotted column path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError {
    /// The column (or member) at fault, dotted.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Appends the protobuf encoding of the row `json` (one JSON object) to `out`.
pub fn encode_row(columns: &[Column], json: &str, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut scan = Scan {
        s: json,
        b: json.as_bytes(),
        i: 0,
    };
    let mut enc = Encoder {
        scratch: Vec::new(),
    };
    enc.message(columns, &mut scan, out, "")?;
    if scan.peek().is_some() {
        return Err(err("", "text after the row object"));
    }
    Ok(())
}

fn err(field: &str, message: impl Into<String>) -> EncodeError {
    EncodeError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// `path.name`, or `name` itself at the top level: called for every field, so the usual case
/// (a top-level column) must not allocate.
fn join<'a>(path: &str, name: &'a str) -> std::borrow::Cow<'a, str> {
    if path.is_empty() {
        name.into()
    } else {
        format!("{path}.{name}").into()
    }
}

/// A JSON value as the scanner found it.
enum Val<'a> {
    /// A string's raw text between the quotes, and whether it has escapes.
    Str(&'a str, bool),
    /// A number, `true` or `false` (not `null`).
    Lit(&'a str),
    /// An object or array, as its JSON text.
    Raw(&'a str),
}

struct Scan<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn peek(&mut self) -> Option<u8> {
        while let Some(c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                self.i += 1;
            } else {
                return Some(*c);
            }
        }
        None
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8, path: &str) -> Result<(), EncodeError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(err(
                path,
                format!(
                    "malformed row JSON: expected '{}' at byte {}",
                    c as char, self.i
                ),
            ))
        }
    }

    /// A string token: its raw text and whether it has escapes.
    fn string(&mut self, path: &str) -> Result<(&'a str, bool), EncodeError> {
        self.expect(b'"', path)?;
        let start = self.i;
        let mut escaped = false;
        loop {
            let rest = self.b.get(self.i..).unwrap_or_default();
            let Some(j) = memchr::memchr2(b'"', b'\\', rest) else {
                return Err(err(path, "malformed row JSON: unterminated string"));
            };
            self.i += j;
            if self.b[self.i] == b'"' {
                break;
            }
            escaped = true;
            self.i += 2;
        }
        let raw = self
            .s
            .get(start..self.i)
            .ok_or_else(|| err(path, "malformed row JSON: bad escape"))?;
        self.i += 1;
        Ok((raw, escaped))
    }

    /// A number or literal's text (up to the next delimiter).
    fn literal(&mut self) -> &'a str {
        let start = self.i;
        while let Some(c) = self.b.get(self.i) {
            if matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    /// Skips an object or array, returning its text.
    fn compound(&mut self, path: &str) -> Result<&'a str, EncodeError> {
        self.peek();
        let start = self.i;
        let mut depth = 0usize;
        loop {
            match self.b.get(self.i) {
                Some(b'{' | b'[') => {
                    depth += 1;
                    self.i += 1;
                }
                Some(b'}' | b']') => {
                    depth = depth.saturating_sub(1);
                    self.i += 1;
                    if depth == 0 {
                        break;
                    }
                }
                Some(b'"') => {
                    self.string(path)?;
                }
                Some(_) => self.i += 1,
                None => return Err(err(path, "malformed row JSON: unterminated value")),
            }
        }
        Ok(&self.s[start..self.i])
    }

    /// The next value; `None` for `null`.
    fn value(&mut self, path: &str) -> Result<Option<Val<'a>>, EncodeError> {
        match self.peek() {
            Some(b'"') => {
                let (raw, escaped) = self.string(path)?;
                Ok(Some(Val::Str(raw, escaped)))
            }
            Some(b'{' | b'[') => Ok(Some(Val::Raw(self.compound(path)?))),
            Some(_) => match self.literal() {
                "null" => Ok(None),
                "" => Err(err(path, "malformed row JSON: missing value")),
                lit => Ok(Some(Val::Lit(lit))),
            },
            None => Err(err(path, "malformed row JSON: missing value")),
        }
    }
}

/// Decodes the escapes of a JSON string's raw text into `out`.
fn unescape(raw: &str, out: &mut Vec<u8>, path: &str) -> Result<(), EncodeError> {
    let bad = || err(path, "malformed row JSON: bad string escape");
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let Some(j) = b[i..].iter().position(|&c| c == b'\\') else {
            out.extend_from_slice(&b[i..]);
            break;
        };
        out.extend_from_slice(&b[i..i + j]);
        i += j + 1;
        let c = *b.get(i).ok_or_else(bad)?;
        i += 1;
        let simple = match c {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            _ => return Err(bad()),
        };
        if let Some(s) = simple {
            out.push(s);
            continue;
        }
        let hex = |at: usize| -> Option<u32> {
            raw.get(at..at + 4)
                .and_then(|h| u32::from_str_radix(h, 16).ok())
        };
        let hi = hex(i).ok_or_else(bad)?;
        i += 4;
        let code = if (0xD800..0xDC00).contains(&hi) {
            // A high surrogate must be followed by `\u` and a low one.
            if raw.get(i..i + 2) != Some("\\u") {
                return Err(bad());
            }
            let lo = hex(i + 2).ok_or_else(bad)?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(bad());
            }
            i += 6;
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        let ch = char::from_u32(code).ok_or_else(bad)?;
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    }
    Ok(())
}

struct Encoder {
    /// Unescaped string bytes (reused).
    scratch: Vec<u8>,
}

impl Encoder {
    /// One JSON object as the fields of a message with `columns`.
    fn message(
        &mut self,
        columns: &[Column],
        scan: &mut Scan<'_>,
        out: &mut Vec<u8>,
        path: &str,
    ) -> Result<(), EncodeError> {
        scan.expect(b'{', path)?;
        if scan.eat(b'}') {
            return Ok(());
        }
        // Rows are written in column order: try the next column first.
        let mut hint = 0;
        loop {
            let (raw, escaped) = scan.string(path)?;
            let name: std::borrow::Cow<'_, str> = if escaped {
                let mut v = Vec::new();
                unescape(raw, &mut v, path)?;
                String::from_utf8_lossy(&v).into_owned().into()
            } else {
                raw.into()
            };
            scan.expect(b':', path)?;
            let idx = if columns.get(hint).is_some_and(|c| c.name == name) {
                Some(hint)
            } else {
                columns.iter().position(|c| c.name == name).or_else(|| {
                    columns
                        .iter()
                        .position(|c| c.name.eq_ignore_ascii_case(&name))
                })
            };
            let Some(idx) = idx else {
                return Err(err(&join(path, &name), "no such column in the table"));
            };
            hint = idx + 1;
            let col = &columns[idx];
            let number = Column::number(idx);
            let at = || join(path, &col.name);
            if col.repeated && scan.peek() == Some(b'[') {
                scan.i += 1;
                if !scan.eat(b']') {
                    loop {
                        if !self.one(col, number, scan, out, path)? {
                            return Err(err(&at(), "null in an ARRAY (BigQuery refuses it)"));
                        }
                        if scan.eat(b',') {
                            continue;
                        }
                        scan.expect(b']', &at())?;
                        break;
                    }
                }
            } else if col.repeated && scan.peek() != Some(b'n') {
                return Err(err(&at(), "a REPEATED column takes an array"));
            } else {
                self.one(col, number, scan, out, path)?;
            }
            if scan.eat(b',') {
                continue;
            }
            scan.expect(b'}', path)?;
            return Ok(());
        }
    }

    /// One value of `col` as field `number`; false when it was `null` (nothing written).
    fn one(
        &mut self,
        col: &Column,
        number: u32,
        scan: &mut Scan<'_>,
        out: &mut Vec<u8>,
        path: &str,
    ) -> Result<bool, EncodeError> {
        let at = join(path, &col.name);
        if col.ty == ColType::Record {
            if scan.peek() != Some(b'{') {
                return match scan.value(&at)? {
                    None => Ok(false),
                    Some(_) => Err(err(&at, "a RECORD takes an object")),
                };
            }
            let mut nested = Vec::new();
            self.message(&col.fields, scan, &mut nested, &at)?;
            encode_key(number, WireType::LengthDelimited, out);
            encode_varint(nested.len() as u64, out);
            out.extend_from_slice(&nested);
            return Ok(true);
        }
        let Some(v) = scan.value(&at)? else {
            return Ok(false);
        };
        let mismatch = |what: &str| err(&at, format!("expected {what}"));
        match col.ty {
            ColType::String | ColType::Decimal | ColType::Text => match v {
                Val::Str(raw, escaped) => self.string_field(number, raw, escaped, out, &at)?,
                Val::Lit(text) => bytes_field(number, text.as_bytes(), out),
                Val::Raw(text) if col.ty == ColType::Text => {
                    bytes_field(number, text.as_bytes(), out)
                }
                Val::Raw(_) => return Err(mismatch("a string")),
            },
            ColType::Bytes => {
                let text = self.text(&v, &at).ok_or_else(|| mismatch("base64 text"))?;
                let bytes = crate::schema::convert::base64_decode(&text)
                    .ok_or_else(|| mismatch("base64 text"))?;
                bytes_field(number, &bytes, out);
            }
            ColType::Int64 => {
                let text = self.text(&v, &at).ok_or_else(|| mismatch("an integer"))?;
                let n: i64 = text
                    .trim()
                    .trim_start_matches('+')
                    .parse()
                    .map_err(|_| mismatch("an integer in INT64's range"))?;
                varint_field(number, n as u64, out);
            }
            ColType::Float64 => {
                let text = self.text(&v, &at).ok_or_else(|| mismatch("a number"))?;
                let x: f64 = text.trim().parse().map_err(|_| mismatch("a number"))?;
                encode_key(number, WireType::SixtyFourBit, out);
                out.extend_from_slice(&x.to_le_bytes());
            }
            ColType::Bool => {
                let b = match self.text(&v, &at).as_deref() {
                    Some("true") => true,
                    Some("false") => false,
                    _ => return Err(mismatch("true or false")),
                };
                varint_field(number, u64::from(b), out);
            }
            ColType::Timestamp => {
                let Val::Str(..) = v else {
                    return Err(mismatch("a TIMESTAMP string"));
                };
                let text = self.text(&v, &at).unwrap_or_default();
                let us = time::parse_timestamp(&text).map_err(|e| err(&at, e.to_string()))?;
                varint_field(number, us as u64, out);
            }
            ColType::Date => {
                let Val::Str(..) = v else {
                    return Err(mismatch("a DATE string"));
                };
                let text = self.text(&v, &at).unwrap_or_default();
                let days = time::parse_date(&text).map_err(|e| err(&at, e.to_string()))?;
                // int32 on the wire: sign-extended varint, as protobuf encodes negative int32.
                varint_field(number, i64::from(days) as u64, out);
            }
            ColType::Record => unreachable!("handled above"),
        }
        Ok(true)
    }

    /// A scalar's text (strings unescaped); `None` for objects and arrays.
    fn text<'v>(&mut self, v: &Val<'v>, at: &str) -> Option<std::borrow::Cow<'v, str>> {
        match *v {
            Val::Str(raw, false) | Val::Lit(raw) => Some(raw.into()),
            Val::Str(raw, true) => {
                self.scratch.clear();
                unescape(raw, &mut self.scratch, at).ok()?;
                String::from_utf8(self.scratch.clone()).ok().map(Into::into)
            }
            Val::Raw(_) => None,
        }
    }

    fn string_field(
        &mut self,
        number: u32,
        raw: &str,
        escaped: bool,
        out: &mut Vec<u8>,
        at: &str,
    ) -> Result<(), EncodeError> {
        if !escaped {
            bytes_field(number, raw.as_bytes(), out);
            return Ok(());
        }
        self.scratch.clear();
        // Escapes decode to whole characters only (a lone surrogate is an error), so the bytes
        // stay UTF-8.
        unescape(raw, &mut self.scratch, at)?;
        bytes_field(number, &self.scratch, out);
        Ok(())
    }
}

fn bytes_field(number: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(number, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn varint_field(number: u32, v: u64, out: &mut Vec<u8>) {
    encode_key(number, WireType::Varint, out);
    encode_varint(v, out);
}
