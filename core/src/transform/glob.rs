//! `namespace.type` globs: which tables a rule names.
//!
//! A glob is `<namespace>.<type>`, each side a name with wildcards: `*` matches any run of
//! characters (none included), `?` exactly one. `events.*` is every type of the `events`
//! namespace, `*.page_view` one type in every namespace, `*` alone every table. The sides take
//! the characters their names may hold (the namespace: ASCII letters, digits and `_`; the type:
//! letters, digits, `_` and `-`), so a misspelt glob is refused when the config is read instead
//! of matching nothing. Nothing here is specific to transforms: routes use the same syntax.

/// One compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableGlob {
    namespace: Pattern,
    type_name: Pattern,
}

/// One side of a glob, compiled to the cheapest test that decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// `*`.
    Any,
    /// No wildcard.
    Exact(Box<str>),
    /// `abc*`.
    Prefix(Box<str>),
    /// `*abc`.
    Suffix(Box<str>),
    /// Anything else.
    Wild(Box<str>),
}

impl TableGlob {
    /// Compiles a glob; the error says what is wrong with it.
    pub fn parse(glob: &str) -> Result<TableGlob, String> {
        const SHAPE: &str = "expected \"<namespace>.<type>\" with * and ? as wildcards, e.g. \"events.*\", or \"*\" for every table";
        if glob == "*" {
            return Ok(TableGlob {
                namespace: Pattern::Any,
                type_name: Pattern::Any,
            });
        }
        let Some((ns, ty)) = glob.split_once('.') else {
            return Err(SHAPE.into());
        };
        if ns.is_empty() || ty.is_empty() || ty.contains('.') {
            return Err(SHAPE.into());
        }
        if let Some(c) = ns
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '*' | '?')))
        {
            return Err(format!(
                "{c:?} cannot appear in a namespace (ASCII letters, digits, '_', and * or ?)"
            ));
        }
        if let Some(c) = ty
            .chars()
            .find(|&c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '*' | '?')))
        {
            return Err(format!(
                "{c:?} cannot appear in a type (letters, digits, '_', '-', and * or ?)"
            ));
        }
        Ok(TableGlob {
            namespace: Pattern::new(ns),
            type_name: Pattern::new(ty),
        })
    }

    /// Whether the table `namespace.type_name` is one the glob names.
    #[inline]
    pub fn matches(&self, namespace: &str, type_name: &str) -> bool {
        self.namespace.matches(namespace) && self.type_name.matches(type_name)
    }
}

impl Pattern {
    fn new(p: &str) -> Pattern {
        let wild = |c: char| matches!(c, '*' | '?');
        if p.chars().all(|c| c == '*') {
            return Pattern::Any;
        }
        if !p.contains(wild) {
            return Pattern::Exact(p.into());
        }
        if let Some(head) = p.strip_suffix('*') {
            if !head.contains(wild) {
                return Pattern::Prefix(head.into());
            }
        }
        if let Some(tail) = p.strip_prefix('*') {
            if !tail.contains(wild) {
                return Pattern::Suffix(tail.into());
            }
        }
        Pattern::Wild(p.into())
    }

    #[inline]
    fn matches(&self, s: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(e) => s == &**e,
            Pattern::Prefix(p) => s.starts_with(&**p),
            Pattern::Suffix(p) => s.ends_with(&**p),
            Pattern::Wild(p) => wild_match(p, s),
        }
    }
}

/// `*` and `?` matching by characters, with the usual single backtrack point (never
/// exponential), without allocating.
fn wild_match(p: &str, t: &str) -> bool {
    let (mut pi, mut ti) = (0, 0);
    // Just after the last '*' seen, and the text position it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while let Some(tc) = t[ti..].chars().next() {
        match p[pi..].chars().next() {
            Some('*') => {
                pi += 1;
                star = Some((pi, ti));
                continue;
            }
            Some(pc) if pc == '?' || pc == tc => {
                pi += pc.len_utf8();
                ti += tc.len_utf8();
                continue;
            }
            _ => {}
        }
        let Some((sp, st)) = star else {
            return false;
        };
        // Let the last '*' take one more character and retry from there.
        let skip = t[st..].chars().next().map_or(1, char::len_utf8);
        pi = sp;
        ti = st + skip;
        star = Some((sp, ti));
    }
    p[pi..].chars().all(|c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::TableGlob;

    fn m(glob: &str, ns: &str, ty: &str) -> bool {
        TableGlob::parse(glob).unwrap().matches(ns, ty)
    }

    #[test]
    fn globs_match_by_side() {
        assert!(m("events.*", "events", "page_view"));
        assert!(!m("events.*", "eventsx", "page_view"));
        assert!(m("*", "a", "b"));
        assert!(m("*.*", "a", "b"));
        assert!(m("*.page_view", "shop", "page_view"));
        assert!(!m("*.page_view", "shop", "page_views"));
        assert!(m("events.page_*", "events", "page_view"));
        assert!(m("events.*_view", "events", "page_view"));
        assert!(m("ev?nts.p*w", "events", "page_view"));
        assert!(!m("ev?nts.p*w", "evnts", "page_view"));
        assert!(m("e*s*.*a*b*", "events", "xaxb"));
        assert!(!m("e*s*.*a*b*", "events", "xbxa"));
        assert!(m("events.t?p", "events", "töp"));
        assert!(m("events.exact", "events", "exact"));
        assert!(!m("events.exact", "events", "exactly"));
    }

    #[test]
    fn bad_globs_are_refused() {
        for bad in [
            "",
            "events",
            ".x",
            "x.",
            "a.b.c",
            "ev ents.x",
            "a.b/c",
            "é.x",
            "a.[x]",
        ] {
            assert!(TableGlob::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(TableGlob::parse("events.tÿpe-1").is_ok());
    }
}
