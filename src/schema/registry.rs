//! The registry folder, loaded and validated as a whole:
//!
//! ```text
//! schemas/
//!   bindings.toml          topics -> subject, version policy, tag, action (binding.rs)
//!   telemetry/             one folder per subject ([A-Za-z0-9_.-]+)
//!     subject.toml         optional: compatibility = "BACKWARD" (the default, as Confluent's)
//!     1.json               version 1: a JSON Schema (2020-12)
//!     2.json               version 2, checked against 1 under the subject's mode
//! ```
//!
//! Files starting with `.` and `*.md` files are ignored; anything else unexpected is an error.
//! A load collects every problem (unreadable file, JSON syntax, a schema the validator refuses,
//! keywords outside the compatibility subset in a checked subject, every incompatibility
//! between versions, every bad binding) and refuses the whole registry if there is one.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::RegistryError;
use super::binding::{self, Binding};
use super::compat::{self, Mode};

/// One version of a subject.
pub struct Version {
    /// The schema as written.
    pub schema: Value,
    /// Compiled once, at load.
    pub validator: jsonschema::Validator,
}

/// A subject: its compatibility mode and numbered versions.
pub struct Subject {
    /// How a new version must relate to the earlier ones.
    pub mode: Mode,
    /// By version number.
    pub versions: BTreeMap<u32, Version>,
}

impl Subject {
    /// The highest version number.
    pub fn latest(&self) -> u32 {
        self.versions.keys().next_back().copied().unwrap_or(0)
    }
}

/// A validated registry.
#[derive(Default)]
pub struct Registry {
    /// By name.
    pub subjects: BTreeMap<String, Subject>,
    /// In file order: the first match applies.
    pub bindings: Vec<Binding>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubject {
    compatibility: Option<String>,
}

impl Registry {
    /// Load `dir`; every problem is named (file, then key or schema path).
    pub fn load(dir: &Path) -> Result<Registry, RegistryError> {
        let mut problems = Vec::new();
        let registry = load_into(dir, &mut problems);
        if problems.is_empty() { Ok(registry) } else { Err(RegistryError { dir: dir.to_path_buf(), problems }) }
    }

    /// What `next` would change in versions this registry has in use: a version changed in
    /// place or removed would break the consumers that read data written under it, and is not
    /// checked by the compatibility modes (they only look at new versions). One line each.
    pub fn changes_in_use(&self, next: &Registry) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, subject) in &self.subjects {
            for (v, version) in &subject.versions {
                match next.subjects.get(name).and_then(|s| s.versions.get(v)) {
                    None => problems.push(format!(
                        "{name}/{v}.json: removed while in use (a running gateway only takes new versions; restart it to remove one)"
                    )),
                    Some(n) if n.schema != version.schema => {
                        problems.push(format!("{name}/{v}.json: changed while in use (add the change as a new version instead)"))
                    }
                    Some(_) => {}
                }
            }
        }
        problems
    }

    /// Bindings and subjects, for `GET /api/schemas`.
    pub fn describe(&self) -> Value {
        let subjects: serde_json::Map<String, Value> = self
            .subjects
            .iter()
            .map(|(name, s)| {
                let versions: Vec<u32> = s.versions.keys().copied().collect();
                (name.clone(), serde_json::json!({ "compatibility": s.mode.as_str(), "versions": versions, "latest": s.latest() }))
            })
            .collect();
        let bindings: Vec<Value> = self
            .bindings
            .iter()
            .map(|b| {
                let version = match b.version {
                    binding::VersionPolicy::Latest => Value::from("latest"),
                    binding::VersionPolicy::Tagged => Value::from("tagged"),
                    binding::VersionPolicy::Pinned(v) => Value::from(v),
                };
                let topics: Vec<&str> = b.topics.iter().map(|(t, _)| t.as_str()).collect();
                let tag = b.tag.as_ref().and_then(|t| serde_json::to_value(t).ok());
                serde_json::json!({ "topics": topics, "subject": b.subject, "version": version, "tag": tag, "on_invalid": b.action.as_str() })
            })
            .collect();
        serde_json::json!({ "subjects": subjects, "bindings": bindings })
    }
}

fn load_into(dir: &Path, problems: &mut Vec<String>) -> Registry {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(format!("{}: {e}", dir.display()));
            return Registry::default();
        }
    };
    let mut subjects = BTreeMap::new();
    // Subjects whose folder has problems: named once, not again by every binding that uses them.
    let mut broken = std::collections::BTreeSet::new();
    let mut bindings_text = None;
    for entry in sorted(entries) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if ignored(&name) {
            continue;
        }
        if path.is_dir() {
            if valid_subject_name(&name) {
                match load_subject(&name, &path, problems) {
                    Some(subject) => {
                        subjects.insert(name, subject);
                    }
                    None => {
                        broken.insert(name);
                    }
                }
            } else {
                problems.push(format!("{name}/: a subject name is letters, digits, '_', '-' and '.'"));
            }
        } else if name == "bindings.toml" {
            match std::fs::read_to_string(&path) {
                Ok(text) => bindings_text = Some(text),
                Err(e) => problems.push(format!("bindings.toml: {e}")),
            }
        } else {
            problems.push(format!("{name}: unexpected file (the registry holds bindings.toml and one folder per subject)"));
        }
    }
    let has_version =
        |s: &str, v: u32| if broken.contains(s) { Some(true) } else { subjects.get(s).map(|sub: &Subject| sub.versions.contains_key(&v)) };
    let bindings = match bindings_text {
        Some(text) => binding::parse(&text, has_version, problems),
        None => {
            problems.push("bindings.toml: missing (it maps topics to subjects)".into());
            Vec::new()
        }
    };
    Registry { subjects, bindings }
}

/// One subject folder: mode, versions, each compiled and checked against the earlier ones.
fn load_subject(name: &str, dir: &Path, problems: &mut Vec<String>) -> Option<Subject> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(format!("{name}/: {e}"));
            return None;
        }
    };
    let before = problems.len();
    let mut mode = Mode::Backward;
    let mut raw = BTreeMap::new();
    for entry in sorted(entries) {
        let file = entry.file_name().to_string_lossy().into_owned();
        let at = format!("{name}/{file}");
        if ignored(&file) {
            continue;
        }
        if file == "subject.toml" {
            mode = read_mode(&at, &entry.path(), problems).unwrap_or(mode);
            continue;
        }
        let Some(version) = file.strip_suffix(".json").and_then(|v| v.parse::<u32>().ok()).filter(|v| *v > 0) else {
            problems.push(format!("{at}: unexpected file (versions are <N>.json, N = 1, 2, ...; settings in subject.toml)"));
            continue;
        };
        if let Some(schema) = read_json(&at, &entry.path(), problems) {
            raw.insert(version, (at, schema));
        }
    }
    if raw.is_empty() && problems.len() == before {
        problems.push(format!("{name}/: no versions (1.json, 2.json, ...)"));
    }
    let mut versions = BTreeMap::new();
    let mut history: Vec<(u32, &Value)> = Vec::new();
    for (version, (at, schema)) in &raw {
        let validator = match jsonschema::draft202012::new(schema) {
            Ok(validator) => validator,
            Err(e) => {
                problems.push(format!("{at}: not a valid JSON Schema: {e}"));
                continue;
            }
        };
        if mode != Mode::None {
            let outside = compat::unsupported(schema);
            if !outside.is_empty() {
                problems.push(format!(
                    "{at}: uses keywords outside the subset compatibility is decided on (docs/SCHEMAS.md): {}; \
                     set compatibility = \"NONE\" in {name}/subject.toml to use them unchecked",
                    outside.join(", ")
                ));
                continue;
            }
            for finding in compat::check(mode, &history, schema) {
                problems.push(format!("{at}: breaks {mode}: {finding}"));
            }
        }
        history.push((*version, schema));
        versions.insert(*version, Version { schema: schema.clone(), validator });
    }
    (problems.len() == before).then_some(Subject { mode, versions })
}

fn read_mode(at: &str, path: &Path, problems: &mut Vec<String>) -> Option<Mode> {
    let text = std::fs::read_to_string(path).map_err(|e| problems.push(format!("{at}: {e}"))).ok()?;
    let raw: RawSubject =
        toml::from_str(&text).map_err(|e| problems.push(format!("{at}: {}", edge_gateway_actors::tomlkey::describe(&text, &e)))).ok()?;
    let value = raw.compatibility?;
    let mode = Mode::parse(&value);
    if mode.is_none() {
        let all: Vec<&str> = Mode::ALL.iter().map(|m| m.as_str()).collect();
        problems.push(format!("{at}: compatibility: \"{value}\" is not one of {}", all.join(", ")));
    }
    mode
}

fn read_json(at: &str, path: &Path, problems: &mut Vec<String>) -> Option<Value> {
    let bytes = std::fs::read(path).map_err(|e| problems.push(format!("{at}: {e}"))).ok()?;
    serde_json::from_slice(&bytes).map_err(|e| problems.push(format!("{at}: not JSON: {e}"))).ok()
}

/// Directory entries in name order (so problems come out in a stable order).
fn sorted(entries: std::fs::ReadDir) -> Vec<std::fs::DirEntry> {
    let mut all: Vec<_> = entries.flatten().collect();
    all.sort_by_key(|e| e.file_name());
    all
}

fn ignored(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".md")
}

/// A subject name: a folder name of letters, digits, `_`, `-` and `.`, at most 128 bytes.
pub(super) fn valid_subject_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}
