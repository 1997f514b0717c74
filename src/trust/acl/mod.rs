//! Per-device topic ACLs, deny by default.
//!
//! An ACL file (TOML) grants identities (certificate CN or username) topics to publish to and
//! filters to subscribe to:
//!
//! ```toml
//! default_namespace = true      # every identity owns devices/<identity>/# (the default)
//!
//! [groups]
//! operators = ["ops-console", "ops-laptop"]
//!
//! [[allow]]
//! groups = ["operators"]        # and/or identities = [...]; "*" is every identity
//! subscribe = ["devices/+/status"]
//! publish = ["sites/%u/telemetry/#"]
//!
//! [[deny]]                      # checked before allow rules
//! identities = ["legacy-07"]
//! publish = ["#"]
//! ```
//!
//! Patterns are MQTT topic filters; `%u` stands for the identity, `%c` for the MQTT client id,
//! `%%` for a literal `%` (compiled in `acl/pattern.rs`). A check is decided in this order:
//! 1. a deny rule for the identity whose pattern matches the topic, or *overlaps* the filter
//!    (some topic matches both): [`DenyReason::DeniedByRule`];
//! 2. an allow rule (the default namespace first) whose pattern matches the topic, or *covers*
//!    the filter (matches every topic the filter can match): [`Decision::Allow`];
//! 3. otherwise [`DenyReason::NoRule`].
//!
//! Invariants:
//! - An identity or client id that is empty or holds `/`, `+`, `#` or NUL is never substituted:
//!   allow patterns using its placeholder never match, deny patterns using it always apply.
//! - A pattern whose first level is `+` or `#` never matches a `$` topic (MQTT 4.7.2).
//! - Topic names with wildcards and invalid filters are refused (`no_rule`).

pub(crate) mod pattern;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use edge_gateway_actors::tomlkey;
use serde::Deserialize;

use self::pattern::Pattern;

/// Who is asking: the connection's authenticated identity and its MQTT client id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Who<'a> {
    /// Certificate CN or username; `%u` in patterns.
    pub identity: &'a str,
    /// The client id from CONNECT; `%c` in patterns.
    pub client_id: &'a str,
}

/// The outcome of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// An allow rule matched and no deny rule did.
    Allow,
    /// Refused, and why.
    Deny(DenyReason),
}

impl Decision {
    /// Whether the operation may go ahead.
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }
}

/// Why a check was refused (also the `gateway_acl_denied_total` reason).
pub use edge_gateway_actors::metrics::DenyReason;

/// Every problem found in an ACL file, each led by its dotted key (`allow[2].publish[0]: ...`).
#[derive(Debug, thiserror::Error)]
#[error("invalid ACL:\n  {}", .0.join("\n  "))]
pub struct AclError(
    /// One message per problem.
    pub Vec<String>,
);

/// A validated ACL, its patterns compiled.
#[derive(Debug, Clone)]
pub struct Acl {
    /// Checked first; one match refuses.
    deny: Vec<Rule>,
    /// Checked after the deny rules; one match allows. The default namespace, when on, is first.
    allow: Vec<Rule>,
}

/// One `[[allow]]` or `[[deny]]` entry, groups resolved.
#[derive(Debug, Clone)]
struct Rule {
    /// The identities the rule applies to.
    members: Members,
    /// Patterns checked against published topics.
    publish: Vec<Pattern>,
    /// Patterns checked against subscription filters.
    subscribe: Vec<Pattern>,
}

/// Whom a rule applies to.
#[derive(Debug, Clone)]
enum Members {
    /// `"*"`: every identity.
    Everyone,
    /// The listed identities and the members of the listed groups.
    Only(HashSet<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcl {
    /// Grant every identity `devices/<identity>/#`; on unless turned off.
    #[serde(default = "default_true")]
    default_namespace: bool,
    /// Group name to member identities.
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    /// `[[allow]]` rules.
    #[serde(default)]
    allow: Vec<RawRule>,
    /// `[[deny]]` rules.
    #[serde(default)]
    deny: Vec<RawRule>,
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    /// Identities the rule applies to; `"*"` is every identity.
    identities: Option<Vec<String>>,
    /// Groups whose members the rule applies to.
    groups: Option<Vec<String>>,
    /// Topic filters for PUBLISH.
    #[serde(default)]
    publish: Vec<String>,
    /// Topic filters for SUBSCRIBE.
    #[serde(default)]
    subscribe: Vec<String>,
}

impl Acl {
    /// Parse and validate an ACL file's text, reporting every problem.
    pub fn parse(text: &str) -> Result<Acl, AclError> {
        let raw: RawAcl = toml::from_str(text).map_err(|e| AclError(vec![describe_toml_error(text, &e)]))?;
        raw.validate()
    }

    /// Read and validate the ACL file at `path`.
    pub fn load(path: &Path) -> Result<Acl, AclError> {
        let text = std::fs::read_to_string(path).map_err(|e| AclError(vec![format!("{}: {e}", path.display())]))?;
        Self::parse(&text)
    }

    /// What applies without an ACL file: each identity may publish and subscribe within
    /// `devices/<identity>/#`, and nothing else.
    pub fn default_namespace_only() -> Acl {
        Acl { deny: Vec::new(), allow: vec![Rule::default_namespace()] }
    }

    /// The ACL without a file: the default namespace, and `downlink` (the identity of
    /// `POST /api/publish`) may publish commands to every device's `devices/+/cmd/#`.
    pub fn built_in(downlink: &str) -> Acl {
        let mut acl = Self::default_namespace_only();
        if let Ok(cmd) = Pattern::parse("devices/+/cmd/#") {
            let members = Members::Only(HashSet::from([downlink.to_string()]));
            acl.allow.push(Rule { members, publish: vec![cmd], subscribe: Vec::new() });
        }
        acl
    }

    /// May `who` publish to the topic name `topic`?
    pub fn check_publish(&self, who: &Who, topic: &str) -> Decision {
        if !pattern::is_topic_name(topic) {
            return Decision::Deny(DenyReason::NoRule);
        }
        self.decide(who, topic, |rule| &rule.publish)
    }

    /// May `who` subscribe to `filter`? Allowed only if one allow pattern covers the whole
    /// filter; refused if any deny pattern overlaps it.
    pub fn check_subscribe(&self, who: &Who, filter: &str) -> Decision {
        if !pattern::is_valid_filter(filter) {
            return Decision::Deny(DenyReason::NoRule);
        }
        self.decide(who, filter, |rule| &rule.subscribe)
    }

    /// The number of rules, counting the default namespace when it is on (for logs).
    pub fn rule_count(&self) -> usize {
        self.deny.len() + self.allow.len()
    }

    /// For a topic name, covering and overlapping both mean "matches"; for a filter they differ.
    fn decide(&self, who: &Who, filter: &str, patterns: fn(&Rule) -> &[Pattern]) -> Decision {
        let mine = |rule: &&Rule| rule.members.contains(who.identity);
        if self.deny.iter().filter(mine).flat_map(patterns).any(|p| p.overlaps(who, filter)) {
            return Decision::Deny(DenyReason::DeniedByRule);
        }
        if self.allow.iter().filter(mine).flat_map(patterns).any(|p| p.covers(who, filter)) {
            return Decision::Allow;
        }
        Decision::Deny(DenyReason::NoRule)
    }
}

impl Rule {
    fn default_namespace() -> Rule {
        let members = Members::Everyone;
        Rule { members, publish: vec![Pattern::default_namespace()], subscribe: vec![Pattern::default_namespace()] }
    }
}

impl Members {
    fn contains(&self, identity: &str) -> bool {
        match self {
            Members::Everyone => true,
            Members::Only(set) => set.contains(identity),
        }
    }
}

impl RawAcl {
    fn validate(self) -> Result<Acl, AclError> {
        let mut errors = Vec::new();
        check_groups(&self.groups, &mut errors);
        let mut allow = Vec::new();
        if self.default_namespace {
            allow.push(Rule::default_namespace());
        }
        allow.extend(compile_rules("allow", &self.allow, &self.groups, &mut errors));
        let deny = compile_rules("deny", &self.deny, &self.groups, &mut errors);
        if errors.is_empty() { Ok(Acl { deny, allow }) } else { Err(AclError(errors)) }
    }
}

fn check_groups(groups: &BTreeMap<String, Vec<String>>, errors: &mut Vec<String>) {
    for (name, members) in groups {
        for (i, member) in members.iter().enumerate() {
            if member.is_empty() {
                errors.push(format!("groups.{name}[{i}]: empty identity"));
            } else if member == "*" {
                errors.push(format!("groups.{name}[{i}]: \"*\" is only allowed in a rule's identities"));
            }
        }
    }
}

fn compile_rules(kind: &str, raw: &[RawRule], groups: &BTreeMap<String, Vec<String>>, errors: &mut Vec<String>) -> Vec<Rule> {
    raw.iter().enumerate().map(|(i, rule)| compile_rule(&format!("{kind}[{i}]"), rule, groups, errors)).collect()
}

fn compile_rule(key: &str, raw: &RawRule, groups: &BTreeMap<String, Vec<String>>, errors: &mut Vec<String>) -> Rule {
    let identities = raw.identities.as_deref().unwrap_or_default();
    let group_names = raw.groups.as_deref().unwrap_or_default();
    if identities.is_empty() && group_names.is_empty() {
        errors.push(format!("{key}: needs identities or groups"));
    }
    if raw.publish.is_empty() && raw.subscribe.is_empty() {
        errors.push(format!("{key}: needs publish or subscribe patterns"));
    }
    Rule {
        members: members(key, identities, group_names, groups, errors),
        publish: compile_patterns(&format!("{key}.publish"), &raw.publish, errors),
        subscribe: compile_patterns(&format!("{key}.subscribe"), &raw.subscribe, errors),
    }
}

fn members(
    key: &str,
    identities: &[String],
    names: &[String],
    groups: &BTreeMap<String, Vec<String>>,
    errors: &mut Vec<String>,
) -> Members {
    let mut everyone = false;
    let mut set = HashSet::new();
    for (i, identity) in identities.iter().enumerate() {
        match identity.as_str() {
            "*" => everyone = true,
            "" => errors.push(format!("{key}.identities[{i}]: empty identity")),
            _ => {
                set.insert(identity.clone());
            }
        }
    }
    for (i, name) in names.iter().enumerate() {
        match groups.get(name) {
            Some(group) => set.extend(group.iter().cloned()),
            None => errors.push(format!("{key}.groups[{i}]: unknown group {name:?}")),
        }
    }
    if everyone { Members::Everyone } else { Members::Only(set) }
}

fn compile_patterns(key: &str, texts: &[String], errors: &mut Vec<String>) -> Vec<Pattern> {
    let compile = |(i, text): (usize, &String)| Pattern::parse(text).map_err(|e| errors.push(format!("{key}[{i}]: {text:?}: {e}"))).ok();
    texts.iter().enumerate().filter_map(compile).collect()
}

/// A TOML error as one line: the dotted key where one can be found, and the line and column.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    let Some(span) = e.span() else { return message };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
    match tomlkey::dotted_key_at(text, span.start) {
        Some(key) => format!("{key}: {message} (line {line}, column {column})"),
        None => format!("line {line}, column {column}: {message}"),
    }
}
