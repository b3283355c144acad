//! What each rule does at the values its path reaches, and what it counts.
//!
//! Every rule first reaches the elements its path's `[]` name (or the event itself), then acts
//! inside each on the rest of the path. A location counts as applied when the rule found what it
//! acts on there; as skipped, with a reason, when a step or the value was the wrong kind; not at
//! all when the path is absent (a `default` on a present value is absent work too).

use serde_json::Value;

use super::compile::{Kind, Op};
use super::path::{self, Seg};
use super::{Applied, SkipReason};

impl Op {
    /// Runs the rule on `event` (an object), adding to `tally`.
    pub(crate) fn run(&self, event: &mut Value, tally: &mut Applied) {
        let segs = &self.path.segs;
        if self.split == 0 {
            // No `[]`: one location, the event itself (most rules; no walk to elements).
            match at_element(&self.kind, event, segs) {
                Some(Ok(())) => tally.applied += 1,
                Some(Err(r)) => tally.skip(r),
                None => {}
            }
            return;
        }
        let (base, rest) = segs.split_at(self.split);
        // Two tallies: one for the walk to the elements, one for the rule at each.
        let mut walk = Applied::default();
        let mut at = Applied::default();
        let mut blocked = |r: SkipReason| walk.skip(r);
        match &self.kind {
            Kind::Drop if rest.is_empty() => {
                // `items[]`: every element goes; the array stays, empty.
                let parent = &segs[..segs.len() - 1];
                path::for_each(event, parent, &mut blocked, &mut |v| match v {
                    Value::Array(a) => {
                        a.clear();
                        at.applied += 1;
                    }
                    _ => at.skip(SkipReason::NotAnArray),
                });
            }
            kind => path::for_each(event, base, &mut blocked, &mut |elem| match at_element(
                kind, elem, rest,
            ) {
                Some(Ok(())) => at.applied += 1,
                Some(Err(r)) => at.skip(r),
                None => {}
            }),
        }
        *tally += walk;
        *tally += at;
    }
}

/// The rule inside one element (or the event): `None` when there is nothing to act on.
fn at_element(kind: &Kind, elem: &mut Value, rest: &[Seg]) -> Option<Result<(), SkipReason>> {
    match kind {
        Kind::Rename(to) => {
            let value = match path::take(elem, rest) {
                Ok(Some(v)) => v,
                Ok(None) => return None,
                Err(r) => return Some(Err(r)),
            };
            match path::put(elem, to, value) {
                Ok(()) => Some(Ok(())),
                Err((r, value)) => {
                    // Back where it was: its parent object is still there (the target does
                    // not pass through the source, checked at compile time), so this holds.
                    let _ = path::put(elem, rest, value);
                    Some(Err(r))
                }
            }
        }
        Kind::RenameKey(to) => {
            let (parent, from) = match rest.split_last() {
                Some((Seg::Key(from), parent)) => (parent, from),
                _ => return None,
            };
            match path::get_mut(elem, parent) {
                Ok(Some(Value::Object(m))) => {
                    let (mut key, value) = m.remove_entry(&**from)?;
                    // Reuse the old key's buffer when the new key fits; growing it would cost
                    // more (a realloc) than a fresh allocation.
                    if key.capacity() >= to.len() {
                        key.clear();
                        key.push_str(to);
                    } else {
                        key = String::from(&**to);
                    }
                    m.insert(key, value);
                    Some(Ok(()))
                }
                Ok(Some(_)) => Some(Err(SkipReason::NotAnObject)),
                Ok(None) => None,
                Err(r) => Some(Err(r)),
            }
        }
        Kind::Copy(to) => {
            let value = match path::get(elem, rest) {
                Ok(Some(v)) => v.clone(),
                Ok(None) => return None,
                Err(r) => return Some(Err(r)),
            };
            Some(path::put(elem, to, value).map_err(|(r, _)| r))
        }
        Kind::Set(value) => Some(path::put(elem, rest, value.clone()).map_err(|(r, _)| r)),
        Kind::Default(value) => match path::get(elem, rest) {
            Ok(Some(_)) => None,
            Ok(None) => Some(path::put(elem, rest, value.clone()).map_err(|(r, _)| r)),
            Err(r) => Some(Err(r)),
        },
        Kind::Drop => match path::take(elem, rest) {
            Ok(Some(_)) => Some(Ok(())),
            Ok(None) => None,
            Err(r) => Some(Err(r)),
        },
        Kind::Hash(_) | Kind::Mask(_) | Kind::Truncate(_) | Kind::Redact(_) => {
            match path::get_mut(elem, rest) {
                Ok(Some(v)) => on_value(kind, v),
                Ok(None) => None,
                Err(r) => Some(Err(r)),
            }
        }
    }
}

/// The string rules on one value. Strings are rewritten; `hash` and `mask` also take numbers
/// (their JSON text) and leave a string; `null` is left alone (nothing to hide); anything else
/// cannot apply.
fn on_value(kind: &Kind, v: &mut Value) -> Option<Result<(), SkipReason>> {
    let s = match v {
        Value::Null => return None,
        Value::String(s) => s,
        Value::Number(n) if matches!(kind, Kind::Hash(_) | Kind::Mask(_)) => {
            *v = Value::String(n.to_string());
            let Value::String(s) = v else {
                return Some(Err(SkipReason::NotAString));
            };
            s
        }
        _ => return Some(Err(SkipReason::NotAString)),
    };
    match kind {
        Kind::Hash(h) => h.hash_in_place(s),
        Kind::Mask(keep) => mask(s, *keep),
        // A string of at most `max` bytes has at most `max` characters: no need to count.
        Kind::Truncate(max) if s.len() > *max => {
            if let Some((cut, _)) = s.char_indices().nth(*max) {
                s.truncate(cut);
            }
        }
        Kind::Redact(patterns) => {
            if let Some(clean) = patterns.redact(s) {
                *s = clean;
            }
        }
        _ => {}
    }
    Some(Ok(()))
}

/// Keeps the last `keep` characters, each other one becomes `*`.
fn mask(s: &mut String, keep: usize) {
    let chars = s.chars().count();
    if chars <= keep {
        return;
    }
    let hidden = chars - keep;
    let cut = s.char_indices().nth(hidden).map_or(s.len(), |(i, _)| i);
    let mut out = String::with_capacity(hidden + (s.len() - cut));
    out.extend(std::iter::repeat_n('*', hidden));
    out.push_str(&s[cut..]);
    *s = out;
}
