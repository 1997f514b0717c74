//! A model-based test of the store: a proptest state machine drives the real storage actor on a
//! real store file of each engine (one test per engine) (appends, acks per sink, dead letters, quota with both policies, TTL expiry on
//! an injected clock, crashes between and during operations, reopening) and, after every step,
//! checks it against a small in-memory model: what is stored, what each sink reads next, what
//! was acknowledged, the dead letters and the counters.
//!
//! `PROPTEST_CASES` sets the number of cases (default 1,000; `PROPTEST_CASES=100000` is the long
//! run quoted in docs/RELIABILITY.md). The store lives on /dev/shm when it exists, so that the
//! fsync of every commit costs nothing and CI stays fast.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use ractor::{Actor, ActorRef};
use tokio::sync::watch;

use super::*;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::record::NewRecord;

const SINKS: [&str; 2] = ["s1", "s2"];
/// Stands in for the random run id in keys: the model only needs its length.
const RUN: &str = "0123456789abcdef";

/// The injected clocks, one per engine (the two tests run at the same time): virtual unix
/// milliseconds, moved by `Step::Advance`.
static NOW_MS: [AtomicU64; 2] = [const { AtomicU64::new(1_800_000_000_000) }; 2];

fn slot(kind: BackendKind) -> usize {
    match kind {
        BackendKind::Redb => 0,
        BackendKind::Sqlite => 1,
    }
}

fn virtual_now(kind: BackendKind) -> u64 {
    NOW_MS[slot(kind)].load(Ordering::SeqCst)
}

/// The storage actor's clock for `kind` (a plain `fn`, as `StorageArgs::clock` takes).
fn clock(kind: BackendKind) -> fn() -> u64 {
    match kind {
        BackendKind::Redb => || NOW_MS[0].load(Ordering::SeqCst),
        BackendKind::Sqlite => || NOW_MS[1].load(Ordering::SeqCst),
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// Append a message with this payload length.
    Append(usize),
    /// Sink `0`/`1` acknowledges every record below `next` (relative to the model's next seq).
    Ack(usize, u64),
    /// Sink `0`/`1` refuses the record at this offset from its cursor for good.
    DeadLetter(usize, u64),
    /// Move the injected clock forward (seconds) and let the TTL sweep run.
    Advance(u64),
    /// Kill the actor between operations, reopen the store, start a new actor.
    Crash,
    /// Send an append and kill the actor at once: it is stored entirely or not at all.
    CrashDuringAppend(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0usize..200).prop_map(Step::Append),
        3 => (0usize..2, 0u64..8).prop_map(|(s, n)| Step::Ack(s, n)),
        1 => (0usize..2, 0u64..4).prop_map(|(s, n)| Step::DeadLetter(s, n)),
        1 => (0u64..120).prop_map(Step::Advance),
        1 => Just(Step::Crash),
        1 => (0usize..200).prop_map(Step::CrashDuringAppend),
    ]
}

#[derive(Debug, Clone)]
struct Limits {
    quota_messages: u64,
    quota_bytes: u64,
    overflow: Overflow,
    ttl_secs: Option<u64>,
}

fn limits() -> impl Strategy<Value = Limits> {
    (1u64..12, 300u64..3000, any::<bool>(), prop::option::of(30u64..300)).prop_map(|(m, b, drop, ttl)| Limits {
        quota_messages: m,
        quota_bytes: b,
        overflow: if drop { Overflow::DropOldest } else { Overflow::Reject },
        ttl_secs: ttl,
    })
}

/// What the store must hold.
#[derive(Debug, Clone, PartialEq)]
struct Model {
    /// seq -> (payload, received_at_ms, encoded size)
    stored: BTreeMap<u64, (Vec<u8>, u64, u64)>,
    cursors: [u64; 2],
    next_seq: u64,
    bytes: u64,
    /// (sink, seq) -> payload
    dead: BTreeMap<(String, u64), Vec<u8>>,
}

impl Model {
    fn new() -> Model {
        Model { stored: BTreeMap::new(), cursors: [0, 0], next_seq: 0, bytes: 0, dead: BTreeMap::new() }
    }

    /// Delete what every sink has (each transaction does this).
    fn retain(&mut self) {
        let min = self.cursors.iter().copied().min().unwrap_or(0);
        let gone: Vec<u64> = self.stored.range(..min).map(|(s, _)| *s).collect();
        for s in gone {
            self.pop(s);
        }
    }

    fn pop(&mut self, seq: u64) {
        if let Some((_, _, size)) = self.stored.remove(&seq) {
            self.bytes -= size;
        }
    }

    fn append(&mut self, rec: &NewRecord, l: &Limits) -> Result<u64, AppendError> {
        self.retain();
        let size = rec.encode(&format!("gw:{RUN}:{}", self.next_seq)).len() as u64;
        let fits = |m: &Model| (m.stored.len() as u64) < l.quota_messages && m.bytes + size <= l.quota_bytes;
        if l.overflow == Overflow::DropOldest && size <= l.quota_bytes {
            while !fits(self) {
                let Some(&first) = self.stored.keys().next() else { break };
                self.pop(first);
            }
        }
        if !fits(self) {
            return Err(AppendError::QuotaExceeded);
        }
        let seq = self.next_seq;
        self.stored.insert(seq, (rec.payload.clone(), rec.received_at_ms, size));
        self.bytes += size;
        self.next_seq += 1;
        Ok(seq)
    }

    fn ack(&mut self, sink: usize, next: u64) {
        self.cursors[sink] = self.cursors[sink].max(next);
        self.retain();
    }

    fn dead_letter(&mut self, sink: usize, seq: u64) {
        if let Some((payload, _, _)) = self.stored.get(&seq) {
            self.dead.insert((SINKS[sink].to_string(), seq), payload.clone());
        }
        self.ack(sink, seq + 1);
    }

    fn expire(&mut self, ttl_secs: Option<u64>, now: u64) {
        let Some(ttl) = ttl_secs else { return };
        let cutoff = now.saturating_sub(ttl * 1000);
        while let Some((&seq, &(_, at, _))) = self.stored.iter().next() {
            if at >= cutoff {
                break;
            }
            self.pop(seq);
        }
        self.retain();
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    store: Store,
    actor: ActorRef<StorageMsg>,
    limits: Limits,
}

impl Harness {
    async fn start(kind: BackendKind, limits: Limits) -> Harness {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap();
        let store = Store::open(kind, &dir.path().join(format!("m.{kind}")), SINKS.map(String::from).to_vec()).unwrap();
        let actor = spawn(&store, &limits).await;
        Harness { _dir: dir, store, actor, limits }
    }

    async fn crash(&mut self) {
        self.actor.kill();
        while self.actor.get_status() != ractor::ActorStatus::Stopped {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.store.reopen().unwrap(); // what a new process finds on disk
        self.actor = spawn(&self.store, &self.limits).await;
    }
}

async fn spawn(store: &Store, l: &Limits) -> ActorRef<StorageMsg> {
    let policy = StoragePolicy {
        quota_messages: l.quota_messages,
        quota_bytes: l.quota_bytes,
        overflow: l.overflow,
        ttl: l.ttl_secs.map(Duration::from_secs),
        max_batch: 64,
        group_commit: true,
        rejected_max: 100,
        rejected_max_bytes: 1 << 20,
        retained_max: 100,
        retained_max_bytes: 1 << 20,
        session_max_queued: 1000,
    };
    let args = StorageArgs {
        store: store.clone(),
        gateway_id: "gw".into(),
        policy,
        metrics: Metrics::new(),
        health: Health::default(),
        committed: Arc::new(watch::channel(0).0),
        clock: clock(store.kind()),
    };
    StorageActor::spawn(None, StorageActor, args).await.unwrap().0
}

fn record(len: usize, n: u64, now: u64) -> NewRecord {
    let payload: Vec<u8> = format!("{n:08}").into_bytes().into_iter().cycle().take(len.max(8)).collect();
    NewRecord { device: "d".into(), topic: "t".into(), qos: 1, payload, received_at_ms: now, ..Default::default() }
}

async fn call<T: Send + 'static>(actor: &ActorRef<StorageMsg>, msg: impl FnOnce(ractor::RpcReplyPort<T>) -> StorageMsg) -> T {
    match actor.call(msg, Some(Duration::from_secs(10))).await {
        Ok(ractor::rpc::CallResult::Success(v)) => v,
        Ok(_) => panic!("storage actor did not answer in time"),
        Err(e) => panic!("storage actor unreachable: {e}"),
    }
}

/// The size a record takes in `messages` (its encoding under its own key).
fn encoded_size(r: &crate::record::Record) -> u64 {
    let new = NewRecord {
        device: r.device.clone(),
        topic: r.topic.clone(),
        qos: r.qos,
        payload: r.payload.clone(),
        content_type: r.content_type.clone(),
        user_properties: r.user_properties.clone(),
        received_at_ms: r.received_at_ms,
        trace: r.trace,
        schema: r.schema.clone(),
        mqtt5: r.mqtt5.clone(),
        kept_apart: false,
        retain: false,
        copies: Vec::new(),
    };
    new.encode(&r.key).len() as u64
}

/// The store as the model sees it.
fn observe(store: &Store) -> Model {
    let records = store.read_batch(0, usize::MAX, usize::MAX).unwrap();
    let stats = store.stats().unwrap();
    assert_eq!(stats.messages, records.len() as u64, "the record count agrees with the records");
    let mut stored = BTreeMap::new();
    for r in &records {
        let size = encoded_size(r);
        stored.insert(r.seq, (r.payload.clone(), r.received_at_ms, size));
    }
    let dead = store.dead_letters(usize::MAX).unwrap().into_iter().map(|d| ((d.sink, d.record.seq), d.record.payload)).collect();
    Model { stored, cursors: SINKS.map(|s| store.cursor(s).unwrap()), next_seq: stats.next_seq, bytes: stats.bytes, dead }
}

async fn run_case(kind: BackendKind, limits: Limits, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut h = Harness::start(kind, limits.clone()).await;
    let mut model = Model::new();
    let mut n = 0u64;
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Append(len) => {
                n += 1;
                let rec = record(*len, n, virtual_now(kind));
                let want = model.append(&rec, &limits);
                let got = call(&h.actor, |reply| StorageMsg::append_batch(vec![rec], reply)).await.remove(0).map(|a| a.seq);
                prop_assert_eq!(got, want, "step {}: append", i);
            }
            Step::Ack(sink, back) => {
                let next = model.next_seq.saturating_sub(*back);
                model.ack(*sink, next);
                let sink = SINKS[*sink].to_string();
                call(&h.actor, |reply| StorageMsg::Ack { sink, next, reply }).await.unwrap();
            }
            Step::DeadLetter(sink, offset) => {
                let seq = model.cursors[*sink] + offset;
                if seq >= model.next_seq {
                    continue; // a forwarder only refuses records it read
                }
                model.dead_letter(*sink, seq);
                let (sink, reason) = (SINKS[*sink].to_string(), "HTTP 400".to_string());
                call(&h.actor, |reply| StorageMsg::DeadLetter { sink, seq, reason, reply }).await.unwrap();
            }
            Step::Advance(secs) => {
                NOW_MS[slot(kind)].fetch_add(secs * 1000, Ordering::SeqCst);
                model.expire(limits.ttl_secs, virtual_now(kind));
                h.actor.cast(StorageMsg::Tick).unwrap();
                // A no-op ack behind the tick: its reply comes after the sweep's commit.
                let (sink, next) = (SINKS[0].to_string(), model.cursors[0]);
                call(&h.actor, |reply| StorageMsg::Ack { sink, next, reply }).await.unwrap();
            }
            Step::Crash => h.crash().await,
            Step::CrashDuringAppend(len) => {
                n += 1;
                let rec = record(*len, n, virtual_now(kind));
                let mut with = model.clone();
                let appended = with.append(&rec, &limits).is_ok();
                let (tx, _rx) = ractor::concurrency::oneshot();
                h.actor.cast(StorageMsg::append_batch(vec![rec], tx.into())).unwrap();
                h.crash().await;
                let seen = observe(&h.store);
                // Either the whole transaction committed before the kill or none of it did.
                if appended && seen == with {
                    model = with;
                } else {
                    let mut without = model.clone();
                    without.retain();
                    prop_assert_eq!(&seen, &without, "step {}: crash during an append left a partial state", i);
                    model = without;
                }
            }
        }
        let seen = observe(&h.store);
        let mut want = model.clone();
        want.retain();
        prop_assert_eq!(&seen, &want, "step {}: {:?}", i, step);
        model = want;
        // What each sink reads next: the first stored record at or after its cursor.
        for (k, sink) in SINKS.iter().enumerate() {
            let next = h.store.read_batch(h.store.cursor(sink).unwrap(), 1, usize::MAX).unwrap().first().map(|r| r.seq);
            prop_assert_eq!(next, model.stored.range(model.cursors[k]..).next().map(|(s, _)| *s), "step {}: sink {} reads", i, sink);
        }
    }
    h.actor.kill();
    Ok(())
}

fn agrees_with_its_model(kind: BackendKind) {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let config = ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut runner = TestRunner::new(config);
    let strategy = (limits(), prop::collection::vec(step(), 1..40));
    let result = runner.run(&strategy, |(limits, steps)| rt.block_on(run_case(kind, limits, steps)));
    if let Err(e) = result {
        panic!("{kind}: {e}");
    }
}

#[test]
fn the_redb_store_agrees_with_its_model_after_every_step() {
    agrees_with_its_model(BackendKind::Redb);
}

#[test]
fn the_sqlite_store_agrees_with_its_model_after_every_step() {
    agrees_with_its_model(BackendKind::Sqlite);
}
