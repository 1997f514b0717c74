use std::collections::BTreeMap;

use super::{DeviceStatus, LiveSessions};

#[test]
fn live_sessions_count_per_identity_and_forget_closed_ones() {
    let live = LiveSessions::default();
    live.opened("a");
    live.opened("a");
    live.opened("b");
    assert_eq!((live.count("a"), live.count("b"), live.count("c")), (2, 1, 0));
    live.closed("a");
    assert_eq!(live.count("a"), 1);
    live.closed("a");
    live.closed("a"); // one close too many stays at 0
    live.closed("c"); // never opened
    assert_eq!((live.count("a"), live.count("b")), (0, 1));
    assert!(!live.lock().contains_key("a"), "an identity without sessions is removed");
}

#[test]
fn live_sessions_give_memory_back_after_a_storm() {
    let live = LiveSessions::default();
    let ids: Vec<String> = (0..20_000).map(|i| format!("device-{i}")).collect();
    ids.iter().for_each(|id| live.opened(id));
    let peak = live.lock().capacity();
    assert!(peak >= 20_000);
    ids[10..].iter().for_each(|id| live.closed(id));
    let after = live.lock().capacity();
    assert!(after < peak / 8, "capacity {after} after the storm, {peak} at its peak");
    assert!(ids[..10].iter().all(|id| live.count(id) == 1), "the open ones are kept");
}

/// A device table holding `known`, as the actor keeps it.
fn table(known: &[&str]) -> BTreeMap<String, DeviceStatus> {
    known.iter().map(|id| (id.to_string(), DeviceStatus { identity: id.to_string(), sessions: 7, ..Default::default() })).collect()
}

#[test]
fn counts_come_from_the_live_table_and_unknown_open_identities_are_added() {
    let live = LiveSessions::default();
    live.opened("a");
    live.opened("a");
    live.opened("c");
    let mut devices = table(&["a", "b"]);
    let added = live.count_into(&mut devices, 42);
    assert_eq!(added, vec!["c".to_string()]);
    assert_eq!((devices["a"].sessions, devices["b"].sessions, devices["c"].sessions), (2, 0, 1));
    assert_eq!((devices["c"].identity.as_str(), devices["c"].first_seen_ms, devices["c"].connected_at_ms), ("c", 42, 42));

    // Every open identity known: counts only, nothing added.
    live.closed("a");
    live.opened("b");
    assert!(live.count_into(&mut devices, 43).is_empty());
    assert_eq!((devices["a"].sessions, devices["b"].sessions, devices["c"].sessions), (1, 1, 1));
    assert_eq!(devices["c"].first_seen_ms, 42);
}

#[test]
fn a_known_device_without_sessions_does_not_hide_a_missing_one() {
    // As many devices as open identities, but not the same ones.
    let live = LiveSessions::default();
    live.opened("new");
    let mut devices = table(&["old"]);
    assert_eq!(live.count_into(&mut devices, 1), vec!["new".to_string()]);
    assert_eq!((devices["old"].sessions, devices["new"].sessions), (0, 1));
}
