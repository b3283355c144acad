//! `[destinations.<name>]` and `[[routes]]` as written in the configuration, and their rules.
//!
//! A destination's section holds `kind` and that sink's own keys, the keys of `[sink.<kind>]`
//! written directly in the section:
//!
//! ```toml
//! [destinations.archive]
//! kind = "file"
//! dir = "/var/lib/evlog/archive"
//! ```
//!
//! It is read as the [`SinkConfig`] `[sink]` would hold (`kind` and `[sink.<kind>]`), so every
//! sink (and any sink added later) is a destination with no code here, and checked by the same
//! `validate()`; an error names the key as written (`destinations.archive.dir`).

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::ConfigError;
use crate::sink::SinkConfig;

/// The one destination a configuration without `[destinations]` has: `[sink]`, receiving every
/// table (unless `[[routes]]` say otherwise).
pub const DEFAULT_DESTINATION: &str = "default";

/// Most destinations one configuration may name (a [`DestinationSet`](super::DestinationSet)
/// is one 64-bit word).
pub const MAX_DESTINATIONS: usize = 64;

/// `[destinations.<name>]`: a named sink (see the module docs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DestinationConfig {
    /// The sink as `[sink]` would hold it: `kind` and its section; the other sinks' sections
    /// are their defaults.
    pub sink: SinkConfig,
}

impl<'de> Deserialize<'de> for DestinationConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut keys = toml::Table::deserialize(d)?;
        let kind = keys.remove("kind").ok_or_else(|| {
            D::Error::custom("missing field `kind` (the sink: file, bigquery, forward, null, …)")
        })?;
        let name = kind
            .as_str()
            .ok_or_else(|| D::Error::custom("`kind` must be a string"))?
            .to_owned();
        let mut sink = toml::Table::new();
        sink.insert("kind".into(), kind);
        if !keys.is_empty() {
            // A kind without a section of its own (null) takes no keys: say so, rather than
            // "unknown field `null`".
            let has_section = toml::Value::try_from(SinkConfig::default())
                .ok()
                .and_then(|v| v.as_table().map(|t| t.contains_key(&name)))
                .unwrap_or(false);
            if !has_section {
                let first = keys.keys().next().cloned().unwrap_or_default();
                return Err(D::Error::custom(format!(
                    "unknown field `{first}`: kind = \"{name}\" takes no other keys"
                )));
            }
            sink.insert(name, toml::Value::Table(keys));
        }
        SinkConfig::deserialize(toml::Value::Table(sink))
            .map(|sink| Self { sink })
            .map_err(|e| D::Error::custom(e.to_string().trim_end()))
    }
}

impl Serialize for DestinationConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let whole = toml::Value::try_from(&self.sink).map_err(S::Error::custom)?;
        let mut out = toml::Table::new();
        if let toml::Value::Table(mut t) = whole {
            if let Some(kind) = t.remove("kind") {
                if let Some(toml::Value::Table(own)) = kind.as_str().and_then(|k| t.remove(k)) {
                    out.extend(own);
                }
                out.insert("kind".into(), kind);
            }
        }
        out.serialize(s)
    }
}

impl DestinationConfig {
    /// The sink's rules, with keys named as written here: `destinations.<name>.<key>`.
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        self.sink.validate().or_else(|e| match e {
            ConfigError::Invalid { key, rule } => {
                // `sink.<kind>.<key>` → `destinations.<name>.<key>`.
                let own = key.splitn(3, '.').nth(2).unwrap_or(key);
                ConfigError::invalid_at(
                    format!("destinations.{name}.{own}"),
                    rule.replace("sink.kind", "kind"),
                )
            }
            other => Err(other),
        })
    }
}

/// `[[routes]]`: which destinations receive the events of some tables.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `namespace.type` globs (`*` matches any run of characters, `"*"` alone every table):
    /// `["events.*", "billing.invoice"]`.
    pub tables: Vec<String>,
    /// The destinations that receive what this route takes, by name.
    pub to: Vec<String>,
    /// Only events whose field passes this test.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub filter: Option<WhereConfig>,
    /// The share of events taken, 0 to 1, decided by the event id (so every process, retry and
    /// replica takes the same events); absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<f64>,
}

/// A route's `where`: one field and one test (`equals`, `exists` or `in`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WhereConfig {
    /// The field, a dotted path into the event's nested objects: `"level"`, `"user.plan"`.
    pub field: String,
    /// The field equals this string, number or boolean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<toml::Value>,
    /// The field is present (`true`) or absent (`false`). `null` counts as present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    /// The field equals one of these strings, numbers or booleans.
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<toml::Value>>,
}

/// Checks destinations by themselves: names, how many, and each sink's rules. (Routes are
/// checked when they are compiled, [`Routes::new`](super::Routes::new).)
pub(crate) fn validate_destinations(
    destinations: &BTreeMap<String, DestinationConfig>,
) -> Result<(), ConfigError> {
    if destinations.len() > MAX_DESTINATIONS {
        return ConfigError::invalid(
            "destinations",
            format!(
                "{} destinations; at most {MAX_DESTINATIONS}",
                destinations.len()
            ),
        );
    }
    for (name, d) in destinations {
        check_name(name)?;
        d.validate(name)?;
    }
    Ok(())
}

/// A destination's name becomes a spool directory and a metric label: letters, digits, `_`
/// and `-`, at most 64 bytes, not starting with `.` or `-`.
fn check_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !name.starts_with('-');
    if ok {
        return Ok(());
    }
    ConfigError::invalid_at(
        format!("destinations.{name:?}"),
        "a destination's name is 1 to 64 letters, digits, `_` or `-` (not starting with `-`): \
         it names a spool directory and a metric label",
    )
}
