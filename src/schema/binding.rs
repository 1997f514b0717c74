//! `bindings.toml`: which topics are checked against which subject, which version, where the
//! device names it, and what happens to a payload that fails.
//!
//! ```toml
//! [[binding]]
//! topics = ["devices/+/telemetry"]   # MQTT topic filters (%u: the device's identity)
//! subject = "telemetry"              # a folder of the registry
//! version = "tagged"                 # "latest" (default without a tag), a number (pinned), or
//!                                    # "tagged": the version the device names, else the latest
//! tag = { user_property = "schema" } # where the device names it (only with "tagged"; tag.rs)
//! on_invalid = "refuse"              # "refuse", "keep_apart" or "tag"
//! ```
//!
//! The first binding (in file order) with a filter matching the topic applies; a topic no
//! binding matches is stored unchecked.

use serde::Deserialize;

use super::tag::TagSource;
use crate::trust::acl::Who;
use crate::trust::acl::pattern::Pattern;

/// Which version of the subject a payload is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionPolicy {
    /// The subject's highest version.
    Latest,
    /// This version, whatever the device says.
    Pinned(u32),
    /// The version the device names (see [`TagSource`]); the latest when it names none.
    Tagged,
}

/// What happens to a payload that fails its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// MQTT 5 QoS 1: PUBACK 0x99 (payload format invalid) naming the first failing path; not
    /// stored. Where the protocol cannot refuse one message (MQTT 3.1.1, QoS 0), kept apart.
    Refuse,
    /// Stored in the rejected table with the errors (PUBACK as usual), never forwarded.
    KeepApart,
    /// Stored and forwarded with `valid = false` and the errors.
    Tag,
}

impl Action {
    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Refuse => "refuse",
            Action::KeepApart => "keep_apart",
            Action::Tag => "tag",
        }
    }
}

/// One validated `[[binding]]`.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The filters as written, and compiled.
    pub(crate) topics: Vec<(String, Pattern)>,
    /// The subject's name.
    pub subject: String,
    /// Which version.
    pub version: VersionPolicy,
    /// Where the device names it (with [`VersionPolicy::Tagged`] only).
    pub tag: Option<TagSource>,
    /// What happens to a payload that fails.
    pub action: Action,
}

impl Binding {
    /// Whether this binding applies to `topic` published by `who`.
    pub fn matches(&self, who: &Who, topic: &str) -> bool {
        self.topics.iter().any(|(_, p)| p.covers(who, topic))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBindings {
    #[serde(default)]
    binding: Vec<RawBinding>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBinding {
    topics: Vec<String>,
    subject: String,
    version: Option<RawVersion>,
    tag: Option<TagSource>,
    on_invalid: Action,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawVersion {
    Number(i64),
    Word(String),
}

/// Parse `text` (the file `bindings.toml`); every problem is pushed to `problems`, led by
/// `bindings.toml` and the dotted key. `has_version(subject, version)` says what the registry
/// holds (`None`: the subject does not exist).
pub fn parse(text: &str, has_version: impl Fn(&str, u32) -> Option<bool>, problems: &mut Vec<String>) -> Vec<Binding> {
    let raw: RawBindings = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            problems.push(format!("bindings.toml: {}", edge_gateway_actors::tomlkey::describe(text, &e)));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, b) in raw.binding.into_iter().enumerate() {
        let key = format!("bindings.toml: binding[{i}]");
        let before = problems.len();
        if b.topics.is_empty() {
            problems.push(format!("{key}.topics: must name at least one topic filter"));
        }
        let mut topics = Vec::new();
        for (j, t) in b.topics.iter().enumerate() {
            match Pattern::parse(t) {
                Ok(p) => topics.push((t.clone(), p)),
                Err(e) => problems.push(format!("{key}.topics[{j}]: \"{t}\": {e}")),
            }
        }
        let version = match (&b.version, &b.tag) {
            (None, None) => VersionPolicy::Latest,
            (None, Some(_)) => VersionPolicy::Tagged,
            (Some(RawVersion::Word(w)), _) if w == "latest" => VersionPolicy::Latest,
            (Some(RawVersion::Word(w)), _) if w == "tagged" => VersionPolicy::Tagged,
            (Some(RawVersion::Number(n)), _) if (1..=i64::from(u32::MAX)).contains(n) => VersionPolicy::Pinned(*n as u32),
            (Some(RawVersion::Number(n)), _) => {
                problems.push(format!("{key}.version: {n} is not a version number (1 or more)"));
                VersionPolicy::Latest
            }
            (Some(RawVersion::Word(w)), _) => {
                problems.push(format!("{key}.version: \"{w}\" is not one of \"latest\", \"tagged\" or a version number"));
                VersionPolicy::Latest
            }
        };
        match (version, &b.tag) {
            (VersionPolicy::Tagged, None) => {
                problems.push(format!("{key}.tag: version = \"tagged\" needs a tag (where the device names its version)"))
            }
            (VersionPolicy::Latest | VersionPolicy::Pinned(_), Some(_)) => {
                problems.push(format!("{key}.tag: only read with version = \"tagged\" (this binding's version is fixed)"))
            }
            _ => {}
        }
        if let Some(TagSource::JsonField(p)) = &b.tag
            && !(p.is_empty() || p.starts_with('/'))
        {
            problems.push(format!("{key}.tag.json_field: \"{p}\" is not a JSON pointer (\"/field\" or \"/a/b\")"));
        }
        match (has_version(&b.subject, 1), version) {
            (None, _) => problems.push(format!("{key}.subject: no subject \"{}\" in the registry", b.subject)),
            (Some(_), VersionPolicy::Pinned(v)) if has_version(&b.subject, v) != Some(true) => {
                problems.push(format!("{key}.version: subject \"{}\" has no version {v}", b.subject))
            }
            _ => {}
        }
        if problems.len() == before {
            out.push(Binding { topics, subject: b.subject, version, tag: b.tag, action: b.on_invalid });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> (Vec<Binding>, Vec<String>) {
        let mut problems = Vec::new();
        let has = |s: &str, v: u32| (s == "telemetry").then_some(v <= 2);
        let bindings = parse(text, has, &mut problems);
        (bindings, problems)
    }

    #[test]
    fn a_good_file_loads_with_its_policies() {
        let (b, problems) = load(
            r#"
            [[binding]]
            topics = ["devices/+/telemetry"]
            subject = "telemetry"
            tag = { user_property = "schema" }
            on_invalid = "refuse"

            [[binding]]
            topics = ["sites/%u/t/#"]
            subject = "telemetry"
            version = 2
            on_invalid = "keep_apart"

            [[binding]]
            topics = ["legacy/#"]
            subject = "telemetry"
            on_invalid = "tag"
            "#,
        );
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!((b[0].version, b[0].action), (VersionPolicy::Tagged, Action::Refuse));
        assert_eq!(b[0].tag, Some(TagSource::UserProperty("schema".into())));
        assert_eq!((b[1].version, b[1].action), (VersionPolicy::Pinned(2), Action::KeepApart));
        assert_eq!((b[2].version, b[2].action), (VersionPolicy::Latest, Action::Tag));
        let who = Who { identity: "d1", client_id: "d1" };
        assert!(b[0].matches(&who, "devices/x/telemetry"));
        assert!(b[1].matches(&who, "sites/d1/t/a/b") && !b[1].matches(&who, "sites/d2/t/a"));
    }

    #[test]
    fn every_problem_is_named_with_its_key() {
        let (b, problems) = load(
            r#"
            [[binding]]
            topics = ["a/#/b"]
            subject = "nope"
            version = "tagged"
            on_invalid = "refuse"

            [[binding]]
            topics = []
            subject = "telemetry"
            version = 7
            tag = "content_type"
            on_invalid = "tag"

            [[binding]]
            topics = ["x"]
            subject = "telemetry"
            tag = { json_field = "schema" }
            on_invalid = "keep_apart"
            "#,
        );
        assert!(b.is_empty());
        let text = problems.join("\n");
        for expected in [
            "binding[0].topics[0]: \"a/#/b\"",
            "binding[0].tag: version = \"tagged\" needs a tag",
            "binding[0].subject: no subject \"nope\"",
            "binding[1].topics: must name at least one",
            "binding[1].tag: only read with version = \"tagged\"",
            "binding[1].version: subject \"telemetry\" has no version 7",
            "binding[2].tag.json_field: \"schema\" is not a JSON pointer",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn a_syntax_error_or_unknown_action_names_the_file() {
        let (_, problems) = load("[[binding]]\ntopics = [\"a\"]\nsubject = \"telemetry\"\non_invalid = \"drop\"\n");
        assert!(problems[0].starts_with("bindings.toml: binding[0].on_invalid"), "{problems:?}");
    }
}
