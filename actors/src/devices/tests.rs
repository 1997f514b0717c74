use super::LiveSessions;

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
