//! The bridge's topic mapping: `topic_rewrite` rules (the first whose filter matches a topic
//! gives its upstream topic), else `topic_prefix` + the topic.
//!
//! A rule is a topic filter and a template: `{1}`, `{2}`, ... stand for the levels the filter's
//! first, second, ... `+` matched, `{#}` for what its trailing `#` matched (nothing: the `/`
//! before `{#}` goes too). `filter = "devices/+/telemetry/#"`, `to = "plant-1/{1}/{#}"` sends
//! `devices/pump-7/telemetry/temp/inlet` to `plant-1/pump-7/temp/inlet`.

/// One level of a rule's filter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Exact(String),
    Plus,
    Hash,
}

/// One piece of a rule's template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// The n-th `+` (0-based).
    Plus(usize),
    Hash,
}

/// Why a rule cannot be used (said with its config key).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("filter \"{0}\" is not a topic filter (levels split by '/', '+' a whole level, '#' only last)")]
    Filter(String),
    #[error("filter \"{0}\": '$' topics and shared subscriptions cannot be rewritten")]
    Dollar(String),
    #[error("to \"{0}\": must be a topic name (not empty, no '+', '#' or NUL)")]
    Target(String),
    #[error("to \"{to}\": {{{n}}} but the filter has {plus} '+' level(s)")]
    NoSuchPlus { to: String, n: usize, plus: usize },
    #[error("to \"{0}\": {{#}} but the filter does not end with '#'")]
    NoHash(String),
    #[error("to \"{0}\": an unknown placeholder (use {{1}}..{{9}} or {{#}})")]
    Placeholder(String),
}

/// One `topic_rewrite` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    levels: Vec<Level>,
    to: Vec<Piece>,
}

impl Rule {
    /// Parse a rule; the error says what is wrong.
    pub fn parse(filter: &str, to: &str) -> Result<Rule, RuleError> {
        if filter.starts_with('$') {
            return Err(RuleError::Dollar(filter.into()));
        }
        let parts: Vec<&str> = filter.split('/').collect();
        let mut levels = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            levels.push(match *part {
                "+" => Level::Plus,
                "#" if i + 1 == parts.len() => Level::Hash,
                p if filter.is_empty() || p.contains(['+', '#', '\0']) => return Err(RuleError::Filter(filter.into())),
                p => Level::Exact(p.to_string()),
            });
        }
        let plus = levels.iter().filter(|l| **l == Level::Plus).count();
        let hash = levels.last() == Some(&Level::Hash);
        let mut pieces = Vec::new();
        let mut rest = to;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let Some(close) = rest[open..].find('}') else { return Err(RuleError::Placeholder(to.into())) };
            let name = &rest[open + 1..open + close];
            pieces.push(match name {
                "#" if hash => Piece::Hash,
                "#" => return Err(RuleError::NoHash(to.into())),
                n => match n.parse::<usize>() {
                    Ok(n) if (1..=plus).contains(&n) => Piece::Plus(n - 1),
                    Ok(n) => return Err(RuleError::NoSuchPlus { to: to.into(), n, plus }),
                    Err(_) => return Err(RuleError::Placeholder(to.into())),
                },
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        let texts = pieces.iter().filter_map(|p| if let Piece::Text(t) = p { Some(t.as_str()) } else { None });
        if to.is_empty() || texts.clone().any(|t| t.contains(['+', '#', '\0', '}'])) {
            return Err(RuleError::Target(to.into()));
        }
        Ok(Rule { levels, to: pieces })
    }

    /// The upstream topic for `topic`, if the filter matches it.
    fn apply(&self, topic: &str) -> Option<String> {
        if topic.starts_with('$') {
            return None;
        }
        let mut plus: Vec<&str> = Vec::new();
        let mut hash = "";
        let mut rest = Some(topic);
        for level in &self.levels {
            match level {
                Level::Hash => {
                    // `a/#` matches `a` too (MQTT 4.7.1.2): then it matched nothing.
                    hash = rest.take().unwrap_or("");
                    break;
                }
                _ => {
                    let current = rest?;
                    let (this, next) = match current.split_once('/') {
                        Some((this, next)) => (this, Some(next)),
                        None => (current, None),
                    };
                    match level {
                        Level::Exact(e) if e != this => return None,
                        Level::Plus => plus.push(this),
                        _ => {}
                    }
                    rest = next;
                }
            }
        }
        if rest.is_some() {
            return None;
        }
        let mut out = String::with_capacity(topic.len() + 16);
        for piece in &self.to {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Plus(n) => out.push_str(plus[*n]),
                Piece::Hash if hash.is_empty() => {
                    if out.ends_with('/') {
                        out.pop();
                    }
                }
                Piece::Hash => out.push_str(hash),
            }
        }
        Some(out)
    }
}

/// The whole mapping of one bridge.
#[derive(Debug, Clone, Default)]
pub struct TopicMap {
    /// Before every topic no rule matches.
    pub prefix: String,
    /// Tried in order.
    pub rules: Vec<Rule>,
}

impl TopicMap {
    /// The upstream topic of a stored message's topic.
    pub fn upstream(&self, topic: &str) -> String {
        self.rules.iter().find_map(|r| r.apply(topic)).unwrap_or_else(|| format!("{}{topic}", self.prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(rules: &[(&str, &str)]) -> TopicMap {
        TopicMap { prefix: "site-a/".into(), rules: rules.iter().map(|(f, t)| Rule::parse(f, t).unwrap()).collect() }
    }

    #[test]
    fn rules_rewrite_in_order_and_the_prefix_takes_the_rest() {
        let m = map(&[("devices/+/telemetry/#", "plant-1/{1}/{#}"), ("devices/+/+", "plant-1/{2}/by-device/{1}"), ("alarms/#", "alarms")]);
        assert_eq!(m.upstream("devices/pump-7/telemetry/temp/inlet"), "plant-1/pump-7/temp/inlet");
        assert_eq!(m.upstream("devices/pump-7/telemetry"), "plant-1/pump-7", "# matched nothing: its / goes too");
        assert_eq!(m.upstream("devices/pump-7/status"), "plant-1/status/by-device/pump-7");
        assert_eq!(m.upstream("alarms/high/x"), "alarms");
        assert_eq!(m.upstream("devices/pump-7/a/b"), "site-a/devices/pump-7/a/b", "no rule: the prefix");
        assert_eq!(m.upstream("devices"), "site-a/devices");
        assert_eq!(m.upstream("devices//telemetry/x"), "plant-1//x", "an empty level is a level");
    }

    #[test]
    fn bad_rules_are_named() {
        assert_eq!(Rule::parse("a/#/b", "x"), Err(RuleError::Filter("a/#/b".into())));
        assert_eq!(Rule::parse("a/b+", "x"), Err(RuleError::Filter("a/b+".into())));
        assert_eq!(Rule::parse("", "x"), Err(RuleError::Filter("".into())));
        assert_eq!(Rule::parse("$SYS/#", "x"), Err(RuleError::Dollar("$SYS/#".into())));
        assert_eq!(Rule::parse("a/+", "x/{2}"), Err(RuleError::NoSuchPlus { to: "x/{2}".into(), n: 2, plus: 1 }));
        assert_eq!(Rule::parse("a/+", "x/{#}"), Err(RuleError::NoHash("x/{#}".into())));
        assert_eq!(Rule::parse("a/+", "x/{name}"), Err(RuleError::Placeholder("x/{name}".into())));
        assert_eq!(Rule::parse("a/+", "x/{1"), Err(RuleError::Placeholder("x/{1".into())));
        assert_eq!(Rule::parse("a/+", "x/+"), Err(RuleError::Target("x/+".into())));
        assert_eq!(Rule::parse("a/+", ""), Err(RuleError::Target("".into())));
        assert!(Rule::parse("a/+/#", "{1}{#}").is_ok());
    }
}
