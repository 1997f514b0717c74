//! The archive actor: reads the store from its own cursor (`archive`), keeps the rows of each
//! (class, hour) in memory, and closes them all into Parquet files when the rows reach
//! `max_file_bytes` or the oldest is `max_file_age` old. Only then, with the files fsync'ed
//! and in the manifest, does its cursor move, so the store keeps every message until the
//! archive has it; a crash before that writes them again (the manifest's `through_seq` keeps a
//! message from being archived twice). Every `sweep_every` it applies retention and uploads.
//!
//! One flush closes every open file: the cursor can then move past everything read, and a
//! restart never has to know which rows of a half-read range are already in a file.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use edge_gateway_actors::metrics::{ArchiveDeletion, ClassLabels, DeletionLabels, Metrics};
use edge_gateway_actors::slot::ActorSlot;
use edge_gateway_actors::storage::{StorageMsg, Store};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;

use super::columns::{self, ArchivedRow};
use super::files::{self, tmp_of};
use super::manifest::{self, FileEntry, Manifest, Op};
use super::retention;
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
    uploader: Uploader,
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
        for done in files::recover(&dir, &m)? {
            tracing::warn!(dir = %dir.display(), %done, "Archive recovered after an interrupted flush or deletion.");
        }
        let acked = args.store.cursor(ARCHIVE_CURSOR)?;
        let next = acked.max(m.through_seq());
        let names: Vec<String> = (0..args.classes.len()).map(|i| args.classes.get(i).name.clone()).collect();
        args.metrics.archive.zero(&names);
        for i in 0..args.classes.len() {
            let class = args.classes.get(i);
            args.metrics.archive.quota_bytes.get_or_create(&ClassLabels { class: class.name.clone() }).set(class.quota_bytes as i64);
        }
        let uploader = Uploader::new(&args.config)?;
        tracing::info!(dir = %dir.display(), cursor = acked, next, files = m.live().len(), head = %m.head, "Archive started.");
        myself.send_message(ArchiveMsg::Sweep)?;
        myself.send_message(ArchiveMsg::Poll)?;
        let seen = m.entries.last().map_or(0, |e| e.n);
        Ok(ArchiveState {
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
        })
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
                    // Not recorded (rows still open): read them again. Recorded (a rename
                    // failed): `recover` finishes the files; they are not written twice.
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
        for r in &records {
            self.take(r);
        }
        self.next = last + 1;
        let _ = myself.send_message(ArchiveMsg::Poll);
    }

    /// Add one record to its open file (or skip it: no class, or a full class that stops).
    fn take(&mut self, r: &edge_gateway_actors::record::Record) {
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

    /// Close every open file: write each as `.tmp` and fsync it, record them all in the
    /// manifest, rename them to their final names.
    fn flush(&mut self) -> Result<(), ArchiveError> {
        let dir = self.args.config.dir.clone();
        let m = Manifest::read(&dir)?;
        if std::mem::take(&mut self.recover) {
            files::recover(&dir, &m)?;
        }
        let mut taken: Vec<String> = Vec::new();
        let mut adds = Vec::new();
        let result = (|| {
            for (&(i, hour), rows) in &self.open {
                let class = &self.args.classes.get(i).name;
                let name = files::next_name(&m, &taken, class, hour);
                taken.push(name.clone());
                let path = dir.join(&name);
                files::create_dirs(&dir, path.parent().unwrap_or(&dir))?;
                let tmp = tmp_of(&path);
                let file = std::fs::File::create(&tmp).map_err(|e| ArchiveError::io(&tmp, e))?;
                columns::write(&file, rows)?;
                file.sync_all().map_err(|e| ArchiveError::io(&tmp, e))?;
                let bytes = file.metadata().map_err(|e| ArchiveError::io(&tmp, e))?.len();
                adds.push(FileEntry {
                    path: name,
                    class: class.clone(),
                    sha256: crate::sha256::file(&tmp).map_err(|e| ArchiveError::io(&tmp, e))?,
                    bytes,
                    rows: rows.len() as u64,
                    first_ms: rows.iter().map(|r| r.received_at_ms).min().unwrap_or(0),
                    last_ms: rows.iter().map(|r| r.received_at_ms).max().unwrap_or(0),
                    through_seq: self.next,
                });
            }
            let lock = manifest::lock(&dir)?;
            manifest::append(&dir, &lock, adds.iter().cloned().map(Op::Add).collect(), (self.args.clock)())
        })();
        if let Err(e) = result {
            for name in &taken {
                let _ = std::fs::remove_file(tmp_of(&dir.join(name)));
            }
            return Err(e);
        }
        // Recorded: from here on a failure is finished by `recover`, never written again.
        self.open.clear();
        (self.open_bytes, self.opened_at) = (0, None);
        let now_secs = (self.args.clock)() as i64 / 1000;
        self.args.metrics.archive.last_flush.set(now_secs);
        for f in &adds {
            let path = dir.join(&f.path);
            if let Err(e) = std::fs::rename(tmp_of(&path), &path)
                .map_err(|e| ArchiveError::io(&path, e))
                .and_then(|()| files::sync_dir(path.parent().unwrap_or(&dir)))
            {
                self.recover = true;
                return Err(e);
            }
            let labels = ClassLabels { class: f.class.clone() };
            self.args.metrics.archive.messages.get_or_create(&labels).inc_by(f.rows);
            self.args.metrics.archive.bytes.get_or_create(&labels).inc_by(f.bytes);
            tracing::info!(file = %f.path, rows = f.rows, bytes = f.bytes, sha256 = %f.sha256, "Archive file closed.");
        }
        Ok(())
    }

    /// Retention (deletions, usage, full flags), then uploads.
    async fn sweep(&mut self) {
        if let Err(e) = tokio::task::block_in_place(|| self.apply_retention()) {
            tracing::error!(error = %e, "Archive retention sweep failed; trying again at the next sweep.");
        }
        if let Err(e) = self.uploader.run(&self.args.config.dir, &self.args.metrics).await {
            tracing::warn!(error = %e, "Archive upload failed; retrying at the next sweep.");
        }
    }

    /// Deletions by `archive delete` (another process) since the last sweep, into the metrics.
    fn count_operator_deletions(&mut self, m: &Manifest) {
        for e in m.entries.iter().filter(|e| e.n > self.seen) {
            if let Op::Delete { class, reason, .. } = &e.op
                && reason == ArchiveDeletion::Operator.as_str()
            {
                let labels = DeletionLabels { class: class.clone(), reason: ArchiveDeletion::Operator };
                self.args.metrics.archive.deletions.get_or_create(&labels).inc();
            }
        }
        self.seen = m.entries.last().map_or(self.seen, |e| e.n);
    }

    fn apply_retention(&mut self) -> Result<(), ArchiveError> {
        let dir = &self.args.config.dir.clone();
        let m = Manifest::read(dir)?;
        self.count_operator_deletions(&m);
        let live = m.live();
        let pinned = self.uploader.not_uploaded(dir, &live);
        let now = (self.args.clock)();
        let a = &self.args.metrics.archive;
        for i in 0..self.args.classes.len() {
            let class = self.args.classes.get(i).clone();
            let held = retention::hold_of(dir, &class).is_some();
            let (deletions, usage) = retention::plan(&class, &live, held, &pinned, now as i64);
            retention::delete(dir, &deletions, "archive actor", now)?;
            for d in &deletions {
                tracing::info!(file = %d.file.path, reason = %d.reason, detail = %d.detail, "Archive file deleted.");
                a.deletions.get_or_create(&DeletionLabels { class: class.name.clone(), reason: d.reason }).inc();
            }
            let labels = ClassLabels { class: class.name.clone() };
            a.files.get_or_create(&labels).set(usage.files as i64);
            a.stored_bytes.get_or_create(&labels).set(usage.bytes as i64);
            a.oldest_file.get_or_create(&labels).set(usage.oldest_ms / 1000);
            a.newest_file.get_or_create(&labels).set(usage.newest_ms / 1000);
            a.full.get_or_create(&labels).set(i64::from(usage.full));
            if self.args.classes.set_full(i, usage.full) {
                match (usage.full, class.on_full) {
                    (true, OnFull::RefuseIngest) => {
                        tracing::error!(class = %class.name, bytes = usage.bytes, quota = class.quota_bytes, "Archive class at its quota: publishes to its topics are refused until files leave the window (or the quota is raised).")
                    }
                    (true, OnFull::StopArchiving) => {
                        tracing::error!(class = %class.name, bytes = usage.bytes, quota = class.quota_bytes, "Archive class at its quota: its messages are no longer archived (forwarded as before).")
                    }
                    (false, _) => {
                        tracing::info!(class = %class.name, bytes = usage.bytes, quota = class.quota_bytes, "Archive class below its quota again.")
                    }
                }
            }
        }
        Ok(())
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
