//! ACL decisions and validation, end to end from TOML text.

use super::*;

const ALLOW: Decision = Decision::Allow;
const NO_RULE: Decision = Decision::Deny(DenyReason::NoRule);
const DENIED: Decision = Decision::Deny(DenyReason::DeniedByRule);

fn who<'a>(identity: &'a str, client_id: &'a str) -> Who<'a> {
    Who { identity, client_id }
}

fn acl(text: &str) -> Acl {
    Acl::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(text: &str) -> Vec<String> {
    match Acl::parse(text) {
        Err(AclError(errors)) => errors,
        Ok(_) => panic!("accepted: {text}"),
    }
}

#[test]
fn default_namespace_allows_a_devices_own_topics_and_refuses_another_devices() {
    let acl = Acl::default_namespace_only();
    let dev = who("dev-1", "c");
    assert_eq!(acl.check_publish(&dev, "devices/dev-1/telemetry"), ALLOW);
    assert_eq!(acl.check_subscribe(&dev, "devices/dev-1/cmd/#"), ALLOW);
    assert_eq!(acl.check_subscribe(&dev, "devices/dev-1/#"), ALLOW);
    assert_eq!(acl.check_publish(&dev, "devices/dev-2/telemetry"), NO_RULE);
    assert_eq!(acl.check_subscribe(&dev, "devices/+/cmd"), NO_RULE);
    assert_eq!(acl.check_publish(&dev, "devices/dev-10/x"), NO_RULE);
    assert_eq!(acl.rule_count(), 1);
}

#[test]
fn subscribing_to_hash_at_the_root_is_refused_by_default() {
    let acl = acl("");
    assert_eq!(acl.check_subscribe(&who("dev-1", "c"), "#"), NO_RULE);
    assert_eq!(acl.check_subscribe(&who("dev-1", "c"), "+/dev-1/#"), NO_RULE);
}

#[test]
fn a_group_rule_applies_to_every_member_and_nobody_else() {
    let acl = acl(r##"
        [groups]
        operators = ["ops-console", "ops-laptop"]
        [[allow]]
        groups = ["operators"]
        subscribe = ["devices/+/status"]
        "##);
    for member in ["ops-console", "ops-laptop"] {
        assert_eq!(acl.check_subscribe(&who(member, "c"), "devices/+/status"), ALLOW, "{member}");
        assert_eq!(acl.check_publish(&who(member, "c"), "devices/x/status"), NO_RULE, "subscribe only");
    }
    assert_eq!(acl.check_subscribe(&who("dev-1", "c"), "devices/+/status"), NO_RULE);
}

#[test]
fn a_star_rule_applies_to_every_identity() {
    let acl = acl("[[allow]]\nidentities = [\"*\"]\npublish = [\"sites/%u/telemetry/#\"]\n");
    assert_eq!(acl.check_publish(&who("dev-1", "c"), "sites/dev-1/telemetry/t1"), ALLOW);
    assert_eq!(acl.check_publish(&who("dev-2", "c"), "sites/dev-2/telemetry"), ALLOW);
    assert_eq!(acl.check_publish(&who("dev-2", "c"), "sites/dev-1/telemetry"), NO_RULE);
    assert_eq!(acl.rule_count(), 2);
}

#[test]
fn a_deny_rule_beats_an_allow_rule_and_the_default_namespace() {
    let acl = acl(r##"
        [[allow]]
        identities = ["*"]
        publish = ["sites/#"]
        [[deny]]
        identities = ["legacy-07"]
        publish = ["#"]
        "##);
    let legacy = who("legacy-07", "c");
    assert_eq!(acl.check_publish(&legacy, "sites/a"), DENIED);
    assert_eq!(acl.check_publish(&legacy, "devices/legacy-07/x"), DENIED);
    assert_eq!(acl.check_subscribe(&legacy, "devices/legacy-07/x"), ALLOW, "deny covers publish only");
    assert_eq!(acl.check_publish(&who("dev-1", "c"), "sites/a"), ALLOW);
}

#[test]
fn a_subscription_is_allowed_only_when_one_pattern_covers_it() {
    let acl = acl("default_namespace = false\n[[allow]]\nidentities = [\"op\"]\nsubscribe = [\"devices/a/#\"]\n");
    let op = who("op", "c");
    assert_eq!(acl.check_subscribe(&op, "devices/a/x/+"), ALLOW);
    assert_eq!(acl.check_subscribe(&op, "devices/a"), ALLOW);
    assert_eq!(acl.check_subscribe(&op, "devices/+/x"), NO_RULE);
    assert_eq!(acl.check_subscribe(&op, "devices/#"), NO_RULE);
    assert_eq!(acl.check_subscribe(&op, "devices/a/#/x"), NO_RULE, "invalid filter");
}

#[test]
fn a_deny_pattern_refuses_any_subscription_it_overlaps() {
    let acl = acl(r##"
        [[allow]]
        identities = ["op"]
        subscribe = ["devices/#"]
        [[deny]]
        identities = ["op"]
        subscribe = ["devices/+/secrets"]
        "##);
    let op = who("op", "c");
    assert_eq!(acl.check_subscribe(&op, "devices/#"), DENIED);
    assert_eq!(acl.check_subscribe(&op, "devices/a/+"), DENIED);
    assert_eq!(acl.check_subscribe(&op, "devices/a/status"), ALLOW);
    assert_eq!(acl.check_subscribe(&op, "devices/a/secrets/x"), ALLOW, "one level deeper is another topic");
}

#[test]
fn client_id_placeholder_is_replaced_by_the_connections_client_id() {
    let acl = acl("[[allow]]\nidentities = [\"*\"]\npublish = [\"clients/%c/%u-state\"]\n");
    assert_eq!(acl.check_publish(&who("dev-1", "cid-9"), "clients/cid-9/dev-1-state"), ALLOW);
    assert_eq!(acl.check_publish(&who("dev-1", "cid-9"), "clients/cid-8/dev-1-state"), NO_RULE);
    assert_eq!(acl.check_publish(&who("dev-1", ""), "clients//dev-1-state"), NO_RULE, "empty client id");
}

#[test]
fn hostile_identities_never_match_a_placeholder_pattern() {
    let acl = Acl::default_namespace_only();
    let plus = who("+", "c");
    assert_eq!(acl.check_subscribe(&plus, "devices/+/#"), NO_RULE);
    assert_eq!(acl.check_subscribe(&plus, "devices/+"), NO_RULE);
    let hash = who("#", "c");
    assert_eq!(acl.check_subscribe(&hash, "devices/#"), NO_RULE);
    let slash = who("a/b", "c");
    assert_eq!(acl.check_publish(&slash, "devices/a/b/x"), NO_RULE);
    assert_eq!(acl.check_subscribe(&slash, "devices/a/b/#"), NO_RULE);
    assert_eq!(acl.check_publish(&who("", "c"), "devices//x"), NO_RULE);
}

#[test]
fn a_hostile_identity_makes_a_placeholder_deny_rule_refuse_everything() {
    let acl = acl("[[allow]]\nidentities = [\"*\"]\npublish = [\"open/#\"]\n[[deny]]\nidentities = [\"*\"]\npublish = [\"open/%u/x\"]\n");
    assert_eq!(acl.check_publish(&who("dev-1", "c"), "open/dev-2/x"), ALLOW);
    assert_eq!(acl.check_publish(&who("dev-1", "c"), "open/dev-1/x"), DENIED);
    assert_eq!(acl.check_publish(&who("a/b", "c"), "open/other"), DENIED);
}

#[test]
fn wildcards_at_the_first_level_do_not_match_dollar_topics() {
    let acl = acl("[[allow]]\nidentities = [\"op\"]\npublish = [\"#\"]\nsubscribe = [\"#\", \"+/x\", \"$SYS/#\"]\n");
    let op = who("op", "c");
    assert_eq!(acl.check_publish(&op, "$SYS/broker/load"), NO_RULE);
    assert_eq!(acl.check_publish(&op, "a/$b"), ALLOW);
    assert_eq!(acl.check_subscribe(&op, "$SYS/+"), ALLOW, "by the literal $SYS/# pattern");
    assert_eq!(acl.check_subscribe(&op, "$share/x"), NO_RULE);
    assert_eq!(acl.check_subscribe(&op, "#"), ALLOW);
}

#[test]
fn every_validation_error_is_reported_with_its_key() {
    let text = r##"
        [groups]
        ops = ["ops-1", ""]
        [[allow]]
        identities = ["a"]
        publish = ["ok/#"]
        [[allow]]
        groups = ["x"]
        publish = ["ok"]
        [[allow]]
        identities = ["a"]
        publish = ["a/#/b", "a/b+", ""]
        subscribe = ["x/%q"]
        [[deny]]
        publish = ["#"]
        [[deny]]
        identities = ["b"]
    "##;
    assert_eq!(
        errors(text),
        [
            "groups.ops[1]: empty identity",
            "allow[1].groups[0]: unknown group \"x\"",
            "allow[2].publish[0]: \"a/#/b\": '#' must be the last level",
            "allow[2].publish[1]: \"a/b+\": '+' must be a whole level",
            "allow[2].publish[2]: \"\": empty topic filter",
            "allow[2].subscribe[0]: \"x/%q\": unknown placeholder '%q' (use %u, %c, or %% for '%')",
            "deny[0]: needs identities or groups",
            "deny[1]: needs publish or subscribe patterns",
        ]
    );
}

#[test]
fn unknown_keys_are_refused_with_their_key_and_line() {
    let errors = errors("[[allow]]\nidentities = [\"a\"]\npublsh = [\"x\"]\n");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("allow[0].publsh: unknown field `publsh`"), "{errors:?}");
    assert!(errors[0].ends_with("(line 3, column 1)"), "{errors:?}");
    assert!(self::errors("default_namspace = false\n")[0].starts_with("default_namspace: unknown field"));
}

#[test]
fn toml_syntax_errors_name_the_line_and_column() {
    let errors = errors("[[allow]]\nidentities = [\"a\"\n");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("line 2, column"), "{errors:?}");
}

#[test]
fn turning_the_default_namespace_off_removes_it() {
    let acl = acl("default_namespace = false\n");
    assert_eq!(acl.check_publish(&who("dev-1", "c"), "devices/dev-1/x"), NO_RULE);
    assert_eq!(acl.rule_count(), 0);
}

#[test]
fn publishing_to_a_name_with_wildcards_is_refused() {
    let acl = Acl::default_namespace_only();
    let dev = who("dev-1", "c");
    assert_eq!(acl.check_publish(&dev, "devices/dev-1/+"), NO_RULE);
    assert_eq!(acl.check_publish(&dev, "devices/dev-1/#"), NO_RULE);
    assert_eq!(acl.check_publish(&dev, ""), NO_RULE);
}

#[test]
fn loading_a_missing_file_names_its_path() {
    let Err(AclError(errors)) = Acl::load(Path::new("/nonexistent/acl.toml")) else { panic!("loaded") };
    assert!(errors[0].starts_with("/nonexistent/acl.toml: "), "{errors:?}");
}

#[test]
fn deny_reasons_have_stable_metric_labels() {
    assert_eq!(DenyReason::NoRule.as_str(), "no_rule");
    assert_eq!(DenyReason::DeniedByRule.as_str(), "denied_by_rule");
    assert!(ALLOW.is_allowed() && !DENIED.is_allowed());
}

#[test]
fn the_example_in_the_module_doc_is_valid() {
    let doc = include_str!("mod.rs");
    let example: String = doc
        .lines()
        .skip_while(|l| !l.starts_with("//! ```toml"))
        .skip(1)
        .take_while(|l| !l.starts_with("//! ```"))
        .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start()))
        .collect();
    let acl = acl(&example);
    assert_eq!(acl.rule_count(), 3);
    assert_eq!(acl.check_subscribe(&who("ops-laptop", "c"), "devices/+/status"), ALLOW);
    assert_eq!(acl.check_publish(&who("ops-laptop", "c"), "sites/ops-laptop/telemetry/t"), ALLOW);
    assert_eq!(acl.check_publish(&who("legacy-07", "c"), "devices/legacy-07/x"), DENIED);
}

#[test]
fn a_deny_rule_on_hash_also_refuses_dollar_topics() {
    let acl = acl(r##"
        [[allow]]
        identities = ["*"]
        publish = ["$aws/things/%u/#"]
        [[deny]]
        identities = ["legacy-07"]
        publish = ["#"]
        "##);
    assert_eq!(acl.check_publish(&who("legacy-07", "legacy-07"), "$aws/things/legacy-07/shadow/update"), DENIED);
    assert_eq!(acl.check_publish(&who("dev-1", "dev-1"), "$aws/things/dev-1/shadow/update"), ALLOW);
}

/// Property tests: the compiled patterns against a plain reference matcher written from the MQTT
/// specification, on generated topics, filters and patterns (`$` topics are covered above).
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// MQTT filter matching, straight from the spec: `+` is one level, `#` the rest (even none).
    fn matches(filter: &str, topic: &str) -> bool {
        let (f, t): (Vec<&str>, Vec<&str>) = (filter.split('/').collect(), topic.split('/').collect());
        for (i, level) in f.iter().enumerate() {
            match *level {
                "#" => return true,
                "+" if i < t.len() => {}
                lit if i < t.len() && t[i] == lit => {}
                _ => return false,
            }
        }
        f.len() == t.len()
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![Just("a"), Just("b"), Just("c"), Just("")].prop_map(String::from)
    }

    fn topic() -> impl Strategy<Value = String> {
        // A topic name has at least one character (MQTT 4.7.3).
        prop::collection::vec(level(), 1..5).prop_map(|l| l.join("/")).prop_filter("empty topic", |t| !t.is_empty())
    }

    /// A filter or pattern: literal or `+` levels, maybe ending in `#`.
    fn filter() -> impl Strategy<Value = String> {
        let lvl = prop_oneof![3 => level(), 1 => Just("+".to_string())];
        (prop::collection::vec(lvl, 0..4), any::<bool>()).prop_filter_map("empty filter", |(mut levels, hash)| {
            if hash {
                levels.push("#".into());
            }
            Some(levels.join("/")).filter(|f| !f.is_empty())
        })
    }

    /// The topics a filter matches, with each wildcard replaced by each level of a small set.
    fn instances(filter: &str) -> Vec<String> {
        let mut out = vec![String::new()];
        for (i, l) in filter.split('/').enumerate() {
            let choices: Vec<String> = match l {
                "+" => vec!["a".into(), "x".into(), "".into()],
                "#" => vec!["".into(), "a".into(), "x/y".into()],
                lit => vec![lit.into()],
            };
            out = out
                .iter()
                .flat_map(|prefix| {
                    choices.iter().map(move |c| match (i, l) {
                        (0, _) => c.clone(),
                        (_, "#") if c.is_empty() => prefix.clone(), // `a/#` matches `a`
                        _ => format!("{prefix}/{c}"),
                    })
                })
                .collect();
        }
        out.into_iter().filter(|t| matches(filter, t)).collect()
    }

    fn rules(allow: &str, deny: Option<&str>) -> Acl {
        let mut text = format!("[[allow]]\nidentities = [\"*\"]\npublish = [\"{allow}\"]\nsubscribe = [\"{allow}\"]\n");
        if let Some(d) = deny {
            text.push_str(&format!("[[deny]]\nidentities = [\"*\"]\npublish = [\"{d}\"]\nsubscribe = [\"{d}\"]\n"));
        }
        acl(&text)
    }

    proptest! {
        #[test]
        fn publish_is_allowed_exactly_where_the_pattern_matches(pattern in filter(), t in topic()) {
            let acl = rules(&pattern, None);
            prop_assert_eq!(acl.check_publish(&who("d", "d"), &t).is_allowed(), matches(&pattern, &t));
        }

        #[test]
        fn a_deny_rule_refuses_exactly_the_topics_it_matches(pattern in filter(), t in topic()) {
            let acl = rules("#", Some(&pattern));
            prop_assert_eq!(acl.check_publish(&who("d", "d"), &t).is_allowed(), !matches(&pattern, &t));
        }

        #[test]
        fn an_allowed_subscription_only_reaches_topics_the_allow_pattern_covers(pattern in filter(), f in filter()) {
            if rules(&pattern, None).check_subscribe(&who("d", "d"), &f).is_allowed() {
                for t in instances(&f) {
                    prop_assert!(matches(&pattern, &t), "{f} allowed under {pattern}, but reaches {t}");
                }
            }
        }

        #[test]
        fn an_allowed_subscription_reaches_no_topic_a_deny_pattern_matches(pattern in filter(), f in filter()) {
            if rules("#", Some(&pattern)).check_subscribe(&who("d", "d"), &f).is_allowed() {
                for t in instances(&f) {
                    prop_assert!(!matches(&pattern, &t), "{f} allowed despite deny {pattern}, reaches {t}");
                }
            }
        }

        #[test]
        fn the_identity_placeholder_confines_a_device_to_its_own_namespace(id in "[a-z0-9-]{1,12}", other in "[a-z0-9-]{1,12}", rest in topic()) {
            let acl = Acl::default_namespace_only();
            let me = who(&id, &id);
            let (own, theirs) = (format!("devices/{id}/{rest}"), format!("devices/{other}/{rest}"));
            prop_assert!(acl.check_publish(&me, &own).is_allowed());
            prop_assert_eq!(acl.check_publish(&me, &theirs).is_allowed(), other == id);
        }

        #[test]
        fn any_acl_text_is_parsed_or_refused_with_a_reason(text in "\\PC{0,200}") {
            if let Err(AclError(errors)) = Acl::parse(&text) {
                prop_assert!(!errors.is_empty() && errors.iter().all(|e| !e.is_empty()));
            }
        }
    }
}

#[test]
fn without_a_file_the_downlink_identity_may_command_every_device_and_nothing_else() {
    let acl = Acl::built_in("api");
    let api = Who { identity: "api", client_id: "api" };
    let dev = Who { identity: "pump-7", client_id: "pump-7" };
    assert!(acl.check_publish(&api, "devices/pump-7/cmd/open").is_allowed());
    assert!(!acl.check_publish(&api, "devices/pump-7/telemetry").is_allowed());
    assert!(!acl.check_publish(&dev, "devices/other/cmd/open").is_allowed(), "devices still only in their own namespace");
    assert!(acl.check_subscribe(&dev, "devices/pump-7/cmd/#").is_allowed(), "a device subscribes to its own commands");
}
