//! The archive actor: reads the store from its own cursor (`archive`), keeps the rows of each
//! (class, hour) in memory, and closes them all into Parquet files when the rows reach
//! `max_file_bytes` or the oldest is `max_file_age` old. Only then, with the files fsync'ed
//! and in the manifest, does its cursor move, so the store keeps every message until the
//! archive has it; a crash before that writes them again (the manifest's `through_seq` keeps a
//! message from being archived twice). Every `sweep_every` it applies retention and uploads.
//!
//! One flush closes every open file: the cursor can then move past everything read, and a
//! restart never has to know which rows of a half-read range are already in a file.

mod flush;
mod sweep;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_gateway_actors::metrics::{ClassLabels, Metrics};
use edge_gateway_actors::slot::ActorSlot;
use edge_gateway_actors::storage::{StorageMsg, Store};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;

use super::columns::ArchivedRow;
use super::files;
use super::manifest::{self, Manifest};
use super::upload::Uploader;
use super::{ArchiveError, Classes};
use crate::config::{ARCHIVE_CURSOR, ArchiveConfig, OnFull};

/// Messages read from the store per poll.
const READ_MESSAGES: usize = 2000;
/// About the most bytes read per poll.
const READ_BYTES: usize = 4 << 20;

/// The archive actor (stateless handler).
pub struct ArchiveActor;

/// Start-up arguments.
pub struct ArchiveArgs {
    /// `[archive]`.
    pub config: ArchiveConfig,
    /// The classes, shared with ingress (full flags).
    pub classes: Classes,
    /// Read access to the store.
    pub store: Store,
    /// The storage actor, for moving the cursor.
    pub storage: ActorSlot<StorageMsg>,
    /// Next unassigned seq, published after each commit.
    pub committed: watch::Receiver<u64>,
    /// Counters.
    pub metrics: Metrics,
    /// Wall clock in ms (retention ages; injectable for tests).
    pub clock: fn() -> u64,
}

/// Messages to the archive actor.
pub enum ArchiveMsg {
    /// Read more, or close the open files when due.
    Poll,
    /// Apply retention, upload closed files.
    Sweep,
}

/// The actor's state.
pub struct ArchiveState {
    args: ArchiveArgs,
    uploader: Arc<Uploader>,
    /// The cursor as the store has it.
    acked: u64,
    /// The next seq to read.
    next: u64,
    /// Rows read and not yet in a closed file, by (class index, UTC hour start in ms).
    open: BTreeMap<(usize, i64), Vec<ArchivedRow>>,
    /// Their size, about.
    open_bytes: u64,
    /// When the oldest open row was read.
    opened_at: Option<Instant>,
    /// A failed flush may have left files for [`files::recover`].
    recover: bool,
    /// Consecutive failures (flushes, cursor moves) for the retry delay.
    attempt: u32,
    /// The last manifest entry a sweep has seen (operators' deletions after it are counted).
    seen: u64,
    /// The upload run in progress.
    uploading: Option<tokio::task::JoinHandle<()>>,
}

impl Actor for ArchiveActor {
    type Msg = ArchiveMsg;
    type State = ArchiveState;
    type Arguments = ArchiveArgs;

    async fn pre_start(&self, myself: ActorRef<ArchiveMsg>, args: ArchiveArgs) -> Result<ArchiveState, ActorProcessingErr> {
        let dir = args.config.dir.clone();
        files::create_dirs(dir.parent().unwrap_or(&dir), &dir)?;
        let m = Manifest::read(&dir)?;
        for problem in &m.problems {
            tracing::error!(dir = %dir.display(), %problem, "The archive manifest does not verify; archiving goes on (run `edge-gateway archive verify`).");
        }
        let acked = args.store.cursor(ARCHIVE_CURSOR)?;
        let next = acked.max(m.through_seq());
        let names: Vec<String> = (0..args.classes.len()).map(|i| args.classes.get(i).name.clone()).collect();
        args.metrics.archive.zero(&names);
        for i in 0..args.classes.len() {
            let class = args.classes.get(i);
            args.metrics.archive.quota_bytes.get_or_create(&ClassLabels { class: class.name.clone() }).set(class.quota_bytes as i64);
        }
        let uploader = Arc::new(Uploader::new(&args.config)?);
        tracing::info!(dir = %dir.display(), cursor = acked, next, files = m.live().len(), head = %m.head, "Archive started.");
        myself.send_message(ArchiveMsg::Sweep)?;
        myself.send_message(ArchiveMsg::Poll)?;
        let seen = m.entries.last().map_or(0, |e| e.n);
        let mut state = ArchiveState {
            args,
            uploader,
            acked,
            next,
            open: BTreeMap::new(),
            open_bytes: 0,
            opened_at: None,
            recover: false,
            attempt: 0,
            seen,
            uploading: None,
        };
        // Finish or undo what a crash interrupted (hashing files: off the async threads).
        tokio::task::block_in_place(|| -> Result<(), ArchiveError> {
            let lock = manifest::lock(&dir)?;
            let recovered = files::recover(&dir, &Manifest::read(&dir)?)?;
            state.after_recovery(&lock, recovered)
        })?;
        Ok(state)
    }

    async fn handle(&self, myself: ActorRef<ArchiveMsg>, msg: ArchiveMsg, state: &mut ArchiveState) -> Result<(), ActorProcessingErr> {
        match msg {
            ArchiveMsg::Poll => state.poll(&myself).await,
            ArchiveMsg::Sweep => {
                state.sweep().await;
                myself.send_after(state.args.config.sweep_every, || ArchiveMsg::Sweep);
            }
        }
        Ok(())
    }
}

impl ArchiveState {
    async fn poll(&mut self, myself: &ActorRef<ArchiveMsg>) {
        let committed = *self.args.committed.borrow();
        self.args.metrics.archive.lag_messages.set(committed.saturating_sub(self.acked) as i64);
        let due = self.open_bytes >= self.args.config.max_file_bytes
            || self.opened_at.is_some_and(|t| t.elapsed() >= self.args.config.max_file_age);
        if due {
            match tokio::task::block_in_place(|| self.flush()) {
                // Usage, full flags and uploads at once, not at the next sweep.
                Ok(()) => self.sweep().await,
                Err(e) => {
                    self.args.metrics.archive.flush_failures.inc();
                    tracing::error!(error = %e, "Archive flush failed; the messages stay in the store and are written again.");
                    // Not recorded: the rows are read again (a flush that had taken them
                    // has already moved `next` back). Recorded (a rename failed): `recover`
                    // finishes the files; they are not written twice.
                    if !self.open.is_empty() {
                        self.open.clear();
                        (self.open_bytes, self.opened_at, self.next) = (0, None, self.acked);
                    }
                    self.recover = true;
                    return self.retry_later(myself);
                }
            }
        }
        if self.open.is_empty() && self.next > self.acked && !self.move_cursor().await {
            return self.retry_later(myself);
        }
        let store = self.args.store.clone();
        // No more than the open files have room for: a file stays near max_file_bytes.
        let room = self.args.config.max_file_bytes.saturating_sub(self.open_bytes).clamp(1, READ_BYTES as u64) as usize;
        let records = match tokio::task::block_in_place(|| store.read_batch(self.next, READ_MESSAGES, room)) {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(error = %e, "Archive cannot read the store; retrying.");
                return self.retry_later(myself);
            }
        };
        self.attempt = 0;
        let Some(last) = records.last().map(|r| r.seq) else {
            // Nothing at or past `next` below `committed`: dropped (TTL, quota) or none yet.
            self.next = self.next.max(committed);
            return self.wait(myself);
        };
        for r in records {
            self.take(r);
        }
        self.next = last + 1;
        let _ = myself.send_message(ArchiveMsg::Poll);
    }

    /// Add one record to its open file (or skip it: no class, or a full class that stops).
    fn take(&mut self, r: edge_gateway_actors::record::Record) {
        let Some(i) = self.args.classes.class_of(&r.topic) else { return };
        let class = self.args.classes.get(i);
        if class.on_full == OnFull::StopArchiving && self.args.classes.is_full(i) {
            self.args.metrics.archive.skipped.get_or_create(&ClassLabels { class: class.name.clone() }).inc();
            return;
        }
        let row = ArchivedRow::from_record(r);
        self.open_bytes += row.size();
        self.opened_at.get_or_insert_with(Instant::now);
        self.open.entry((i, files::hour_of(row.received_at_ms))).or_default().push(row);
    }

    /// Wait for the next commit, at most until the open files are due (or 1 s).
    fn wait(&self, myself: &ActorRef<ArchiveMsg>) {
        let mut committed = self.args.committed.clone();
        let (next, me) = (self.next, myself.clone());
        let until_due = self.opened_at.map(|t| self.args.config.max_file_age.saturating_sub(t.elapsed()));
        let limit = until_due.unwrap_or(Duration::from_secs(1)).min(Duration::from_secs(1));
        tokio::spawn(async move {
            if *committed.borrow_and_update() <= next {
                let _ = tokio::time::timeout(limit, committed.changed()).await;
            }
            let _ = me.send_message(ArchiveMsg::Poll);
        });
    }

    fn retry_later(&mut self, myself: &ActorRef<ArchiveMsg>) {
        self.attempt = self.attempt.saturating_add(1);
        let delay = Duration::from_millis(100u64 << self.attempt.min(7));
        myself.send_after(delay, || ArchiveMsg::Poll);
    }

    /// Tell the storage actor that everything below `next` is archived.
    async fn move_cursor(&mut self) -> bool {
        let Some(storage) = self.args.storage.get() else { return false };
        let (sink, next) = (ARCHIVE_CURSOR.to_string(), self.next);
        match storage.call(|reply| StorageMsg::Ack { sink, next, reply }, Some(Duration::from_secs(30))).await {
            Ok(CallResult::Success(Ok(()))) => {
                self.acked = next;
                true
            }
            other => {
                tracing::warn!(result = ?other.map(|r| matches!(r, CallResult::Success(_))), "Archive cursor not moved; retrying.");
                false
            }
        }
    }
}

/// The archive as a child of the forwarders supervisor: its name and start function.
pub fn consumer(
    config: &ArchiveConfig,
    classes: &Classes,
    inputs: &edge_gateway_actors::supervisor::tree::TreeInputs,
) -> (String, edge_gateway_actors::supervisor::StartFn) {
    let (config, classes, inputs) = (config.clone(), classes.clone(), inputs.clone());
    let start = edge_gateway_actors::supervisor::start_fn(move |sup| {
        let args = ArchiveArgs {
            config: config.clone(),
            classes: classes.clone(),
            store: inputs.store.clone(),
            storage: inputs.storage.clone(),
            committed: inputs.committed.subscribe(),
            metrics: inputs.metrics.clone(),
            clock: edge_gateway_actors::storage::now_ms,
        };
        async move { Ok(ArchiveActor::spawn_linked(None, ArchiveActor, args, sup).await?.0.get_cell()) }
    });
    ("archive".to_string(), start)
}
