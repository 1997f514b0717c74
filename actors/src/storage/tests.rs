//! The storage actor against a real store file of each engine: group commit, quota policies,
//! cursors, TTL, dead letters, a failed commit; opening, locking, damage and salvage.
//! Every test runs once per engine (`redb::*`, `sqlite::*`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorRef};
use tokio::sync::watch;

use super::*;
use crate::health::Health;
use crate::metrics::{DropLabels, DropReason, Metrics};
use crate::record::NewRecord;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    actor: ActorRef<StorageMsg>,
    metrics: Metrics,
}

fn policy() -> StoragePolicy {
    StoragePolicy {
        quota_messages: 1_000_000,
        quota_bytes: 1 << 30,
        overflow: Overflow::Reject,
        ttl: None,
        max_batch: 4096,
        group_commit: true,
        rejected_max: 100,
        rejected_max_bytes: 1 << 20,
        retained_max: 100,
        retained_max_bytes: 1 << 20,
        session_max_queued: 1000,
    }
}

async fn start(kind: BackendKind, policy: StoragePolicy) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(kind, &dir.path().join(format!("t.{kind}")), vec!["s1".into(), "s2".into()]).unwrap();
    let (actor, metrics) = spawn(&store, policy).await;
    Fixture { _dir: dir, store, actor, metrics }
}

async fn spawn(store: &Store, policy: StoragePolicy) -> (ActorRef<StorageMsg>, Metrics) {
    let metrics = Metrics::new();
    let args = StorageArgs {
        store: store.clone(),
        gateway_id: "gw".into(),
        policy,
        metrics: metrics.clone(),
        health: Health::default(),
        committed: Arc::new(watch::channel(0).0),
        clock: now_ms,
    };
    (StorageActor::spawn(None, StorageActor, args).await.unwrap().0, metrics)
}

fn rec(i: usize) -> NewRecord {
    NewRecord {
        device: "d".into(),
        topic: "t".into(),
        qos: 1,
        payload: format!("m{i}").into_bytes(),
        received_at_ms: now_ms(),
        ..Default::default()
    }
}

async fn append(actor: &ActorRef<StorageMsg>, r: NewRecord) -> Result<Appended, AppendError> {
    let results = actor.call(|reply| StorageMsg::append_batch(vec![r], reply), None).await.unwrap().unwrap();
    results.into_iter().next().expect("one result per message")
}

async fn ack(actor: &ActorRef<StorageMsg>, sink: &str, next: u64) {
    let sink = sink.to_string();
    actor.call(|reply| StorageMsg::Ack { sink, next, reply }, None).await.unwrap().unwrap().unwrap();
}

async fn concurrent_appends_share_transactions_and_get_distinct_sequence_numbers(kind: BackendKind) {
    let f = start(kind, policy()).await;
    let mut calls = Vec::new();
    for i in 0..500 {
        let a = f.actor.clone();
        calls.push(tokio::spawn(async move { append(&a, rec(i)).await.unwrap() }));
    }
    let mut seqs: Vec<u64> = Vec::new();
    for c in calls {
        seqs.push(c.await.unwrap().seq);
    }
    seqs.sort();
    assert_eq!(seqs, (0..500).collect::<Vec<_>>());
    assert!(f.metrics.commits.get() < 500, "group commit: {} transactions for 500 appends", f.metrics.commits.get());
    let batch = f.store.read_batch(0, 1000, usize::MAX).unwrap();
    assert_eq!(batch.len(), 500);
    let (run, seq) = batch[7].key.strip_prefix("gw:").and_then(|k| k.split_once(':')).expect("gw:{run}:{seq}");
    assert_eq!((run.len(), seq), (16, batch[7].seq.to_string().as_str()), "{}", batch[7].key);
    assert!(batch.iter().all(|r| r.key == format!("gw:{run}:{}", r.seq)), "one run for one actor");
}

async fn without_group_commit_every_append_is_its_own_transaction(kind: BackendKind) {
    let f = start(kind, StoragePolicy { group_commit: false, ..policy() }).await;
    for i in 0..20 {
        append(&f.actor, rec(i)).await.unwrap();
    }
    assert_eq!(f.metrics.commits.get(), 20);
    // Also the messages of a batch: one transaction each, one reply.
    let batch: Vec<NewRecord> = (20..25).map(rec).collect();
    let results = f.actor.call(|reply| StorageMsg::append_batch(batch, reply), None).await.unwrap().unwrap();
    assert_eq!(results.into_iter().map(|r| r.unwrap().seq).collect::<Vec<_>>(), [20, 21, 22, 23, 24]);
    assert_eq!(f.metrics.commits.get(), 25);
}

/// `gateway_puback_latency_seconds` counts from the hand-over to the actor, so the time a batch
/// waited in the mailbox (behind a slow commit, say) is in it.
async fn puback_latency_counts_from_the_hand_over_to_the_actor(kind: BackendKind) {
    let f = start(kind, policy()).await;
    let handed = Instant::now().checked_sub(Duration::from_millis(300)).expect("up for 300 ms");
    let batch: Vec<NewRecord> = (0..4).map(rec).collect();
    let results = f.actor.call(|reply| StorageMsg::AppendBatch { records: batch, handed, reply }, None).await.unwrap().unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let mut registry = prometheus_client::registry::Registry::default();
    f.metrics.register(&mut registry, "test");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let value = |suffix: &str| -> f64 {
        let line =
            text.lines().find(|l| l.starts_with("gateway_puback_latency_seconds_") && l.split(' ').next().unwrap().ends_with(suffix));
        line.and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no puback_latency_seconds{suffix}: {text}"))
    };
    assert_eq!(value("_count"), 4.0);
    assert!(value("_sum") >= 4.0 * 0.3, "sum {} for 4 appends handed over 300 ms ago", value("_sum"));
}

async fn the_reject_policy_refuses_appends_beyond_the_quota(kind: BackendKind) {
    let f = start(kind, StoragePolicy { quota_messages: 3, ..policy() }).await;
    for i in 0..3 {
        append(&f.actor, rec(i)).await.unwrap();
    }
    assert_eq!(append(&f.actor, rec(3)).await, Err(AppendError::QuotaExceeded));
    assert_eq!(f.store.stats().unwrap().messages, 3);
    // Delivery to every sink frees room again.
    ack(&f.actor, "s1", 1).await;
    ack(&f.actor, "s2", 1).await;
    append(&f.actor, rec(4)).await.unwrap();
}

async fn the_drop_oldest_policy_makes_room_and_counts_the_drops(kind: BackendKind) {
    let f = start(kind, StoragePolicy { quota_messages: 3, overflow: Overflow::DropOldest, ..policy() }).await;
    for i in 0..5 {
        append(&f.actor, rec(i)).await.unwrap();
    }
    let left: Vec<Vec<u8>> = f.store.read_batch(0, 10, usize::MAX).unwrap().into_iter().map(|r| r.payload).collect();
    assert_eq!(left, [b"m2".to_vec(), b"m3".to_vec(), b"m4".to_vec()]);
    assert_eq!(f.metrics.dropped_messages.get_or_create(&DropLabels { reason: DropReason::Quota }).get(), 2);
}

async fn a_record_is_deleted_only_when_every_sink_has_it(kind: BackendKind) {
    let f = start(kind, policy()).await;
    for i in 0..4 {
        append(&f.actor, rec(i)).await.unwrap();
    }
    ack(&f.actor, "s1", 4).await;
    assert_eq!(f.store.stats().unwrap().messages, 4, "s2 has nothing yet");
    ack(&f.actor, "s2", 2).await;
    let stats = f.store.stats().unwrap();
    assert_eq!(stats.messages, 2);
    let left = f.store.read_batch(0, 10, usize::MAX).unwrap();
    assert_eq!(
        stats.bytes,
        left.iter().map(|r| NewRecord { payload: r.payload.clone(), ..rec(0) }.encode(&r.key).len() as u64).sum::<u64>(),
        "backlog_bytes matches the stored values"
    );
    assert_eq!(f.store.cursor("s1").unwrap(), 4);
    assert_eq!(f.store.cursor("s2").unwrap(), 2);
}

/// A forwarder's cursor move (`AckLater`) needs no commit of its own: it joins the next append's
/// transaction, or is committed on its own within `ACK_LATER_WITHIN` when none comes; an `Ack`
/// is answered after a commit that holds the `AckLater`s before it.
async fn cursor_moves_sent_later_join_the_next_commit_or_are_committed_within_the_bound(kind: BackendKind) {
    let f = start(kind, policy()).await;
    for i in 0..6 {
        append(&f.actor, rec(i)).await.unwrap();
    }
    let commits = f.metrics.commits.get();
    f.actor.cast(StorageMsg::AckLater { sink: "s1".into(), next: 2 }).unwrap();
    append(&f.actor, rec(6)).await.unwrap();
    assert_eq!(f.metrics.commits.get(), commits + 1, "the cursor move joined the append's transaction");
    assert_eq!(f.store.cursor("s1").unwrap(), 2);
    // None comes: committed on its own, within the bound and not before half of it (after the
    // first move's timer has run out, so this one arms its own).
    tokio::time::sleep(ACK_LATER_WITHIN + Duration::from_millis(100)).await;
    assert_eq!(f.metrics.commits.get(), commits + 1, "an expired timer with nothing pending commits nothing");
    f.actor.cast(StorageMsg::AckLater { sink: "s1".into(), next: 4 }).unwrap();
    let sent = Instant::now();
    tokio::time::sleep(ACK_LATER_WITHIN / 2).await;
    assert_eq!(f.store.cursor("s1").unwrap(), 2, "no commit of its own at once");
    let deadline = sent + ACK_LATER_WITHIN + Duration::from_secs(2);
    while f.metrics.commits.get() != commits + 2 {
        assert!(Instant::now() < deadline, "the cursor move was never committed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(f.store.cursor("s1").unwrap(), 4);
    // An `Ack` is answered after the `AckLater`s sent before it are committed.
    f.actor.cast(StorageMsg::AckLater { sink: "s1".into(), next: 5 }).unwrap();
    ack(&f.actor, "s2", 0).await;
    assert_eq!(f.store.cursor("s1").unwrap(), 5);
    assert_eq!(f.store.cursor("s2").unwrap(), 0, "an Ack moves a cursor forward only");
}

async fn a_restarted_actor_continues_the_sequence_and_its_counters(kind: BackendKind) {
    let f = start(kind, policy()).await;
    for i in 0..3 {
        append(&f.actor, rec(i)).await.unwrap();
    }
    f.actor.kill_and_wait(None).await.unwrap();
    let (again, _) = spawn(&f.store, policy()).await;
    assert_eq!(append(&again, rec(3)).await.unwrap().seq, 3);
    assert_eq!(f.store.stats().unwrap().messages, 4);
}

async fn expired_records_are_dropped_and_counted(kind: BackendKind) {
    let f = start(kind, StoragePolicy { ttl: Some(Duration::from_secs(60)), ..policy() }).await;
    let old = NewRecord { received_at_ms: now_ms() - 120_000, ..rec(0) };
    append(&f.actor, old).await.unwrap();
    append(&f.actor, rec(1)).await.unwrap();
    let m = f.metrics.clone();
    for _ in 0..300 {
        if m.dropped_messages.get_or_create(&DropLabels { reason: DropReason::Ttl }).get() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(m.dropped_messages.get_or_create(&DropLabels { reason: DropReason::Ttl }).get(), 1);
    let left = f.store.read_batch(0, 10, usize::MAX).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].payload, b"m1");
}

async fn a_dead_letter_is_kept_and_passed(kind: BackendKind) {
    let f = start(kind, policy()).await;
    append(&f.actor, rec(0)).await.unwrap();
    append(&f.actor, rec(1)).await.unwrap();
    let reply = f.actor.call(|reply| StorageMsg::DeadLetter { sink: "s1".into(), seq: 0, reason: "HTTP 400".into(), reply }, None).await;
    reply.unwrap().unwrap().unwrap();
    assert_eq!(f.store.cursor("s1").unwrap(), 1);
    let dead = f.store.dead_letters(100).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].sink.as_str(), dead[0].reason.as_str(), dead[0].record.seq), ("s1", "HTTP 400", 0));
}

async fn a_failed_commit_acknowledges_nothing_and_the_next_one_recovers(kind: BackendKind) {
    let f = start(kind, policy()).await;
    append(&f.actor, rec(0)).await.unwrap();
    f.actor.cast(StorageMsg::InjectFaults(1)).unwrap();
    let failed = append(&f.actor, rec(1)).await;
    assert!(matches!(failed, Err(AppendError::CommitFailed(_))), "{failed:?}");
    assert_eq!(f.metrics.commit_failures.get(), 1);
    assert_eq!(f.store.stats().unwrap().messages, 1, "the failed append is not stored");
    let next = append(&f.actor, rec(2)).await.unwrap();
    assert_eq!(next.seq, 1, "the failed transaction used no sequence number");
}

async fn drop_oldest_never_drops_the_backlog_for_a_record_larger_than_the_quota(kind: BackendKind) {
    let f = start(kind, StoragePolicy { quota_bytes: 200, overflow: Overflow::DropOldest, ..policy() }).await;
    for i in 0..3 {
        append(&f.actor, rec(i)).await.unwrap();
    }
    let huge = NewRecord { payload: vec![b'x'; 500], ..rec(9) };
    assert_eq!(append(&f.actor, huge).await, Err(AppendError::QuotaExceeded));
    assert_eq!(f.store.stats().unwrap().messages, 3, "nothing dropped for a record that can never fit");
    assert_eq!(f.metrics.dropped_messages.get_or_create(&DropLabels { reason: DropReason::Quota }).get(), 0);
}

async fn kept_apart_records_skip_the_backlog_and_are_bounded(kind: BackendKind) {
    use crate::record::SchemaTag;
    let f = start(kind, StoragePolicy { rejected_max: 3, ..policy() }).await;
    let apart = |i: usize| NewRecord {
        schema: Some(SchemaTag { subject: "t".into(), version: 2, valid: false, errors: vec![format!("/x: bad {i}")] }),
        kept_apart: true,
        ..rec(i)
    };
    append(&f.actor, rec(0)).await.unwrap();
    let mut batch: Vec<NewRecord> = (1..=5).map(apart).collect();
    batch.push(rec(6));
    let results = f.actor.call(|reply| StorageMsg::append_batch(batch, reply), None).await.unwrap().unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let last = results.last().unwrap().as_ref().unwrap();
    assert_eq!(last.seq, 1, "kept-apart records take no sequence number from the backlog");
    let stats = f.store.stats().unwrap();
    assert_eq!((stats.messages, stats.rejected), (2, 3), "only the newest 3 of 5 kept apart");
    let kept = f.store.rejected(0, 10).unwrap();
    let errors: Vec<&str> = kept.iter().map(|r| r.schema.as_ref().unwrap().errors[0].as_str()).collect();
    assert_eq!(errors, ["/x: bad 3", "/x: bad 4", "/x: bad 5"]);
    assert_eq!(kept.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3, 4]);
    assert_eq!(f.store.rejected(4, 10).unwrap().len(), 1, "paged from a seq");
    let forwarded = f.store.read_batch(0, 100, 1 << 20).unwrap();
    assert_eq!(forwarded.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(), [b"m0".to_vec(), b"m6".to_vec()]);
    assert_eq!(f.metrics.dropped_messages.get_or_create(&DropLabels { reason: DropReason::RejectedOverflow }).get(), 2);
    assert_eq!(f.metrics.rejected_messages.get(), 3);
}

async fn kept_apart_records_are_bounded_in_bytes_too(kind: BackendKind) {
    let bounded = || StoragePolicy { rejected_max_bytes: 2_000, ..policy() };
    let f = start(kind, bounded()).await;
    let apart = |i: usize| NewRecord { payload: vec![b'x'; 600], kept_apart: true, ..rec(i) };
    for i in 0..5 {
        append(&f.actor, apart(i)).await.unwrap();
    }
    let seqs = |store: &Store| store.rejected(0, 10).unwrap().iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(seqs(&f.store), [2, 3, 4], "three ~630-byte records fit in 2,000 bytes");
    assert_eq!(f.metrics.dropped_messages.get_or_create(&DropLabels { reason: DropReason::RejectedOverflow }).get(), 2);
    // The byte count is in the file, not only in the actor: a restarted actor goes on from it.
    f.actor.kill_and_wait(None).await.unwrap();
    let (actor, metrics) = spawn(&f.store, bounded()).await;
    append(&actor, apart(5)).await.unwrap();
    assert_eq!(seqs(&f.store), [3, 4, 5]);
    assert_eq!(metrics.rejected_messages.get(), 3);
}

async fn retained_messages_are_replaced_cleared_bounded_and_kept_across_a_reopen(kind: BackendKind) {
    let f = start(kind, StoragePolicy { retained_max: 2, ..policy() }).await;
    let retained = |topic: &str, payload: &str| NewRecord { topic: topic.into(), payload: payload.into(), retain: true, ..rec(0) };
    append(&f.actor, retained("a", "1")).await.unwrap();
    append(&f.actor, retained("b", "2")).await.unwrap();
    assert_eq!(append(&f.actor, retained("c", "3")).await, Err(AppendError::RetainedFull), "a third topic is over the bound");
    append(&f.actor, retained("b", "2b")).await.unwrap();
    append(&f.actor, retained("a", "")).await.unwrap();
    append(&f.actor, retained("c", "3")).await.expect("room again after the clear");
    f.store.reopen().unwrap();
    let mut kept: Vec<(String, Vec<u8>)> = f.store.retained().unwrap().into_iter().map(|r| (r.topic, r.payload)).collect();
    kept.sort();
    assert_eq!(kept, [("b".to_string(), b"2b".to_vec()), ("c".to_string(), b"3".to_vec())]);
    assert_eq!(f.store.stats().unwrap().messages, 5, "retained publishes are stored for the sinks too, the refused one not");
}

async fn session(actor: &ActorRef<StorageMsg>, client: &str, change: SessionChange) {
    let client_id = client.to_string();
    actor.call(|reply| StorageMsg::Session(SessionOp { client_id, change, reply: Some(reply) }), None).await.unwrap().unwrap().unwrap();
}

async fn session_queues_are_written_with_their_record_bounded_acknowledged_and_removed(kind: BackendKind) {
    use crate::metrics::{DeliveryDrop, DeliveryDropLabels};
    use crate::record::SessionCopy;
    let f = start(kind, StoragePolicy { session_max_queued: 2, ..policy() }).await;
    let copy = |client: &str, v: &str| SessionCopy { client_id: client.into(), value: v.into() };
    let with = |copies: Vec<SessionCopy>| NewRecord { copies, ..rec(0) };
    let queued = |store: &Store| -> Vec<(u64, String)> {
        store.queued("a", 0, 100).unwrap().into_iter().map(|(q, v)| (q, String::from_utf8(v).unwrap())).collect()
    };
    let full = |m: &Metrics| m.deliveries_dropped.get_or_create(&DeliveryDropLabels { reason: DeliveryDrop::SessionFull }).get();
    session(&f.actor, "a", SessionChange::Put(b"row-a".to_vec())).await;
    // A copy for a session that does not exist is not queued (removed meanwhile).
    append(&f.actor, with(vec![copy("a", "1"), copy("ghost", "x")])).await.unwrap();
    append(&f.actor, with(vec![copy("a", "2")])).await.unwrap();
    append(&f.actor, with(vec![copy("a", "3")])).await.expect("the message is stored; only the copy is refused");
    assert_eq!(queued(&f.store), [(0, "1".to_string()), (1, "2".to_string())]);
    assert_eq!(full(&f.metrics), 1);
    assert_eq!(f.metrics.session_queued.get(), 2);
    session(&f.actor, "a", SessionChange::Acked(vec![0, 99])).await;
    append(&f.actor, with(vec![copy("a", "4")])).await.unwrap();
    assert_eq!(queued(&f.store), [(1, "2".to_string()), (2, "4".to_string())], "room again after an ack; numbers never reused");
    // A rewrite keeps the delivery's place and count; one already gone stays gone.
    session(&f.actor, "a", SessionChange::Rewrite { qseq: 1, value: b"2r".to_vec() }).await;
    session(&f.actor, "a", SessionChange::Rewrite { qseq: 0, value: b"0r".to_vec() }).await;
    assert_eq!(queued(&f.store), [(1, "2r".to_string()), (2, "4".to_string())]);
    assert_eq!(f.metrics.session_queued.get(), 2);
    // A restarted actor counts the queue from the file: still full.
    f.actor.kill_and_wait(None).await.unwrap();
    let (actor, metrics) = spawn(&f.store, StoragePolicy { session_max_queued: 2, ..policy() }).await;
    append(&actor, with(vec![copy("a", "5")])).await.unwrap();
    assert_eq!(full(&metrics), 1);
    assert_eq!(f.store.sessions().unwrap(), [("a".to_string(), b"row-a".to_vec())]);
    assert_eq!(f.store.queued_heads().unwrap().get("a"), Some(&(2, 3)));
    session(&actor, "a", SessionChange::Remove).await;
    assert!(f.store.sessions().unwrap().is_empty() && queued(&f.store).is_empty());
    assert_eq!(metrics.sessions_persistent.get(), 0);
}

async fn a_second_open_of_the_same_file_is_refused_as_locked_not_as_damage(kind: BackendKind) {
    let f = start(kind, policy()).await;
    let path = f._dir.path().join(format!("t.{kind}"));
    let err = Store::open(kind, &path, vec![]).err().expect("a second open must fail");
    assert!(!err.is_corruption(), "{kind}: a lock is not damage: {err}");
}

async fn a_file_that_is_not_a_store_is_reported_as_damage(kind: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("bad.{kind}"));
    std::fs::write(&path, vec![0xAB; 65_536]).unwrap();
    let err = Store::open(kind, &path, vec![]).err().expect("garbage must not open");
    assert!(err.is_corruption(), "{kind}: {err}");
}

async fn a_reopened_store_holds_every_commit(kind: BackendKind) {
    let f = start(kind, policy()).await;
    for i in 0..5 {
        append(&f.actor, rec(i)).await.unwrap();
    }
    ack(&f.actor, "s1", 2).await;
    let before = f.store.stats().unwrap();
    f.store.reopen().unwrap();
    assert_eq!(f.store.stats().unwrap(), before);
    assert_eq!(f.store.cursor("s1").unwrap(), 2);
    assert_eq!(append(&f.actor, rec(5)).await.unwrap().seq, 5);
}

/// Salvage reads a file of either engine (told apart by its bytes) and imports into the
/// other, keeping every key: the way to move a backlog from one engine to the other.
async fn salvage_reads_either_engine_and_imports_into_the_other_keeping_keys(kind: BackendKind) {
    let f = start(kind, policy()).await;
    for i in 0..3 {
        append(&f.actor, rec(i)).await.unwrap();
    }
    let keys: Vec<String> = f.store.read_batch(0, 10, usize::MAX).unwrap().into_iter().map(|r| r.key).collect();
    let quarantined = f._dir.path().join(format!("gateway.{kind}.quarantine-1"));
    for file in kind.files(&f._dir.path().join(format!("t.{kind}"))) {
        if file.exists() {
            let name = file.file_name().unwrap().to_string_lossy().replace(&format!("t.{kind}"), &format!("gateway.{kind}.quarantine-1"));
            std::fs::copy(&file, f._dir.path().join(name)).unwrap();
        }
    }
    let found = Store::salvage(&quarantined).unwrap();
    assert_eq!((found.kind, found.method, found.values.len()), (kind, "engine", 3));
    let other = if kind == BackendKind::Redb { BackendKind::Sqlite } else { BackendKind::Redb };
    let target = Store::open(other, &f._dir.path().join(format!("other.{other}")), vec![]).unwrap();
    assert_eq!(target.import(&found.values).unwrap(), 3);
    let imported: Vec<String> = target.read_batch(0, 10, usize::MAX).unwrap().into_iter().map(|r| r.key).collect();
    assert_eq!(imported, keys);
    assert_eq!(target.stats().unwrap().messages, 3);
}

async fn a_batch_is_stored_in_order_and_answered_once_after_its_commit(kind: BackendKind) {
    let f = start(kind, policy()).await;
    append(&f.actor, rec(0)).await.unwrap();
    let batch: Vec<NewRecord> = (1..6).map(rec).collect();
    let results = f.actor.call(|reply| StorageMsg::append_batch(batch, reply), None).await.unwrap().unwrap();
    let seqs: Vec<u64> = results.into_iter().map(|r| r.unwrap().seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    let payloads: Vec<Vec<u8>> = f.store.read_batch(0, 10, usize::MAX).unwrap().into_iter().map(|r| r.payload).collect();
    assert_eq!(payloads, (0..6).map(|i| format!("m{i}").into_bytes()).collect::<Vec<_>>());
    // A failed commit answers every message of the batch with the failure, stores none.
    f.actor.cast(StorageMsg::InjectFaults(1)).unwrap();
    let batch: Vec<NewRecord> = (6..9).map(rec).collect();
    let failed = f.actor.call(|reply| StorageMsg::append_batch(batch, reply), None).await.unwrap().unwrap();
    assert_eq!(failed.len(), 3);
    assert!(failed.iter().all(|r| matches!(r, Err(AppendError::CommitFailed(_)))), "{failed:?}");
    assert_eq!(f.store.stats().unwrap().messages, 6);
}

#[test]
fn a_raw_scan_finds_every_record_in_damaged_bytes_once_in_key_order() {
    use crate::record::{NewRecord, Record};
    let rec = |i: u64| NewRecord {
        device: format!("dev-{i}"),
        topic: "devices/dev/t".into(),
        qos: 1,
        payload: format!("payload {i}").into_bytes(),
        received_at_ms: 1_700_000_000_000 + i,
        ..Default::default()
    };
    // Records between junk (and a stale second copy of one, as copy-on-write pages leave).
    let mut file = vec![0xAB; 4096];
    for i in [3u64, 1, 2, 1] {
        file.extend(rec(i).encode(&format!("gw-x:{i}")));
        file.extend([0u8, 2, 0xFF, 1, 9]);
    }
    file.extend(rec(4).encode("gw-x:4")[..20].to_vec()); // cut short: not a record
    let found = super::salvage::scan_records(&file);
    let keys: Vec<String> = found.iter().map(|v| Record::decode(0, v).unwrap().key).collect();
    assert_eq!(keys, ["gw-x:1", "gw-x:2", "gw-x:3"]);
    assert_eq!(Record::decode(0, &found[0]).unwrap().payload, b"payload 1");
}

/// `mod $module { #[tokio::test] async fn $name() { super::$name(BackendKind::$kind) } }`
macro_rules! per_backend {
    ($module:ident, $kind:ident, $($name:ident),* $(,)?) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::BackendKind::$kind).await
                }
            )*
        }
    };
}

/// Every test above, once per engine.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        per_backend!(redb, Redb, $($name),*);
        per_backend!(sqlite, Sqlite, $($name),*);
    };
}

on_both_backends!(
    concurrent_appends_share_transactions_and_get_distinct_sequence_numbers,
    without_group_commit_every_append_is_its_own_transaction,
    puback_latency_counts_from_the_hand_over_to_the_actor,
    the_reject_policy_refuses_appends_beyond_the_quota,
    the_drop_oldest_policy_makes_room_and_counts_the_drops,
    a_record_is_deleted_only_when_every_sink_has_it,
    cursor_moves_sent_later_join_the_next_commit_or_are_committed_within_the_bound,
    a_restarted_actor_continues_the_sequence_and_its_counters,
    expired_records_are_dropped_and_counted,
    a_dead_letter_is_kept_and_passed,
    a_failed_commit_acknowledges_nothing_and_the_next_one_recovers,
    drop_oldest_never_drops_the_backlog_for_a_record_larger_than_the_quota,
    a_second_open_of_the_same_file_is_refused_as_locked_not_as_damage,
    a_file_that_is_not_a_store_is_reported_as_damage,
    a_reopened_store_holds_every_commit,
    salvage_reads_either_engine_and_imports_into_the_other_keeping_keys,
    a_batch_is_stored_in_order_and_answered_once_after_its_commit,
    kept_apart_records_skip_the_backlog_and_are_bounded,
    kept_apart_records_are_bounded_in_bytes_too,
    retained_messages_are_replaced_cleared_bounded_and_kept_across_a_reopen,
    session_queues_are_written_with_their_record_bounded_acknowledged_and_removed
);
