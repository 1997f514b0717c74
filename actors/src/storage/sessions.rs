//! Persistent sessions in the store: the broker's session rows (`sessions`) and the deliveries
//! queued for them (`session_queue`), written by the storage actor in its one transaction.
//!
//! A delivery to a persistent session is queued in the commit that stores the message (a
//! [`SessionCopy`](crate::record::SessionCopy) of the append), so a message acknowledged to its
//! publisher is durable for every persistent subscriber that matched it. The client's PUBACK
//! (or PUBCOMP) deletes the row ([`SessionChange::Acked`], joining a later commit: a crash
//! before it redelivers, as QoS 1 allows). A QoS 2 delivery's PUBREC rewrites its row
//! ([`SessionChange::Rewrite`], committed before the PUBREL goes) so that a later connection
//! sends the PUBREL again, not the message. Each session holds at most
//! `storage.session_max_queued` rows: past it a new delivery is not queued and is counted
//! (`reason="session_full"`), as mosquitto's `max_queued_messages` does. The store does not read
//! the rows: their encoding is the broker's (`src/routing/persist.rs`).

use std::collections::HashMap;

use ractor::RpcReplyPort;

use super::AppendError;
use super::actor::StorageState;
use super::backend::{Meta, Tables};
use super::commit::Outcome;
use super::messages::Op;
use super::store::{Store, StoreError};
use crate::record::NewRecord;

/// A change to one persistent session.
#[derive(Debug)]
pub enum SessionChange {
    /// Create or replace the session row (its subscriptions, expiry, protocol).
    Put(Vec<u8>),
    /// Forget the session and every delivery queued for it (clean start, expiry).
    Remove,
    /// The client acknowledged these deliveries: delete them.
    Acked(Vec<u64>),
    /// Replace the value of queued delivery `qseq`, which stays queued (an outgoing QoS 2
    /// delivery the client has received: what is left to send is its PUBREL); gone: nothing.
    Rewrite { qseq: u64, value: Vec<u8> },
}

/// One change, and where its result goes once committed (`None`: nobody waits).
pub struct SessionOp {
    /// The session's client id.
    pub client_id: String,
    /// What changes.
    pub change: SessionChange,
    /// The result, after the commit.
    pub reply: Option<RpcReplyPort<Result<(), AppendError>>>,
}

impl StorageState {
    /// The session changes of this transaction (before its appends, so a session created in
    /// it receives them and a removed one does not).
    pub(super) fn write_session_ops(&self, t: &mut dyn Tables, ops: &[Op], out: &mut Outcome) -> Result<(), StoreError> {
        for op in ops {
            let Op::Session(s) = op else { continue };
            let client = s.client_id.as_str();
            match &s.change {
                SessionChange::Put(value) => {
                    let queued = self.queued_count(t, out, client)?.unwrap_or(0);
                    t.put_session(client, value)?;
                    out.sessions.insert(client.to_string(), Some(queued));
                }
                SessionChange::Remove => {
                    t.remove_session(client)?;
                    out.sessions.insert(client.to_string(), None);
                }
                SessionChange::Acked(qseqs) => {
                    let Some(mut queued) = self.queued_count(t, out, client)? else { continue };
                    for qseq in qseqs {
                        if t.remove_queued(client, *qseq)? {
                            queued = queued.saturating_sub(1);
                        }
                    }
                    out.sessions.insert(client.to_string(), Some(queued));
                }
                SessionChange::Rewrite { qseq, value } => {
                    if t.remove_queued(client, *qseq)? {
                        t.insert_queued(client, *qseq, value)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Queue `rec`'s deliveries to persistent sessions (it was stored in this transaction).
    pub(super) fn write_copies(&self, t: &mut dyn Tables, rec: &NewRecord, out: &mut Outcome) -> Result<(), StoreError> {
        if rec.copies.is_empty() {
            return Ok(());
        }
        let mut next = t.meta(Meta::QueuedNextSeq)?.unwrap_or(0);
        for copy in &rec.copies {
            // A session removed meanwhile (clean start, expiry) gets nothing.
            let Some(queued) = self.queued_count(t, out, &copy.client_id)? else { continue };
            if queued >= self.args.policy.session_max_queued {
                out.dropped_session_full += 1;
                continue;
            }
            t.insert_queued(&copy.client_id, next, &copy.value)?;
            next += 1;
            out.sessions.insert(copy.client_id.clone(), Some(queued + 1));
        }
        t.set_meta(Meta::QueuedNextSeq, next)
    }

    /// Deliveries queued for `client` as of this transaction's changes so far; `None`: no such
    /// session. The actor's map is a cache: a session it does not know is looked up in the file
    /// (an earlier incarnation of the actor may have committed it late, invariant 7).
    fn queued_count(&self, t: &mut dyn Tables, out: &mut Outcome, client: &str) -> Result<Option<u64>, StoreError> {
        if let Some(changed) = out.sessions.get(client) {
            return Ok(*changed);
        }
        if let Some(n) = self.sessions.get(client) {
            return Ok(Some(*n));
        }
        let stored = t.session_queued(client)?;
        if stored.is_some() {
            out.sessions.insert(client.to_string(), stored);
        }
        Ok(stored)
    }
}

/// After a commit: the sessions it changed into the actor's state.
pub(super) fn apply(sessions: &mut HashMap<String, u64>, changed: HashMap<String, Option<u64>>) {
    for (client, queued) in changed {
        match queued {
            Some(n) => sessions.insert(client, n),
            None => sessions.remove(&client),
        };
    }
}

/// Every persistent session and how many deliveries it has queued (at the actor's start).
pub(super) fn load(store: &Store) -> Result<HashMap<String, u64>, StoreError> {
    let backend = store.backend()?;
    let mut sessions = HashMap::new();
    backend.sessions(&mut |client, _| {
        sessions.insert(client.to_string(), 0u64);
    })?;
    backend.queued_keys(&mut |client, _| {
        if let Some(n) = sessions.get_mut(client) {
            *n += 1;
        }
    })?;
    Ok(sessions)
}

/// A persistent session as stored: its client id and the broker's encoding of it.
pub type StoredSession = (String, Vec<u8>);

impl Store {
    /// Every persistent session (read at start by the broker).
    pub fn sessions(&self) -> Result<Vec<StoredSession>, StoreError> {
        let mut out = Vec::new();
        self.backend()?.sessions(&mut |client, value| out.push((client.to_string(), value.to_vec())))?;
        Ok(out)
    }

    /// Up to `limit` deliveries queued for `client` with a number >= `from`, in order.
    pub fn queued(&self, client: &str, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        self.backend()?.queued(client, from, &mut |qseq, value| {
            out.push((qseq, value.to_vec()));
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    /// How many deliveries are queued for `client`.
    pub fn queued_len(&self, client: &str) -> Result<u64, StoreError> {
        let mut n = 0u64;
        self.backend()?.queued(client, 0, &mut |_, _| {
            n += 1;
            Ok(true)
        })?;
        Ok(n)
    }

    /// Per client with queued deliveries: how many, and the number after its last one.
    pub fn queued_heads(&self) -> Result<HashMap<String, (u64, u64)>, StoreError> {
        let mut out: HashMap<String, (u64, u64)> = HashMap::new();
        self.backend()?.queued_keys(&mut |client, qseq| {
            let head = out.entry(client.to_string()).or_default();
            head.0 += 1;
            head.1 = head.1.max(qseq + 1);
        })?;
        Ok(out)
    }
}
