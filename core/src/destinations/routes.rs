//! Routes compiled from `[[routes]]`: which destinations an event goes to.

use crate::config::{Config, ConfigError, SinkKind};
use crate::schema::jref::{self, JRef};

use super::config::{RouteConfig, WhereConfig, DEFAULT_DESTINATION};

/// A set of destinations, by their index in [`Routes::names`] (at most 64).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DestinationSet(u64);

impl DestinationSet {
    /// No destination.
    pub const EMPTY: DestinationSet = DestinationSet(0);

    /// The destination `i` alone.
    pub fn single(i: usize) -> Self {
        Self(1 << i)
    }

    /// Adds the destination `i`.
    pub fn insert(&mut self, i: usize) {
        self.0 |= 1 << i;
    }

    /// Whether it holds destination `i`.
    pub fn contains(self, i: usize) -> bool {
        i < 64 && self.0 & (1 << i) != 0
    }

    /// Whether it holds none.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many it holds.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The indexes it holds, ascending.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(i)
        })
    }
}

impl std::ops::BitOr for DestinationSet {
    type Output = Self;
    fn bitor(self, o: Self) -> Self {
        Self(self.0 | o.0)
    }
}

/// The compiled `[[routes]]` of a configuration (see the module docs of
/// [`crate::destinations`]).
#[derive(Debug, Clone)]
pub struct Routes {
    names: Vec<String>,
    routes: Vec<Route>,
}

impl Routes {
    /// Whether some route samples (then [`Routes::select`] needs the event's id).
    pub fn samples(&self) -> bool {
        self.routes.iter().any(|r| r.sample.is_some())
    }
}

#[derive(Debug, Clone)]
struct Route {
    tables: Vec<Glob>,
    to: DestinationSet,
    filter: Option<Filter>,
    /// `None` takes every event.
    sample: Option<f64>,
}

/// `namespace.type` glob, its two parts apart; `None` parts match anything (the glob `"*"`).
#[derive(Debug, Clone)]
struct Glob {
    namespace: String,
    type_name: String,
}

#[derive(Debug, Clone)]
struct Filter {
    path: Vec<String>,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Equals(Scalar),
    Exists(bool),
    In(Vec<Scalar>),
}

#[derive(Debug, Clone)]
enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Routes {
    /// Compiles the routes of `config`, checking them: every error names the key
    /// (`routes[1].to[0]: no destination "x"; defined: a, b`). Indexes count from 0.
    pub fn new(config: &Config) -> Result<Self, ConfigError> {
        let names = config.destination_names();
        if config.routes.is_empty() {
            if !config.destinations.is_empty() {
                return ConfigError::invalid(
                    "routes",
                    format!(
                        "[destinations] are defined ({}) but no [[routes]]: add at least one \
                         route, e.g. tables = [\"*\"], to = [\"{}\"]",
                        names.join(", "),
                        names[0]
                    ),
                );
            }
            // `[sink]` alone: every table to it.
            return Ok(Self {
                names,
                routes: vec![Route {
                    tables: vec![Glob::all()],
                    to: DestinationSet::single(0),
                    filter: None,
                    sample: None,
                }],
            });
        }
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| Route::new(i, r, &names))
            .collect::<Result<_, _>>()?;
        Ok(Self { names, routes })
    }

    /// Every table to the destination `name` (a configuration whose routes could not be
    /// compiled never gets this far; this is what code that builds parts by hand gets).
    pub fn single(name: &str) -> Self {
        Self {
            names: vec![name.to_owned()],
            routes: vec![Route {
                tables: vec![Glob::all()],
                to: DestinationSet::single(0),
                filter: None,
                sample: None,
            }],
        }
    }

    /// The destinations' names; an index in a [`DestinationSet`] is a position here.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The destinations an event of `namespace`.`type_name` with id `id` and body `body` (JSON
    /// text) goes to: those of every route that takes it. The body is parsed only when a route
    /// of the table has a `where`; a body that is not a JSON object has no fields.
    pub fn select(&self, namespace: &str, type_name: &str, id: &str, body: &str) -> DestinationSet {
        self.select_lazy(namespace, type_name, id, || match jref::parse(body) {
            Ok(JRef::Object(o)) => Some(JRef::Object(o)),
            _ => None,
        })
    }

    /// [`Routes::select`] for a row converted elsewhere (the collector's `/v1/rows`): a
    /// `where` field is looked up among the row's columns, then in its `other` column (the
    /// fields its schema does not name, as JSON text).
    pub fn select_row(
        &self,
        namespace: &str,
        type_name: &str,
        id: &str,
        row: &str,
    ) -> DestinationSet {
        self.select_lazy(namespace, type_name, id, || {
            let JRef::Object(mut o) = jref::parse(row).ok()? else {
                return None;
            };
            // `other` holds the rest of the event: its members join the columns (a column
            // wins over an `other` member of the same name, as it did in the event).
            let other = match jref::get(&o, "other") {
                Some(JRef::String(s)) => Some(s.value().into_owned()),
                _ => None,
            };
            if let Some(Ok(serde_json::Value::Object(m))) =
                other.map(|t| serde_json::from_str::<serde_json::Value>(&t))
            {
                let mut extra = jref::Obj::new();
                for (k, v) in m {
                    if jref::get(&o, &k).is_none() {
                        extra.push((jref::JStr::plain(k), owned(v)));
                    }
                }
                extra.append(&mut o);
                o = extra;
            }
            Some(JRef::Object(o))
        })
    }

    /// [`Routes::select`] for a dead letter whose `raw` is an envelope's JSON text (its fields
    /// are its `event` member) or a row's (see [`Routes::select_row`]).
    pub fn select_dead_letter(
        &self,
        namespace: &str,
        type_name: &str,
        id: &str,
        raw: &str,
    ) -> DestinationSet {
        let envelope = match jref::parse(raw) {
            Ok(JRef::Object(o)) => match jref::get(&o, "event") {
                Some(JRef::Object(_)) => Some(o),
                _ => None,
            },
            _ => None,
        };
        match envelope {
            Some(o) => self.select_lazy(namespace, type_name, id, || {
                o.into_iter()
                    .rev()
                    .find(|(k, _)| k == "event")
                    .map(|(_, v)| v)
            }),
            None => self.select_row(namespace, type_name, id, raw),
        }
    }

    /// The selection, with the event's fields (an object) made by `fields` when a `where`
    /// needs them, at most once.
    pub(crate) fn select_lazy<'a>(
        &self,
        namespace: &str,
        type_name: &str,
        id: &str,
        fields: impl FnOnce() -> Option<JRef<'a>>,
    ) -> DestinationSet {
        if let [only] = self.routes.as_slice() {
            if only.filter.is_none()
                && only.sample.is_none()
                && only.tables.iter().any(Glob::is_all)
            {
                return only.to; // every table, every event: `[sink]` alone
            }
        }
        let mut fields = Some(fields);
        let mut parsed: Option<Option<JRef<'a>>> = None;
        let mut out = DestinationSet::EMPTY;
        for r in &self.routes {
            if out.0 | r.to.0 == out.0 || !r.tables.iter().any(|g| g.matches(namespace, type_name))
            {
                continue; // adds nothing, or not this table's
            }
            if let Some(rate) = r.sample {
                if !sampled(id, rate) {
                    continue;
                }
            }
            if let Some(f) = &r.filter {
                let body = parsed.get_or_insert_with(|| fields.take().and_then(|f| f()));
                if !f.passes(body.as_ref()) {
                    continue;
                }
            }
            out = out | r.to;
        }
        out
    }
}

/// A `serde_json::Value` as an owned [`JRef`].
fn owned(v: serde_json::Value) -> JRef<'static> {
    use serde_json::Value;
    match v {
        Value::Null => JRef::Null,
        Value::Bool(b) => JRef::Bool(b),
        Value::Number(n) => JRef::Number(jref::JNum::owned(n.to_string())),
        Value::String(s) => JRef::String(jref::JStr::plain(s)),
        Value::Array(a) => JRef::Array(a.into_iter().map(owned).collect()),
        Value::Object(m) => JRef::Object(
            m.into_iter()
                .map(|(k, v)| (jref::JStr::plain(k), owned(v)))
                .collect(),
        ),
    }
}

/// Where an id falls in `[0, 2^64)`: FNV-1a (64-bit) of its UTF-8 bytes, then splitmix64's
/// finalizer so that ids differing in their last characters spread evenly. A stable function
/// (docs/contracts.md): every process and version decides alike.
pub fn sample_point(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Whether a route that samples `rate` (0 to 1) takes the event `id`: `sample_point(id) / 2^64
/// < rate`.
pub fn sampled(id: &str, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    (sample_point(id) as f64) < rate * 18_446_744_073_709_551_616.0
}

impl Route {
    fn new(i: usize, r: &RouteConfig, names: &[String]) -> Result<Self, ConfigError> {
        let key = |k: &str| format!("routes[{i}].{k}");
        if r.tables.is_empty() {
            return ConfigError::invalid_at(
                key("tables"),
                "is empty: name the tables this route takes, e.g. [\"events.*\"] or [\"*\"]",
            );
        }
        let tables = r
            .tables
            .iter()
            .enumerate()
            .map(|(j, g)| {
                Glob::new(g)
                    .or_else(|rule| ConfigError::invalid_at(key(&format!("tables[{j}]")), rule))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if r.to.is_empty() {
            return ConfigError::invalid_at(
                key("to"),
                format!(
                    "is empty: name the destinations this route sends to (defined: {})",
                    names.join(", ")
                ),
            );
        }
        let mut to = DestinationSet::EMPTY;
        for (j, name) in r.to.iter().enumerate() {
            let Some(d) = names.iter().position(|n| n == name) else {
                return ConfigError::invalid_at(
                    key(&format!("to[{j}]")),
                    format!("no destination {name:?}; defined: {}", names.join(", ")),
                );
            };
            to.insert(d);
        }
        if let Some(s) = r.sample {
            if !(0.0..=1.0).contains(&s) {
                return ConfigError::invalid_at(
                    key("sample"),
                    format!("must be from 0 to 1 (the share of events taken), got {s}"),
                );
            }
        }
        let filter =
            match &r.filter {
                None => None,
                Some(w) => Some(Filter::new(w).or_else(|(k, rule)| {
                    ConfigError::invalid_at(key(&format!("where.{k}")), rule)
                })?),
            };
        Ok(Self {
            tables,
            to,
            filter,
            sample: r.sample.filter(|s| *s < 1.0),
        })
    }
}

impl Glob {
    fn all() -> Self {
        Self {
            namespace: "*".into(),
            type_name: "*".into(),
        }
    }

    fn is_all(&self) -> bool {
        self.namespace == "*" && self.type_name == "*"
    }

    fn new(text: &str) -> Result<Self, String> {
        if text == "*" {
            return Ok(Self::all());
        }
        let bad = |why: &str| {
            Err(format!(
                "bad table glob {text:?}: {why} (a glob is \"<namespace>.<type>\" of letters, \
                 digits, `_` and `*`, or \"*\" for every table)"
            ))
        };
        let Some((ns, ty)) = text.split_once('.') else {
            return bad("no `.` between namespace and type");
        };
        for part in [ns, ty] {
            if part.is_empty() {
                return bad("an empty part");
            }
            if let Some(c) = part
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '*'))
            {
                return bad(&format!("{c:?} is not allowed"));
            }
        }
        Ok(Self {
            namespace: ns.into(),
            type_name: ty.into(),
        })
    }

    fn matches(&self, namespace: &str, type_name: &str) -> bool {
        wildcard(self.namespace.as_bytes(), namespace.as_bytes())
            && wildcard(self.type_name.as_bytes(), type_name.as_bytes())
    }
}

/// `*` matches any run of bytes (none included); everything else itself.
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it now covers up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

impl Filter {
    /// The compiled test; an error is (the key under `where`, the rule).
    fn new(w: &WhereConfig) -> Result<Self, (&'static str, String)> {
        let path: Vec<String> = w.field.split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err((
                "field",
                format!("{:?} is not a dotted path of field names", w.field),
            ));
        }
        let scalar = |key: &'static str, v: &toml::Value| match v {
            toml::Value::String(s) => Ok(Scalar::Str(s.clone())),
            toml::Value::Integer(i) => Ok(Scalar::Int(*i)),
            toml::Value::Float(f) => Ok(Scalar::Float(*f)),
            toml::Value::Boolean(b) => Ok(Scalar::Bool(*b)),
            other => Err((
                key,
                format!("must be a string, number or boolean, got {other}"),
            )),
        };
        let test = match (&w.equals, w.exists, &w.one_of) {
            (Some(v), None, None) => Test::Equals(scalar("equals", v)?),
            (None, Some(b), None) => Test::Exists(b),
            (None, None, Some(vs)) => Test::In(
                vs.iter()
                    .map(|v| scalar("in", v))
                    .collect::<Result<_, _>>()?,
            ),
            _ => {
                return Err((
                    "field",
                    "takes exactly one test: equals, exists or in".into(),
                ))
            }
        };
        Ok(Self { path, test })
    }

    /// Whether the event (its fields, `None` when its body is not an object) passes.
    fn passes(&self, fields: Option<&JRef<'_>>) -> bool {
        let mut at = fields;
        for key in &self.path {
            at = match at {
                Some(JRef::Object(o)) => jref::get(o, key),
                _ => None,
            };
        }
        match (&self.test, at) {
            (Test::Exists(want), v) => v.is_some() == *want,
            (Test::Equals(s), Some(v)) => s.equals(v),
            (Test::In(ss), Some(v)) => ss.iter().any(|s| s.equals(v)),
            (_, None) => false,
        }
    }
}

impl Scalar {
    fn equals(&self, v: &JRef<'_>) -> bool {
        match (self, v) {
            (Scalar::Str(s), JRef::String(j)) => j.value() == s.as_str(),
            (Scalar::Bool(b), JRef::Bool(j)) => b == j,
            (Scalar::Int(i), JRef::Number(n)) => match n.as_i64() {
                Some(x) => x == *i,
                None => n.as_f64() == Some(*i as f64),
            },
            (Scalar::Float(f), JRef::Number(n)) => n.as_f64() == Some(*f),
            _ => false,
        }
    }
}

impl Config {
    /// The destinations' names in index order: those of `[destinations]` (sorted), or
    /// `["default"]` for `[sink]`.
    pub fn destination_names(&self) -> Vec<String> {
        if self.destinations.is_empty() {
            vec![DEFAULT_DESTINATION.to_owned()]
        } else {
            self.destinations.keys().cloned().collect()
        }
    }

    /// The spool of the destination `name`, if it has one (see [`crate::config::SpoolConfig`]):
    /// its directory, and whether that is the default one (private to the user, checked as
    /// such when created). With `spool.dir`: `spool.dir` for `[sink]`'s `default` (as before
    /// destinations existed), `spool.dir/<name>` for a named destination.
    pub fn destination_spool(&self, name: &str) -> Option<(std::path::PathBuf, bool)> {
        let sinks = self.destination_sinks();
        let sink = &sinks.iter().find(|(n, _)| n == name)?.1;
        let networked = matches!(
            sink.kind,
            SinkKind::Forward | SinkKind::Bigquery | SinkKind::Opensearch
        );
        if !self.spool.enabled.unwrap_or(networked) {
            return None;
        }
        Some(match &self.spool.dir {
            Some(dir) if self.destinations.is_empty() => (dir.clone(), false),
            Some(dir) => (dir.join(name), false),
            None => (crate::config::default_spool_dir(name, sink), true),
        })
    }

    /// The destinations' sinks in index order (see [`Config::destination_names`]).
    pub fn destination_sinks(&self) -> Vec<(String, crate::sink::SinkConfig)> {
        if self.destinations.is_empty() {
            vec![(DEFAULT_DESTINATION.to_owned(), self.sink.clone())]
        } else {
            self.destinations
                .iter()
                .map(|(n, d)| (n.clone(), d.sink.clone()))
                .collect()
        }
    }
}
