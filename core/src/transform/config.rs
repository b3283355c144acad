//! `[[transforms]]`: one entry of the config, as written. [`super::TransformSet::compile`] checks
//! it and builds what runs.
//!
//! Values whose rules serde cannot state (`mask = { card = 4 }` needs a non-negative integer,
//! `redact` a list of known pattern names) are read as JSON values here, so that the compile step
//! reports a wrong one as `transforms[2].mask."card": expected a non-negative integer`, naming
//! the entry, the rule and the path.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The environment variable read for the hash key when `hash_key_env` is not set.
pub const DEFAULT_KEY_ENV: &str = "EVLOG_TRANSFORM_KEY";

/// One `[[transforms]]` entry. Rules apply in the fixed order the module doc gives
/// ([`crate::transform`]); entries apply in file order.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// Tables the entry applies to: `namespace.type` globs (`*` any run of characters, `?` one
    /// character), e.g. `["events.*"]`; `"*"` is every table. Required, at least one.
    pub tables: Vec<String>,
    /// Only the copy of the event bound for these destinations (names of
    /// `[destinations.<name>]`); absent: every copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destinations: Option<Vec<String>>,
    /// `{ from = "to" }`: moves a value to another path (replacing what is there).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
    /// `{ from = "to" }`: copies a value to another path (replacing what is there).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub copy: BTreeMap<String, String>,
    /// `{ path = value }`: writes the value, replacing what is there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, Value>,
    /// `{ path = value }`: writes the value only where the path is absent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub default: BTreeMap<String, Value>,
    /// `[path, …]`: replaces each value with its keyed HMAC-SHA256 in hex.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hash: Vec<String>,
    /// The key for `hash` (its UTF-8 bytes, at least 16). Prefer `hash_key_env`: a key in a file
    /// is a key in backups. Never printed: `Debug` and serialization show `<redacted>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<HashKey>,
    /// The environment variable holding the key for `hash` when `hash_key` is not set (default
    /// `EVLOG_TRANSFORM_KEY`). Pick a name outside `EVLOG_*`: those are read as config overrides,
    /// and one that names no setting is refused at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key_env: Option<String>,
    /// `{ path = N }`: keeps the last N characters, replaces the others with `*`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mask: BTreeMap<String, Value>,
    /// `{ path = N }`: cuts strings longer than N characters (N ≥ 1) to their first N.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub truncate: BTreeMap<String, Value>,
    /// `{ path = ["email", "ipv4", "ipv6", "card"] }`: replaces what the patterns find inside
    /// the string with `[email]`, `[ipv4]`, `[ipv6]` or `[card]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub redact: BTreeMap<String, Value>,
    /// `[path, …]`: removes the values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

/// A hash key from the config file. Its `Debug` and its serialization are `<redacted>`, so a
/// config printed in a log, an error or `phpinfo()` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct HashKey(String);

impl HashKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> HashKey {
        HashKey(key.into())
    }

    /// The key. Only for keying the HMAC: never print it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for HashKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(HashKey)
    }
}

impl Serialize for HashKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}
