//! Compiled ACL patterns: MQTT topic filters in which `%u` stands for the identity, `%c` for the
//! client id and `%%` for a literal `%`, split into levels once, at parse time.
//!
//! A pattern relates to a topic or a subscription filter in two ways:
//! - it *covers* a filter when every topic the filter can match is matched by the pattern (for a
//!   concrete topic: the pattern matches it). Allow rules need coverage.
//! - it *overlaps* a filter when some topic matches both (for a concrete topic: the pattern
//!   matches it). Deny rules need only overlap, and err on the side of overlapping.
//!
//! Neither allocates: levels are compared as slices, placeholders by prefix-stripping.

use super::Who;

/// A validated pattern, one [`Level`] per `/`-separated level.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    /// The levels, in order; `#` can only be the last.
    levels: Vec<Level>,
    /// Whether some level uses `%u`, so the identity must be safe to substitute.
    uses_identity: bool,
    /// Whether some level uses `%c`, so the client id must be safe to substitute.
    uses_client_id: bool,
}

/// One level of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    /// Matches exactly this text.
    Literal(String),
    /// `+`: any one level.
    Plus,
    /// `#`: any rest, including none (`a/#` matches `a`).
    Hash,
    /// A level with placeholders: matches its pieces concatenated after substitution.
    Template(Vec<Piece>),
}

/// A part of a [`Level::Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Text taken literally.
    Text(String),
    /// `%u`: the identity.
    Identity,
    /// `%c`: the MQTT client id.
    ClientId,
}

/// One level of a topic name or a subscription filter.
#[derive(Debug, Clone, Copy)]
enum Seg<'a> {
    /// A level without wildcards.
    Lit(&'a str),
    /// `+`.
    Plus,
    /// `#`.
    Hash,
}

impl<'a> Seg<'a> {
    fn of(level: &'a str) -> Self {
        match level {
            "+" => Seg::Plus,
            "#" => Seg::Hash,
            _ => Seg::Lit(level),
        }
    }
}

/// What is wrong with a topic pattern (the caller adds the key and the pattern).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Not a valid MQTT topic filter.
    #[error("{0}")]
    Filter(&'static str),
    /// `%` followed by something other than `u`, `c` or `%`.
    #[error("unknown placeholder '%{0}' (use %u, %c, or %% for '%')")]
    Placeholder(char),
    /// A level ends with a lone `%`.
    #[error("'%' ends a level (use %% for a literal '%')")]
    TrailingPercent,
}

impl Pattern {
    /// Validate and compile `text`; the error says what is wrong, without the key.
    pub(crate) fn parse(text: &str) -> Result<Self, PatternError> {
        check_filter(text).map_err(PatternError::Filter)?;
        let levels = text.split('/').map(compile_level).collect::<Result<Vec<_>, _>>()?;
        let uses = |p: Piece| levels.iter().any(|l| matches!(l, Level::Template(pieces) if pieces.contains(&p)));
        Ok(Self { uses_identity: uses(Piece::Identity), uses_client_id: uses(Piece::ClientId), levels })
    }

    /// A subscription filter as a client sent it: `%` is an ordinary character here, so the
    /// filter matches exactly the topics MQTT says it does (for routing, not for ACL rules).
    pub(crate) fn subscription(text: &str) -> Result<Self, PatternError> {
        check_filter(text).map_err(PatternError::Filter)?;
        let levels = text
            .split('/')
            .map(|l| match l {
                "+" => Level::Plus,
                "#" => Level::Hash,
                _ => Level::Literal(l.into()),
            })
            .collect();
        Ok(Self { levels, uses_identity: false, uses_client_id: false })
    }

    /// `devices/%u/#`: the namespace every identity gets by default.
    pub(super) fn default_namespace() -> Self {
        let levels = vec![Level::Literal("devices".into()), Level::Template(vec![Piece::Identity]), Level::Hash];
        Self { levels, uses_identity: true, uses_client_id: false }
    }

    /// Whether every topic `filter` (a valid filter or topic name) can match is matched by this
    /// pattern. Never true when a placeholder the pattern uses is unsafe for `who`.
    pub(crate) fn covers(&self, who: &Who, filter: &str) -> bool {
        if !self.usable_by(who) {
            return false;
        }
        let mut segs = filter.split('/').map(Seg::of);
        for (i, level) in self.levels.iter().enumerate() {
            let seg = segs.next();
            if i == 0 && is_wild(level) && seg.is_some_and(is_dollar) {
                return false;
            }
            let same = match (level, seg) {
                (Level::Hash, _) => return true,
                (Level::Plus, Some(seg)) => !matches!(seg, Seg::Hash),
                (Level::Literal(text), Some(Seg::Lit(s))) => text == s,
                (Level::Template(pieces), Some(Seg::Lit(s))) => substitutes_to(pieces, who, s),
                _ => false,
            };
            if !same {
                return false;
            }
        }
        segs.next().is_none()
    }

    /// Whether some topic matches both this pattern and `filter` (a valid filter or topic
    /// name). Conservative: true when a placeholder the pattern uses is unsafe for `who`.
    pub(super) fn overlaps(&self, who: &Who, filter: &str) -> bool {
        if !self.usable_by(who) {
            return true;
        }
        let mut segs = filter.split('/').map(Seg::of);
        for (i, level) in self.levels.iter().enumerate() {
            let Some(seg) = segs.next() else { return *level == Level::Hash };
            if i == 0 && dollar_apart(level, seg) {
                return false;
            }
            let same = match (level, seg) {
                (Level::Hash, _) | (_, Seg::Hash) => return true,
                (Level::Plus, _) | (_, Seg::Plus) => true,
                (Level::Literal(text), Seg::Lit(s)) => text == s,
                (Level::Template(pieces), Seg::Lit(s)) => substitutes_to(pieces, who, s),
            };
            if !same {
                return false;
            }
        }
        matches!(segs.next(), None | Some(Seg::Hash))
    }

    fn usable_by(&self, who: &Who) -> bool {
        (!self.uses_identity || is_safe_value(who.identity)) && (!self.uses_client_id || is_safe_value(who.client_id))
    }
}

/// Whether `filter` is a valid MQTT subscription filter.
pub(super) fn is_valid_filter(filter: &str) -> bool {
    check_filter(filter).is_ok()
}

/// Whether `topic` is a valid MQTT topic name (no wildcards).
pub(super) fn is_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

fn check_filter(text: &str) -> Result<(), &'static str> {
    if text.is_empty() {
        return Err("empty topic filter");
    }
    if text.contains('\0') {
        return Err("contains NUL");
    }
    let mut levels = text.split('/').peekable();
    while let Some(level) = levels.next() {
        match level {
            "#" if levels.peek().is_some() => return Err("'#' must be the last level"),
            "#" | "+" => {}
            _ if level.contains('#') => return Err("'#' must be a whole level"),
            _ if level.contains('+') => return Err("'+' must be a whole level"),
            _ => {}
        }
    }
    Ok(())
}

fn compile_level(level: &str) -> Result<Level, PatternError> {
    match level {
        "+" => Ok(Level::Plus),
        "#" => Ok(Level::Hash),
        _ if level.contains('%') => compile_template(level),
        _ => Ok(Level::Literal(level.into())),
    }
}

fn compile_template(level: &str) -> Result<Level, PatternError> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = level.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        let piece = match chars.next() {
            Some('u') => Piece::Identity,
            Some('c') => Piece::ClientId,
            Some('%') => {
                text.push('%');
                continue;
            }
            Some(other) => return Err(PatternError::Placeholder(other)),
            None => return Err(PatternError::TrailingPercent),
        };
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(piece);
    }
    if pieces.is_empty() {
        return Ok(Level::Literal(text));
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(Level::Template(pieces))
}

/// Whether `pieces`, with `who` substituted, spell exactly `level`.
fn substitutes_to(pieces: &[Piece], who: &Who, level: &str) -> bool {
    let mut rest = level;
    for piece in pieces {
        let part = match piece {
            Piece::Text(text) => text.as_str(),
            Piece::Identity => who.identity,
            Piece::ClientId => who.client_id,
        };
        match rest.strip_prefix(part) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.is_empty()
}

/// An identity or client id that could widen a pattern (or is missing) is never substituted;
/// nor one starting with `$`, which would turn `%u/#` into a reserved `$...` topic.
fn is_safe_value(value: &str) -> bool {
    !value.is_empty() && !value.starts_with('$') && !value.contains(['/', '+', '#', '\0'])
}

fn is_wild(level: &Level) -> bool {
    matches!(level, Level::Plus | Level::Hash)
}

fn is_dollar(seg: Seg) -> bool {
    matches!(seg, Seg::Lit(s) if s.starts_with('$'))
}

/// At the first level, a `$` topic in a deny pattern never meets a subscription filter that
/// starts with a wildcard (MQTT 4.7.2: `#` does not receive `$SYS/...`). The other way round
/// does overlap on purpose: a deny rule on `#` must also refuse `$aws/...`, so deny rules err
/// towards refusing.
fn dollar_apart(level: &Level, seg: Seg) -> bool {
    matches!(level, Level::Literal(text) if text.starts_with('$')) && matches!(seg, Seg::Plus | Seg::Hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHO: Who = Who { identity: "a", client_id: "c1" };

    fn pattern(text: &str) -> Pattern {
        Pattern::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn hash_covers_any_rest_including_the_parent_level() {
        for filter in ["devices/a", "devices/a/x", "devices/a/x/+", "devices/a/#", "devices/a/+/y/#"] {
            assert!(pattern("devices/a/#").covers(&WHO, filter), "{filter}");
        }
        assert!(!pattern("devices/a/#").covers(&WHO, "devices/+/x"));
        assert!(!pattern("devices/a/#").covers(&WHO, "devices/#"));
    }

    #[test]
    fn plus_covers_a_literal_or_plus_level_but_not_hash() {
        let p = pattern("devices/+/status");
        assert!(p.covers(&WHO, "devices/x/status"));
        assert!(p.covers(&WHO, "devices/+/status"));
        assert!(!p.covers(&WHO, "devices/#"));
        assert!(!p.covers(&WHO, "devices/x/status/more"));
        assert!(!p.covers(&WHO, "devices/x"));
    }

    #[test]
    fn a_literal_covers_only_the_same_literal() {
        let p = pattern("a/b");
        assert!(p.covers(&WHO, "a/b"));
        assert!(!p.covers(&WHO, "a/+"));
        assert!(!p.covers(&WHO, "a/#"));
        assert!(!p.covers(&WHO, "a/c"));
    }

    #[test]
    fn overlap_is_true_when_some_topic_matches_both() {
        let cases = [
            ("a/b", "a/+", true),
            ("a/+", "+/b", true),
            ("a/b/c", "a/#", true),
            ("a", "a/#", true),
            ("a/#", "a", true),
            ("a/b", "a/c", false),
            ("a/b", "a/b/c", false),
            ("a/+", "a", false),
            ("#", "$SYS/x", true), // a deny on '#' refuses '$' topics too
            ("$SYS/#", "#", false),
            ("$SYS/#", "$SYS/+", true),
        ];
        for (p, filter, expected) in cases {
            assert_eq!(pattern(p).overlaps(&WHO, filter), expected, "{p} vs {filter}");
        }
    }

    #[test]
    fn placeholders_substitute_inside_a_level() {
        let p = pattern("pre-%u-%c-100%%/x");
        assert!(p.covers(&WHO, "pre-a-c1-100%/x"));
        assert!(!p.covers(&WHO, "pre-a-c2-100%/x"));
        assert!(pattern("%%u").covers(&WHO, "%u"));
    }

    #[test]
    fn unsafe_values_never_match_but_always_overlap() {
        for identity in ["", "+", "#", "a/b", "a\0"] {
            let who = Who { identity, client_id: "c1" };
            assert!(!pattern("devices/%u/#").covers(&who, &format!("devices/{identity}/x")), "{identity:?}");
            assert!(pattern("devices/%u/x").overlaps(&who, "elsewhere"), "{identity:?}");
        }
        let who = Who { identity: "a", client_id: "" };
        assert!(!pattern("c/%c").covers(&who, "c/"));
        assert!(pattern("c/%u").covers(&who, "c/a"));
    }

    #[test]
    fn invalid_patterns_say_why() {
        let cases = [
            ("", "empty topic filter"),
            ("a/#/b", "'#' must be the last level"),
            ("a/b#", "'#' must be a whole level"),
            ("a+/b", "'+' must be a whole level"),
            ("a\0", "contains NUL"),
            ("a/%x", "unknown placeholder '%x' (use %u, %c, or %% for '%')"),
            ("a/b%", "'%' ends a level (use %% for a literal '%')"),
        ];
        for (text, message) in cases {
            assert_eq!(Pattern::parse(text).err().map(|e| e.to_string()).as_deref(), Some(message), "{text:?}");
        }
    }

    #[test]
    fn topic_names_and_filters_are_told_apart() {
        assert!(is_topic_name("a//b"));
        assert!(!is_topic_name("a/+"));
        assert!(!is_topic_name(""));
        assert!(is_valid_filter("+/a/#"));
        assert!(!is_valid_filter("a/#/b"));
    }
}
