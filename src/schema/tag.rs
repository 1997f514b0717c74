//! Where a device names the schema version of its payload, per binding (`tag = ...` in
//! `bindings.toml`), and how the named value reads.
//!
//! | `tag`                          | where                           | example                         |
//! |--------------------------------|---------------------------------|---------------------------------|
//! | `{ user_property = "schema" }` | an MQTT 5 user property         | `schema=telemetry/3`            |
//! | `"content_type"`               | the MQTT 5 content type         | `application/json; schema=telemetry/3`, or `telemetry/3` |
//! | `{ topic_segment = 3 }`        | a topic level (0 = first)       | `sites/a/telemetry/v3`          |
//! | `{ json_field = "/schema" }`   | a JSON pointer into the payload | `{"schema": 3, ...}` or `"telemetry/3"` |
//!
//! A value is `<subject>/<version>`, `<version>` or `v<version>`. MQTT 3.1.1 has neither user
//! properties nor a content type: a 3.1.1 device names its version in the topic or the payload.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a binding reads the version a device names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TagSource {
    /// The MQTT 5 user property of this name.
    UserProperty(String),
    /// The MQTT 5 content type: its `schema=` parameter, else the whole value.
    ContentType,
    /// The topic level at this index (0 = the first).
    TopicSegment(usize),
    /// The payload's JSON value at this JSON pointer (`/meta/schema`).
    JsonField(String),
}

/// What a device named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// Nothing: the binding's latest version applies.
    Nothing,
    /// A version, and the subject when the device named one.
    Version {
        /// `telemetry` in `telemetry/3`.
        subject: Option<String>,
        /// `3`.
        version: u32,
    },
    /// Something that is not a version tag (given back for the error).
    Unreadable(String),
}

/// The parts of a message a tag can be read from.
#[derive(Debug, Clone, Copy)]
pub struct Carrier<'a> {
    /// The topic name.
    pub topic: &'a str,
    /// The MQTT 5 content type.
    pub content_type: Option<&'a str>,
    /// The MQTT 5 user properties.
    pub user_properties: &'a [(String, String)],
}

impl TagSource {
    /// What the device named; `json` is the parsed payload, when it parsed.
    pub fn read(&self, msg: &Carrier<'_>, json: Option<&Value>) -> Named {
        match self {
            TagSource::UserProperty(name) => match msg.user_properties.iter().find(|(k, _)| k == name) {
                Some((_, v)) => parse(v),
                None => Named::Nothing,
            },
            TagSource::ContentType => match msg.content_type {
                Some(ct) => parse(schema_parameter(ct).unwrap_or(ct)),
                None => Named::Nothing,
            },
            TagSource::TopicSegment(i) => msg.topic.split('/').nth(*i).map(parse).unwrap_or(Named::Nothing),
            TagSource::JsonField(pointer) => match json.and_then(|j| j.pointer(pointer)) {
                None | Some(Value::Null) => Named::Nothing,
                Some(Value::Number(n)) => match n.as_u64().and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0) {
                    Some(version) => Named::Version { subject: None, version },
                    None => Named::Unreadable(n.to_string()),
                },
                Some(Value::String(s)) => parse(s),
                Some(other) => Named::Unreadable(clip(&other.to_string())),
            },
        }
    }
}

/// The `schema=` parameter of a content type (`application/json; schema=telemetry/3`).
fn schema_parameter(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|p| p.trim().strip_prefix("schema=")).map(|v| v.trim_matches('"'))
}

/// `telemetry/3`, `3` or `v3`.
fn parse(text: &str) -> Named {
    let (subject, version) = match text.rsplit_once('/') {
        Some((subject, version)) => (Some(subject), version),
        None => (None, text),
    };
    let digits = version.strip_prefix('v').unwrap_or(version);
    let parsed = digits.parse::<u32>().ok().filter(|v| *v > 0 && digits.bytes().all(|b| b.is_ascii_digit()));
    match (subject, parsed) {
        (Some(s), Some(version)) if super::registry::valid_subject_name(s) => Named::Version { subject: Some(s.to_string()), version },
        (None, Some(version)) => Named::Version { subject: None, version },
        _ => Named::Unreadable(clip(text)),
    }
}

/// At most 64 characters of a device's text, for an error message.
fn clip(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn carrier<'a>(topic: &'a str, ct: Option<&'a str>, props: &'a [(String, String)]) -> Carrier<'a> {
        Carrier { topic, content_type: ct, user_properties: props }
    }

    fn v(subject: Option<&str>, version: u32) -> Named {
        Named::Version { subject: subject.map(str::to_string), version }
    }

    #[test]
    fn each_source_reads_its_place() {
        let props = vec![("schema".to_string(), "telemetry/3".to_string())];
        let msg = carrier("sites/a/telemetry/v2", Some("application/json; schema=telemetry/4"), &props);
        let payload = json!({"meta": {"schema": 5}, "s": "telemetry/6"});
        assert_eq!(TagSource::UserProperty("schema".into()).read(&msg, None), v(Some("telemetry"), 3));
        assert_eq!(TagSource::UserProperty("other".into()).read(&msg, None), Named::Nothing);
        assert_eq!(TagSource::ContentType.read(&msg, None), v(Some("telemetry"), 4));
        assert_eq!(TagSource::TopicSegment(3).read(&msg, None), v(None, 2));
        assert_eq!(TagSource::TopicSegment(9).read(&msg, None), Named::Nothing);
        assert_eq!(TagSource::JsonField("/meta/schema".into()).read(&msg, Some(&payload)), v(None, 5));
        assert_eq!(TagSource::JsonField("/s".into()).read(&msg, Some(&payload)), v(Some("telemetry"), 6));
        assert_eq!(TagSource::JsonField("/missing".into()).read(&msg, Some(&payload)), Named::Nothing);
        assert_eq!(TagSource::JsonField("/s".into()).read(&msg, None), Named::Nothing, "a payload that is not JSON names nothing");
    }

    #[test]
    fn a_bare_content_type_is_read_whole() {
        assert_eq!(TagSource::ContentType.read(&carrier("t", Some("telemetry/7"), &[]), None), v(Some("telemetry"), 7));
        assert!(matches!(TagSource::ContentType.read(&carrier("t", Some("application/json"), &[]), None), Named::Unreadable(_)));
    }

    #[test]
    fn what_is_not_a_version_is_unreadable() {
        for bad in ["", "v", "0", "-1", "3.0", "x/", "/3", "a/b/3", "99999999999", "v+3", "telemetry/v", "tele metry/3"] {
            assert!(matches!(parse(bad), Named::Unreadable(_)), "{bad:?}");
        }
        // A device chooses the subject it names: a long or multi-byte one is never echoed whole.
        let long = format!("{}/3", "é".repeat(40_000));
        match parse(&long) {
            Named::Unreadable(text) => assert!(text.len() < 200, "clipped: {} bytes", text.len()),
            other => panic!("{other:?}"),
        }
        let payload = json!({"schema": [1], "neg": -2, "zero": 0});
        let msg = carrier("t", None, &[]);
        for field in ["/schema", "/neg", "/zero"] {
            assert!(matches!(TagSource::JsonField(field.into()).read(&msg, Some(&payload)), Named::Unreadable(_)), "{field}");
        }
    }
}
