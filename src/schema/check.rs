//! One payload against the registry: which binding applies, which version, and whether the
//! payload validates. The payload is parsed once (the JSON field tag reads the same value);
//! a valid payload costs one `is_valid` walk, the errors are only collected for an invalid one.

use edge_gateway_actors::metrics::SchemaFailure;
use edge_gateway_actors::record::SchemaTag;
use serde_json::Value;

use super::binding::{Action, VersionPolicy};
use super::registry::Registry;
use super::tag::{Carrier, Named};
use crate::trust::acl::Who;

/// Errors kept per failed payload (the rest are counted in the last line).
const MAX_ERRORS: usize = 8;

/// What the check of one bound payload found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Subject, version, valid, errors: stored with the record.
    pub tag: SchemaTag,
    /// Why it failed, when it did.
    pub failure: Option<SchemaFailure>,
    /// The binding's action for a failure.
    pub action: Action,
}

impl Verdict {
    /// The first error, for a PUBACK reason string or a log line.
    pub fn first_error(&self) -> &str {
        self.tag.errors.first().map(String::as_str).unwrap_or("")
    }
}

impl Registry {
    /// Check `payload`, published by `who` on `msg.topic`; `None` when no binding covers the topic.
    pub fn check(&self, who: &Who, msg: &Carrier<'_>, payload: &[u8]) -> Option<Verdict> {
        let binding = self.bindings.iter().find(|b| b.matches(who, msg.topic))?;
        let subject = self.subjects.get(&binding.subject)?;
        let json: Option<Value> = serde_json::from_slice(payload).ok();
        let named = match (&binding.version, &binding.tag) {
            (VersionPolicy::Tagged, Some(source)) => source.read(msg, json.as_ref()),
            _ => Named::Nothing,
        };
        let (version, tag_problem) = match (binding.version, named) {
            (VersionPolicy::Pinned(v), _) => (v, None),
            (_, Named::Nothing) => (subject.latest(), None),
            (_, Named::Version { subject: Some(s), version }) if s != binding.subject => {
                (version, Some((SchemaFailure::BadTag, format!("names subject \"{s}\"; this topic is bound to \"{}\"", binding.subject))))
            }
            (_, Named::Version { version, .. }) if !subject.versions.contains_key(&version) => {
                let msg = format!(
                    "names version {version}; subject \"{}\" has {:?}",
                    binding.subject,
                    subject.versions.keys().collect::<Vec<_>>()
                );
                (version, Some((SchemaFailure::UnknownVersion, msg)))
            }
            (_, Named::Version { version, .. }) => (version, None),
            (_, Named::Unreadable(text)) => {
                (subject.latest(), Some((SchemaFailure::BadTag, format!("schema tag \"{text}\" is not <subject>/<version> or <version>"))))
            }
        };
        let verdict = |failure: Option<SchemaFailure>, errors: Vec<String>| Verdict {
            tag: SchemaTag { subject: binding.subject.clone(), version, valid: failure.is_none(), errors },
            failure,
            action: binding.action,
        };
        if let Some((failure, message)) = tag_problem {
            return Some(verdict(Some(failure), vec![clip(&format!("/: {message}"))]));
        }
        let Some(json) = json else {
            let why = match std::str::from_utf8(payload) {
                Ok(_) => "payload is not JSON",
                Err(_) => "payload is not UTF-8 JSON",
            };
            return Some(verdict(Some(SchemaFailure::NotJson), vec![format!("/: {why}")]));
        };
        let validator = &subject.versions.get(&version)?.validator;
        if validator.is_valid(&json) {
            return Some(verdict(None, Vec::new()));
        }
        let mut errors = Vec::new();
        let mut more = 0usize;
        for e in validator.iter_errors(&json) {
            if errors.len() < MAX_ERRORS {
                let path = e.instance_path().as_str();
                errors.push(clip(&format!("{}: {e}", if path.is_empty() { "/" } else { path })));
            } else {
                more += 1;
            }
        }
        if more > 0 {
            errors.push(format!("... and {more} more"));
        }
        Some(verdict(Some(SchemaFailure::Schema), errors))
    }
}

/// At most 256 bytes of one error (messages quote the failing value, which a device chose).
fn clip(text: &str) -> String {
    if text.len() <= 256 {
        return text.to_string();
    }
    let mut end = 253;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}
