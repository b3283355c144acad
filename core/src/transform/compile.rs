//! From `[[transforms]]` entries as written to what runs: every glob, path, number, pattern and
//! key checked once, each error naming the entry, the rule and the path
//! (`transforms[2].mask."card": expected a non-negative integer`).

use serde_json::Value;
use thiserror::Error;

use super::config::{TransformConfig, DEFAULT_KEY_ENV};
use super::glob::TableGlob;
use super::hash::Hasher;
use super::path::{Path, Seg};
use super::redact::{self, Patterns};

/// Shortest hash key accepted, in bytes: a shorter one makes the hashes guessable by trying keys.
pub const MIN_KEY_BYTES: usize = 16;

/// A `[[transforms]]` entry that breaks a rule: the key (`transforms[2].mask."card"`; entries
/// count from 0) and the rule. Never holds a hash key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{key}: {rule}")]
pub struct TransformError {
    /// Where: `transforms[<entry>]`, then the setting, then the path in quotes.
    pub key: String,
    /// What is wrong.
    pub rule: String,
}

/// One compiled entry.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) tables: Box<[TableGlob]>,
    /// `None`: every copy of the event.
    pub(crate) destinations: Option<Box<[Box<str>]>>,
    /// In the order they run.
    pub(crate) ops: Box<[Op]>,
}

/// One rule at one path.
#[derive(Debug)]
pub(crate) struct Op {
    /// The path the rule acts on (for `rename` and `copy`, the source).
    pub(crate) path: Path,
    /// `path.segs[..split]` ends with the last `[]` (or is empty): the rule acts inside each
    /// element it reaches, on `path.segs[split..]`.
    pub(crate) split: usize,
    pub(crate) kind: Kind,
}

/// What a rule does at its path.
#[derive(Debug)]
pub(crate) enum Kind {
    /// Move to this path (relative to the same element as the source).
    Rename(Box<[Seg]>),
    /// Move to this key of the same object: one walk, and the old key's buffer is reused when
    /// the new key fits.
    RenameKey(Box<str>),
    /// Copy to this path (relative to the same element as the source).
    Copy(Box<[Seg]>),
    Set(Value),
    Default(Value),
    Hash(Hasher),
    /// Characters kept at the end.
    Mask(usize),
    /// Most characters kept.
    Truncate(usize),
    Redact(Patterns),
    Drop,
}

/// Compiles every entry; `env` reads environment variables (hash keys).
pub(crate) fn compile(
    entries: &[TransformConfig],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Entry>, TransformError> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| compile_entry(i, e, env))
        .collect()
}

fn err<T>(key: String, rule: impl Into<String>) -> Result<T, TransformError> {
    Err(TransformError {
        key,
        rule: rule.into(),
    })
}

fn compile_entry(
    i: usize,
    e: &TransformConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Entry, TransformError> {
    let at = format!("transforms[{i}]");
    if e.tables.is_empty() {
        return err(
            format!("{at}.tables"),
            "must name at least one table glob, e.g. [\"events.*\"]",
        );
    }
    let mut tables = Vec::with_capacity(e.tables.len());
    for (j, glob) in e.tables.iter().enumerate() {
        match TableGlob::parse(glob) {
            Ok(g) => tables.push(g),
            Err(rule) => return err(format!("{at}.tables[{j}]"), format!("{glob:?}: {rule}")),
        }
    }
    let destinations = match &e.destinations {
        None => None,
        Some(d) if d.is_empty() => {
            return err(
                format!("{at}.destinations"),
                "is empty (leave it out to apply to every destination)",
            )
        }
        Some(d) => {
            if let Some(j) = d.iter().position(|n| n.is_empty()) {
                return err(format!("{at}.destinations[{j}]"), "is empty");
            }
            Some(d.iter().map(|n| n.as_str().into()).collect())
        }
    };

    let mut ops = Vec::new();
    let path = |rule: &str, text: &str| -> Result<Path, TransformError> {
        Path::parse(text).or_else(|e| err(format!("{at}.{rule}.{text:?}"), e))
    };
    let key = |rule: &str, text: &str| format!("{at}.{rule}.{text:?}");

    for (rule, map) in [("rename", &e.rename), ("copy", &e.copy)] {
        let mut sources: Vec<(&str, Path)> = Vec::new();
        let mut targets: Vec<(&str, Path)> = Vec::new();
        for (from, to) in map {
            let src = path(rule, from)?;
            let dst =
                Path::parse(to).or_else(|e| err(key(rule, from), format!("target {to:?}: {e}")))?;
            let kind = check_move(rule, &src, &dst).or_else(|e| err(key(rule, from), e))?;
            if let Some((other, _)) = targets.iter().find(|(_, t)| *t == dst) {
                return err(
                    key(rule, from),
                    format!("{other:?} and {from:?} both go to {to:?}"),
                );
            }
            targets.push((from, dst));
            sources.push((from, src.clone()));
            ops.push(Op {
                split: src.split(),
                path: src,
                kind,
            });
        }
        if rule == "rename" {
            // One entry's renames run in the order of their sources: a chain (a → b, b → c)
            // would depend on that order, so it must be split into entries, which run in file
            // order.
            for (from, src) in &sources {
                if let Some((other, _)) = targets.iter().find(|(_, t)| t == src) {
                    return err(
                        key(rule, from),
                        format!(
                            "{from:?} is renamed and also the target of {other:?}: put the two renames in separate [[transforms]] entries (entries apply in order)"
                        ),
                    );
                }
            }
        }
    }
    for (rule, map, set) in [("set", &e.set, true), ("default", &e.default, false)] {
        for (p, value) in map {
            let path = path(rule, p)?;
            if has_toml_datetime(value) {
                return err(
                    key(rule, p),
                    "a TOML date or time is not a JSON value: write it as a string",
                );
            }
            ops.push(Op {
                split: path.split(),
                path,
                kind: if set {
                    Kind::Set(value.clone())
                } else {
                    Kind::Default(value.clone())
                },
            });
        }
    }
    let hasher = hasher(&at, e, env)?;
    if let Some(hasher) = hasher {
        for p in &e.hash {
            let path = path("hash", p)?;
            ops.push(Op {
                split: path.split(),
                path,
                kind: Kind::Hash(hasher.clone()),
            });
        }
    }
    for (p, n) in &e.mask {
        let path = path("mask", p)?;
        let Some(n) = n.as_u64().and_then(|n| usize::try_from(n).ok()) else {
            return err(key("mask", p), "expected a non-negative integer");
        };
        ops.push(Op {
            split: path.split(),
            path,
            kind: Kind::Mask(n),
        });
    }
    for (p, n) in &e.truncate {
        let path = path("truncate", p)?;
        let Some(n) = n
            .as_u64()
            .filter(|&n| n > 0)
            .and_then(|n| usize::try_from(n).ok())
        else {
            return err(key("truncate", p), "expected a positive integer");
        };
        ops.push(Op {
            split: path.split(),
            path,
            kind: Kind::Truncate(n),
        });
    }
    for (p, names) in &e.redact {
        let path = path("redact", p)?;
        let known = redact::NAMES.join(", ");
        let Some(names) = names.as_array().filter(|a| !a.is_empty()) else {
            return err(
                key("redact", p),
                format!(
                    "expected a list of patterns, e.g. [\"email\", \"card\"] (patterns: {known})"
                ),
            );
        };
        let mut patterns = Patterns::default();
        for name in names {
            let ok = name.as_str().is_some_and(|n| patterns.add(n));
            if !ok {
                return err(
                    key("redact", p),
                    format!("unknown pattern {name} (patterns: {known})"),
                );
            }
        }
        ops.push(Op {
            split: path.split(),
            path,
            kind: Kind::Redact(patterns),
        });
    }
    for p in &e.drop {
        let path = path("drop", p)?;
        ops.push(Op {
            split: path.split(),
            path,
            kind: Kind::Drop,
        });
    }
    if ops.is_empty() {
        return err(
            at,
            "has no rules (rename, copy, set, default, hash, mask, truncate, redact, drop)",
        );
    }
    Ok(Entry {
        tables: tables.into(),
        destinations,
        ops: ops.into(),
    })
}

/// The rules of a `rename` or `copy` between two paths; the compiled rule.
fn check_move(rule: &str, src: &Path, dst: &Path) -> Result<Kind, String> {
    let split = src.split();
    if split != dst.split() || src.segs[..split] != dst.segs[..split] {
        return Err(format!(
            "target {dst}: both paths must go through the same [] ({rule} acts inside each element: \"items[].a\" = \"items[].b\")"
        ));
    }
    let (from, to) = (&src.segs[split..], &dst.segs[split..]);
    if from.is_empty() || to.is_empty() {
        return Err(format!(
            "{rule} acts on one value: neither path may end with []"
        ));
    }
    if from == to {
        return Err("the source and the target are the same path".into());
    }
    if rule == "rename" {
        if !matches!(from.last(), Some(Seg::Key(_))) {
            return Err(
                "rename moves a key: the source must end with a key, not [N] (use copy, then drop)"
                    .into(),
            );
        }
        if to.starts_with(from) {
            return Err(format!("target {dst} lies inside the value being moved"));
        }
        if let (Some((Seg::Key(key), to_parent)), Some((_, from_parent))) =
            (to.split_last(), from.split_last())
        {
            if to_parent == from_parent {
                return Ok(Kind::RenameKey(key.clone()));
            }
        }
        return Ok(Kind::Rename(to.into()));
    }
    Ok(Kind::Copy(to.into()))
}

/// The entry's keyed hasher when it has `hash` paths.
fn hasher(
    at: &str,
    e: &TransformConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Hasher>, TransformError> {
    if e.hash.is_empty() {
        if e.hash_key.is_some() {
            return err(
                format!("{at}.hash_key"),
                "is set but the entry has no hash rule",
            );
        }
        if e.hash_key_env.is_some() {
            return err(
                format!("{at}.hash_key_env"),
                "is set but the entry has no hash rule",
            );
        }
        return Ok(None);
    }
    if let Some(key) = &e.hash_key {
        if e.hash_key_env.is_some() {
            return err(
                format!("{at}.hash_key"),
                "hash_key and hash_key_env are both set: keep one",
            );
        }
        let n = key.expose().len();
        if n < MIN_KEY_BYTES {
            return err(
                format!("{at}.hash_key"),
                format!("is {n} bytes; at least {MIN_KEY_BYTES} are needed"),
            );
        }
        return Ok(Some(Hasher::new(key.expose())));
    }
    let var = e.hash_key_env.as_deref().unwrap_or(DEFAULT_KEY_ENV);
    if var.is_empty() {
        return err(format!("{at}.hash_key_env"), "is empty");
    }
    match env(var) {
        None => err(
            format!("{at}.hash"),
            format!(
                "needs a key: set hash_key, or the environment variable {var}{}",
                if e.hash_key_env.is_some() {
                    " (named by hash_key_env)"
                } else {
                    " (or name another with hash_key_env)"
                }
            ),
        ),
        Some(key) if key.len() < MIN_KEY_BYTES => err(
            format!("{at}.hash"),
            format!(
                "the key in {var} is {} bytes; at least {MIN_KEY_BYTES} are needed",
                key.len()
            ),
        ),
        Some(key) => Ok(Some(Hasher::new(&key))),
    }
}

/// Whether a value read from TOML holds a date or time (the toml crate hands those to a JSON
/// value as a one-key object).
fn has_toml_datetime(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            m.contains_key("$__toml_private_datetime") || m.values().any(has_toml_datetime)
        }
        Value::Array(a) => a.iter().any(has_toml_datetime),
        _ => false,
    }
}
