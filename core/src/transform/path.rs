//! Paths into an event: their syntax, and the walks every rule is built from.
//!
//! Syntax (the module doc of [`crate::transform`] shows it to users):
//! - `user.email`: keys of nested objects, separated by `.`;
//! - `items[].sku`: `[]` is every element of an array, `items[0].sku` the element at index 0;
//!   indexes repeat for arrays of arrays (`grid[1][]`);
//! - `"a.b".c`: a key holding `.`, `[`, `]`, `"` or `\` (or an empty key, `""`) is written in
//!   double quotes, with `\"` and `\\` for a quote and a backslash inside;
//! - a path starts with a key (the event is an object); every other character, spaces and
//!   Unicode included, is part of a bare key.
//!
//! The walks never create arrays and never index past an array's end; they create objects only
//! when writing ([`put`]), and only once the whole path is known to be writable, so a write that
//! cannot apply leaves the event exactly as it was.

use std::fmt;

use serde_json::Value;

use super::SkipReason;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A key of an object.
    Key(Box<str>),
    /// One element of an array.
    Index(usize),
    /// Every element of an array (`[]`).
    Each,
}

/// A parsed path: its steps ([`fmt::Display`] writes it back in the path syntax).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Path {
    pub(crate) segs: Box<[Seg]>,
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Writes the path back in its syntax (quoting keys that need it).
impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.segs.iter().enumerate() {
            match seg {
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if k.is_empty() || k.contains(['.', '[', ']', '"', '\\']) {
                        f.write_str("\"")?;
                        for c in k.chars() {
                            if matches!(c, '"' | '\\') {
                                f.write_str("\\")?;
                            }
                            write!(f, "{c}")?;
                        }
                        f.write_str("\"")?;
                    } else {
                        f.write_str(k)?;
                    }
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
                Seg::Each => f.write_str("[]")?,
            }
        }
        Ok(())
    }
}

impl Path {
    /// Parses the path syntax; the error is the rule broken, for the caller to prefix with the
    /// config key.
    pub(crate) fn parse(text: &str) -> Result<Path, String> {
        if text.is_empty() {
            return Err("empty path".into());
        }
        let b = text.as_bytes();
        let mut segs = Vec::new();
        let mut i = 0;
        // Expecting a key: at the start and after a '.'.
        let mut want_key = true;
        while i < b.len() {
            if want_key {
                if b[i] == b'"' {
                    let (key, next) = quoted(text, i)?;
                    segs.push(Seg::Key(key.into()));
                    i = next;
                } else {
                    let end = text[i..]
                        .find(['.', '[', ']', '"'])
                        .map_or(text.len(), |n| i + n);
                    if end == i {
                        return Err(format!("empty key at byte {i} (quote an empty key: \"\")"));
                    }
                    segs.push(Seg::Key(text[i..end].into()));
                    i = end;
                }
                want_key = false;
                continue;
            }
            match b[i] {
                b'.' => {
                    want_key = true;
                    i += 1;
                }
                b'[' => {
                    let close = text[i..]
                        .find(']')
                        .map(|n| i + n)
                        .ok_or_else(|| format!("'[' at byte {i} is not closed"))?;
                    let inner = &text[i + 1..close];
                    if inner.is_empty() {
                        segs.push(Seg::Each);
                    } else if inner.bytes().all(|c| c.is_ascii_digit()) {
                        let n = inner
                            .parse()
                            .map_err(|_| format!("index {inner} at byte {i} is too large"))?;
                        segs.push(Seg::Index(n));
                    } else {
                        return Err(format!(
                            "[{inner}] at byte {i}: an index is a non-negative integer, or [] for every element"
                        ));
                    }
                    i = close + 1;
                }
                other => {
                    return Err(format!(
                        "unexpected {:?} at byte {i} (expected '.', '[' or the end; quote keys holding '.', '[', ']' or '\"')",
                        other as char
                    ));
                }
            }
        }
        if want_key {
            return Err("the path ends with '.'".into());
        }
        Ok(Path { segs: segs.into() })
    }

    /// Index just past the last `[]` (0 when there is none): the steps before it lead to every
    /// element a rule runs on, the steps after it are walked inside each.
    pub(crate) fn split(&self) -> usize {
        self.segs
            .iter()
            .rposition(|s| *s == Seg::Each)
            .map_or(0, |i| i + 1)
    }
}

/// A double-quoted key starting at `start`: its text and the index after the closing quote.
fn quoted(text: &str, start: usize) -> Result<(String, usize), String> {
    let mut key = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((n, c)) = chars.next() {
        match c {
            '"' => return Ok((key, start + 1 + n + 1)),
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\\'))) => key.push(e),
                _ => {
                    return Err(format!(
                        "bad escape at byte {} (inside quotes only \\\" and \\\\ are escapes)",
                        start + 1 + n
                    ))
                }
            },
            c => key.push(c),
        }
    }
    Err(format!("the quote at byte {start} is not closed"))
}

/// What a walk found at a location.
pub(crate) type Found<T> = Result<Option<T>, SkipReason>;

/// The value at `segs` (no `[]` in them) below `v`: `Ok(None)` when absent, `Err` when a step
/// meets the wrong kind of value.
pub(crate) fn get<'a>(mut v: &'a Value, segs: &[Seg]) -> Found<&'a Value> {
    for seg in segs {
        let next = match (seg, v) {
            (Seg::Key(k), Value::Object(m)) => m.get(&**k),
            (Seg::Index(n), Value::Array(a)) => a.get(*n),
            (Seg::Key(_), _) => return Err(SkipReason::NotAnObject),
            (Seg::Index(_) | Seg::Each, _) => return Err(SkipReason::NotAnArray),
        };
        match next {
            Some(n) => v = n,
            None => return Ok(None),
        }
    }
    Ok(Some(v))
}

/// [`get`], mutably.
pub(crate) fn get_mut<'a>(mut v: &'a mut Value, segs: &[Seg]) -> Found<&'a mut Value> {
    for seg in segs {
        let next = match (seg, v) {
            (Seg::Key(k), Value::Object(m)) => m.get_mut(&**k),
            (Seg::Index(n), Value::Array(a)) => a.get_mut(*n),
            (Seg::Key(_), _) => return Err(SkipReason::NotAnObject),
            (Seg::Index(_) | Seg::Each, _) => return Err(SkipReason::NotAnArray),
        };
        match next {
            Some(n) => v = n,
            None => return Ok(None),
        }
    }
    Ok(Some(v))
}

/// Calls `f` on every value `segs` names below `v` (each `[]` expands to every element);
/// counts each location where a step met the wrong kind of value. Absent locations are skipped
/// silently: there is nothing there to act on.
pub(crate) fn for_each(
    v: &mut Value,
    segs: &[Seg],
    skipped: &mut dyn FnMut(SkipReason),
    f: &mut dyn FnMut(&mut Value),
) {
    let Some(each) = segs.iter().position(|s| *s == Seg::Each) else {
        match get_mut(v, segs) {
            Ok(Some(v)) => f(v),
            Ok(None) => {}
            Err(reason) => skipped(reason),
        }
        return;
    };
    match get_mut(v, &segs[..each]) {
        Ok(Some(Value::Array(items))) => {
            for item in items {
                for_each(item, &segs[each + 1..], skipped, f);
            }
        }
        Ok(Some(_)) => skipped(SkipReason::NotAnArray),
        Ok(None) => {}
        Err(reason) => skipped(reason),
    }
}

/// Removes the value at `segs` (not empty, no `[]`); an array element removed shifts the ones
/// after it.
pub(crate) fn take(v: &mut Value, segs: &[Seg]) -> Found<Value> {
    let Some((last, parents)) = segs.split_last() else {
        return Ok(None);
    };
    let Some(parent) = get_mut(v, parents)? else {
        return Ok(None);
    };
    match (last, parent) {
        (Seg::Key(k), Value::Object(m)) => Ok(m.remove(&**k)),
        (Seg::Index(n), Value::Array(a)) => Ok((*n < a.len()).then(|| a.remove(*n))),
        (Seg::Key(_), _) => Err(SkipReason::NotAnObject),
        (Seg::Index(_) | Seg::Each, _) => Err(SkipReason::NotAnArray),
    }
}

/// Writes `value` at `segs` (no `[]`), replacing what is there and creating missing objects on
/// the way (never arrays or elements). All or nothing: every step that can fail is decided
/// before the first change, so on `Err` the event is as it was and `value` comes back.
pub(crate) fn put(v: &mut Value, segs: &[Seg], value: Value) -> Result<(), (SkipReason, Value)> {
    let Some((seg, below)) = segs.split_first() else {
        *v = value;
        return Ok(());
    };
    match (seg, v) {
        (Seg::Key(k), Value::Object(m)) => {
            if below.is_empty() {
                // One lookup: `insert` replaces a present value (its key is kept).
                m.insert(k.to_string(), value);
                return Ok(());
            }
            // Recursion, not a loop, so the borrow of `m` ends when the key is absent.
            if let Some(next) = m.get_mut(&**k) {
                return put(next, below, value);
            }
            // Missing from here on, so only new objects lie below: the rest must be keys.
            if !below.iter().all(|s| matches!(s, Seg::Key(_))) {
                return Err((SkipReason::IndexOutOfRange, value));
            }
            m.insert(k.to_string(), nest(below, value));
            Ok(())
        }
        (Seg::Index(n), Value::Array(a)) => match a.get_mut(*n) {
            Some(next) => put(next, below, value),
            None => Err((SkipReason::IndexOutOfRange, value)),
        },
        (Seg::Key(_), _) => Err((SkipReason::NotAnObject, value)),
        (Seg::Index(_) | Seg::Each, _) => Err((SkipReason::NotAnArray, value)),
    }
}

/// `value` inside new objects, one per key of `keys` (all keys).
fn nest(keys: &[Seg], value: Value) -> Value {
    keys.iter().rev().fold(value, |inner, seg| {
        let mut m = serde_json::Map::new();
        if let Seg::Key(k) = seg {
            m.insert(k.to_string(), inner);
        }
        Value::Object(m)
    })
}

#[cfg(test)]
mod tests;
