//! Index name patterns: `{namespace}-{type}-{date}` and the like.
//!
//! A pattern is literal text with placeholders. The values put in are lowercased (OpenSearch
//! index names are lowercase; evlog's dataset names are `[A-Za-z0-9_]` and table names letters,
//! digits, `_` and `-`, so nothing else needs escaping); `{date}` is the destination's UTC day as
//! `YYYY.MM.DD`. The literal text must itself be a valid part of an index name: lowercase, none of
//! [`FORBIDDEN`], and the name must not start with `_`, `-` or `+`.

/// Characters OpenSearch refuses in index names (`:` is deprecated, refused here).
pub const FORBIDDEN: &[char] = &['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':'];

/// A placeholder of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// `{namespace}`: the destination's dataset (the namespace unless `[routing.tables]` maps it
    /// elsewhere).
    Namespace,
    /// `{type}`: the destination's base table (the event type unless routed elsewhere).
    Type,
    /// `{date}`: the UTC day, `YYYY.MM.DD`.
    Date,
}

impl Placeholder {
    fn name(self) -> &'static str {
        match self {
            Placeholder::Namespace => "{namespace}",
            Placeholder::Type => "{type}",
            Placeholder::Date => "{date}",
        }
    }
}

/// Every placeholder (what `index` takes).
pub const ALL: [Placeholder; 3] = [Placeholder::Namespace, Placeholder::Type, Placeholder::Date];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Value(Placeholder),
}

/// A parsed index name pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPattern {
    parts: Vec<Part>,
}

/// The values of one name: dataset, table and day (`YYYYMMDD`), any of them absent when the
/// pattern cannot hold it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Values<'a> {
    /// `{namespace}`.
    pub namespace: Option<&'a str>,
    /// `{type}`.
    pub type_name: Option<&'a str>,
    /// `{date}`, as `YYYYMMDD`.
    pub day: Option<&'a str>,
}

impl IndexPattern {
    /// Parses `text`, allowing only the placeholders in `allowed`; the error is the rule broken.
    pub fn parse(text: &str, allowed: &[Placeholder]) -> Result<Self, String> {
        let names = allowed
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", ");
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                Some(0) if rest.starts_with('{') => {
                    let end = rest
                        .find('}')
                        .ok_or_else(|| format!("{text:?}: a '{{' is not closed"))?;
                    let name = &rest[..=end];
                    let p = ALL
                        .into_iter()
                        .find(|p| p.name() == name)
                        .filter(|p| allowed.contains(p))
                        .ok_or_else(|| {
                            format!("{text:?}: unknown placeholder {name}; it takes {names}")
                        })?;
                    parts.push(Part::Value(p));
                    rest = &rest[end + 1..];
                }
                Some(0) => return Err(format!("{text:?}: a '}}' without '{{'")),
                found => {
                    let end = found.unwrap_or(rest.len());
                    let lit = &rest[..end];
                    if let Some(c) = lit.chars().find(|c| FORBIDDEN.contains(c)) {
                        return Err(format!("{text:?}: {c:?} is not allowed in an index name"));
                    }
                    if lit.chars().any(char::is_uppercase) {
                        return Err(format!("{text:?}: index names are lowercase"));
                    }
                    parts.push(Part::Text(lit.to_string()));
                    rest = &rest[end..];
                }
            }
        }
        if let Some(Part::Text(t)) = parts.first() {
            if t.starts_with(['_', '-', '+']) {
                return Err(format!(
                    "{text:?}: an index name must not start with _, - or +"
                ));
            }
        }
        if text == "." || text == ".." {
            return Err(format!("{text:?} is not an index name"));
        }
        Ok(Self { parts })
    }

    /// Whether the pattern holds `p`.
    pub fn has(&self, p: Placeholder) -> bool {
        self.parts.contains(&Part::Value(p))
    }

    /// The name for `values`; a placeholder without a value becomes `*` (a template pattern).
    pub fn render(&self, values: Values<'_>) -> String {
        let mut out = String::with_capacity(64);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Value(p) => {
                    let v = match p {
                        Placeholder::Namespace => values.namespace,
                        Placeholder::Type => values.type_name,
                        Placeholder::Date => values.day,
                    };
                    match (p, v) {
                        (_, None) => out.push('*'),
                        (Placeholder::Date, Some(day)) => push_date(&mut out, day),
                        (_, Some(v)) => out.extend(v.chars().flat_map(char::to_lowercase)),
                    }
                }
            }
        }
        out
    }

    /// The pattern with every placeholder as `*`.
    pub fn template_pattern(&self) -> String {
        self.render(Values::default())
    }

    /// Characters of literal text and values (not `*`) in `name`: how specific a template
    /// pattern is.
    pub fn specificity(name: &str) -> usize {
        name.chars().filter(|c| *c != '*').count()
    }
}

/// `YYYYMMDD` as `YYYY.MM.DD` (anything else as it is).
fn push_date(out: &mut String, day: &str) {
    if day.len() == 8 && day.bytes().all(|b| b.is_ascii_digit()) {
        out.push_str(&day[..4]);
        out.push('.');
        out.push_str(&day[4..6]);
        out.push('.');
        out.push_str(&day[6..]);
    } else {
        out.push_str(day);
    }
}
