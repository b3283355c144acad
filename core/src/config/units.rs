//! How sizes and durations are written in configuration files, for every section of core's and the
//! collector's configuration (a leaf: it depends on nothing else in evlog).
//!
//! - Sizes ([`ByteSize`]): an integer (bytes) or a string with a unit, `"512KiB"`, `"1MiB"`,
//!   `"10MB"`, `"1GiB"` (`K`/`M`/`G` alone are binary). Written back as an integer.
//! - Durations ([`duration_str`]): a string such as `"250ms"`, `"1s"`, `"2m"`, `"1m 30s"`
//!   (humantime's format). Written back in the same format.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes; reads integers or strings like `"64KiB"`, `"1MiB"`, `"10MB"`, `"1GiB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '_'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.replace('_', "").parse().map_err(|_| {
            format!("expected a size like 1048576, \"512KiB\" or \"10MB\", got {s:?}")
        })?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1000,
            "kib" | "k" => 1024,
            "mb" => 1000 * 1000,
            "mib" | "m" => 1024 * 1024,
            "gb" => 1000 * 1000 * 1000,
            "gib" | "g" => 1024 * 1024 * 1024,
            other => {
                return Err(format!(
                    "unknown size unit {other:?} in {s:?} (use B, KB, KiB, MB, MiB, GB or GiB)"
                ))
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size in bytes or a string like \"1MiB\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("size must not be negative, got {v}")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Durations as human strings (`"250ms"`, `"1s"`, `"1m 30s"`), for `#[serde(with = ...)]` (or
/// `deserialize_with = ".../deserialize"` where a struct is only read).
pub mod duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `d` as humantime text (`"1m 30s"`).
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Reads humantime text; the error quotes the value and shows the expected form.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "expected a duration like \"250ms\", \"1s\" or \"2m\", got {s:?}: {e}"
            ))
        })
    }
}
