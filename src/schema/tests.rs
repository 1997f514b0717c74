//! The registry as a whole: loading a folder (and naming every problem in a bad one), and
//! checking payloads through bindings.

use std::path::Path;

use edge_gateway_actors::metrics::SchemaFailure;
use serde_json::json;

use super::binding::Action;
use super::registry::Registry;
use super::tag::Carrier;
use crate::trust::acl::Who;

const V1: &str = r#"{"type":"object","properties":{"temp":{"type":"number"},"unit":{"enum":["C","F"]}},"required":["temp"],"additionalProperties":false}"#;
const V2: &str = r#"{"type":"object","properties":{"temp":{"type":"number"},"unit":{"enum":["C","F","K"]},"hum":{"type":"number"}},
    "required":["temp"],"additionalProperties":false}"#;

const BINDINGS: &str = r#"
[[binding]]
topics = ["devices/+/telemetry"]
subject = "telemetry"
tag = { user_property = "schema" }
on_invalid = "refuse"

[[binding]]
topics = ["pinned/#"]
subject = "telemetry"
version = 1
on_invalid = "keep_apart"
"#;

pub(crate) fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

fn good() -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[("bindings.toml", BINDINGS), ("telemetry/1.json", V1), ("telemetry/2.json", V2), ("README.md", "notes")]);
    let registry = Registry::load(dir.path()).expect("loads");
    (dir, registry)
}

const WHO: Who = Who { identity: "d1", client_id: "d1" };

fn carrier<'a>(topic: &'a str, props: &'a [(String, String)]) -> Carrier<'a> {
    Carrier { topic, content_type: None, user_properties: props }
}

#[test]
fn a_good_registry_loads_and_describes_itself() {
    let (_dir, r) = good();
    let d = r.describe();
    assert_eq!(d["subjects"]["telemetry"]["versions"], json!([1, 2]));
    assert_eq!(d["subjects"]["telemetry"]["compatibility"], "BACKWARD");
    assert_eq!(d["bindings"][0]["version"], "tagged");
    assert_eq!(d["bindings"][1]["on_invalid"], "keep_apart");
}

#[test]
fn a_valid_payload_passes_against_the_latest_version_and_an_unbound_topic_is_not_checked() {
    let (_dir, r) = good();
    let v = r.check(&WHO, &carrier("devices/d1/telemetry", &[]), br#"{"temp": 21.5, "unit": "K"}"#).unwrap();
    assert_eq!((v.tag.subject.as_str(), v.tag.version, v.tag.valid, v.failure), ("telemetry", 2, true, None));
    assert!(r.check(&WHO, &carrier("devices/d1/other", &[]), b"not json").is_none());
}

#[test]
fn the_named_version_is_used_and_a_failure_names_its_path() {
    let (_dir, r) = good();
    let props = vec![("schema".to_string(), "telemetry/1".to_string())];
    let v = r.check(&WHO, &carrier("devices/d1/telemetry", &props), br#"{"temp": 21.5, "unit": "K"}"#).unwrap();
    assert_eq!((v.tag.version, v.failure, v.action), (1, Some(SchemaFailure::Schema), Action::Refuse));
    assert!(v.first_error().starts_with("/unit: "), "{:?}", v.tag.errors);
    let v = r.check(&WHO, &carrier("devices/d1/telemetry", &props), br#"{"unit": "C"}"#).unwrap();
    assert!(v.first_error().starts_with("/: ") && v.first_error().contains("temp"), "{:?}", v.tag.errors);
}

#[test]
fn bad_tags_unknown_versions_and_non_json_fail_with_their_reason() {
    let (_dir, r) = good();
    let check =
        |props: Vec<(String, String)>, payload: &[u8]| r.check(&WHO, &carrier("devices/d1/telemetry", &props), payload).unwrap().failure;
    let tag = |v: &str| vec![("schema".to_string(), v.to_string())];
    assert_eq!(check(tag("telemetry/9"), br#"{"temp":1}"#), Some(SchemaFailure::UnknownVersion));
    assert_eq!(check(tag("status/1"), br#"{"temp":1}"#), Some(SchemaFailure::BadTag));
    assert_eq!(check(tag("latest!"), br#"{"temp":1}"#), Some(SchemaFailure::BadTag));
    assert_eq!(check(vec![], b"{\"temp\": "), Some(SchemaFailure::NotJson));
    assert_eq!(check(vec![], &[0xff, 0xfe]), Some(SchemaFailure::NotJson));
    // The pinned binding ignores tags.
    let pinned = r.check(&WHO, &carrier("pinned/a", &tag("telemetry/2")), br#"{"temp":1,"unit":"K"}"#).unwrap();
    assert_eq!((pinned.tag.version, pinned.failure, pinned.action), (1, Some(SchemaFailure::Schema), Action::KeepApart));
}

#[test]
fn many_errors_are_capped_and_long_ones_clipped() {
    let dir = tempfile::tempdir().unwrap();
    let props: String = (0..20).map(|i| format!("\"p{i}\":{{\"type\":\"string\"}}")).collect::<Vec<_>>().join(",");
    let schema = format!("{{\"type\":\"object\",\"properties\":{{{props}}}}}");
    let bindings = "[[binding]]\ntopics = [\"#\"]\nsubject = \"s\"\non_invalid = \"tag\"\n";
    write(dir.path(), &[("bindings.toml", bindings), ("s/1.json", &schema)]);
    let r = Registry::load(dir.path()).unwrap();
    let payload: String = (0..20).map(|i| format!("\"p{i}\":{i}")).collect::<Vec<_>>().join(",");
    let v = r.check(&WHO, &carrier("a", &[]), format!("{{{payload}}}").as_bytes()).unwrap();
    assert_eq!(v.tag.errors.len(), 9, "8 errors and a count: {:?}", v.tag.errors);
    assert_eq!(v.tag.errors[8], "... and 12 more");
    // A device chooses the failing value an error quotes: each error is clipped.
    let long = format!("{{\"p0\": \"{}\"}}", "x".repeat(2000));
    write(dir.path(), &[("s/2.json", r#"{"properties":{"p0":{"maxLength":3}}}"#), ("s/subject.toml", "compatibility = \"NONE\"\n")]);
    let r = Registry::load(dir.path()).unwrap();
    let v = r.check(&WHO, &carrier("a", &[]), long.as_bytes()).unwrap();
    assert_eq!(v.tag.version, 2);
    assert!(!v.tag.errors.is_empty() && v.tag.errors.iter().all(|e| e.len() <= 256), "{:?}", v.tag.errors);
}

#[test]
fn a_version_in_use_may_not_change_or_go_away_but_new_ones_may_come() {
    let (dir, in_use) = good();
    write(dir.path(), &[("telemetry/3.json", V2)]);
    let grown = Registry::load(dir.path()).unwrap();
    assert!(in_use.changes_in_use(&grown).is_empty(), "a new version is what a reload is for");
    write(dir.path(), &[("telemetry/1.json", V2)]);
    std::fs::remove_file(dir.path().join("telemetry/2.json")).unwrap();
    write(dir.path(), &[("telemetry/subject.toml", "compatibility = \"NONE\"\n")]);
    let edited = Registry::load(dir.path()).unwrap();
    let problems = in_use.changes_in_use(&edited);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with("telemetry/1.json: changed while in use"), "{problems:?}");
    assert!(problems[1].starts_with("telemetry/2.json: removed while in use"), "{problems:?}");
}

#[test]
fn a_bad_registry_names_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "bindings.toml",
                "[[binding]]\ntopics = [\"a\"]\nsubject = \"missing\"\non_invalid = \"tag\"\n\
                 [[binding]]\ntopics = [\"b\"]\nsubject = \"telemetry\"\non_invalid = \"tag\"\n",
            ),
            ("narrowing/1.json", V2),
            ("narrowing/2.json", V1),
            ("choices/1.json", r#"{"oneOf": [{"type": "string"}, {"type": "number"}]}"#),
            ("unchecked/1.json", r#"{"oneOf": [{"type": "string"}, {"type": "number"}]}"#),
            ("unchecked/subject.toml", "compatibility = \"NONE\"\n"),
            ("telemetry/1.json", "{\"type\": "),
            ("types/1.json", "{\"type\": 5}"),
            ("types/subject.toml", "compatibility = \"SIDEWAYS\"\n"),
            ("types/x.json", "{}"),
            ("empty/.keep", ""),
            ("bad name/1.json", "{}"),
            ("stray.txt", ""),
        ],
    );
    let err = Registry::load(dir.path()).err().expect("refused");
    let text = err.problems.join("\n");
    for expected in [
        "telemetry/1.json: not JSON",
        "types/1.json: not a valid JSON Schema",
        "types/subject.toml: compatibility: \"SIDEWAYS\" is not one of",
        "types/x.json: unexpected file",
        "empty/: no versions",
        "bad name/: a subject name is",
        "stray.txt: unexpected file",
        "bindings.toml: binding[0].subject: no subject \"missing\"",
        "narrowing/2.json: breaks BACKWARD: against version 1 (BACKWARD): /properties/hum: property_removed",
        "narrowing/2.json: breaks BACKWARD: against version 1 (BACKWARD): /properties/unit: enum_value_removed",
        "choices/1.json: uses keywords outside the subset compatibility is decided on (docs/SCHEMAS.md): /: oneOf",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("unchecked/"), "a NONE subject may use any keyword: {text}");
    assert!(!text.contains("binding[1]"), "a binding to a subject with problems adds no problem of its own: {text}");
    assert!(Registry::load(&dir.path().join("nope")).is_err(), "a missing folder is an error");
}
