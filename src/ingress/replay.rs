//! A persistent session's part of its connection's writer (`super::deliver`): which queued
//! rows are sent (unreadable, expired or now outside the ACL: dropped), the PUBREC of a queued
//! QoS 2 delivery recorded before its PUBREL, and the acknowledged rows handed to the store.

use std::cell::RefCell;
use std::rc::Rc;

use edge_gateway_actors::metrics::{DeliveryDrop, QosLabels};
use edge_gateway_actors::storage::{SessionChange, SessionOp, StorageMsg};
use prometheus_client::metrics::counter::Counter;

use super::Ingress;
use super::deliver::packet_id;
use super::window::Acks;
use crate::routing::persist::{Queued, decode_queued, encode_released};
use crate::routing::sessions::Replay;
use crate::throttle::Throttle;
use crate::trust::acl::Who;

/// A persistent session's part of its connection's writer.
pub(super) struct Replayer {
    /// The session.
    pub(super) client_id: String,
    /// Its owner, for the ACL check before each send.
    pub(super) identity: String,
    /// Its wake-ups and resend mark.
    pub(super) replay: Replay,
    /// The store (reads) and the storage actor (acknowledgements).
    pub(super) ingress: Ingress,
}

impl Replayer {
    /// A queued delivery to send (or release), or `None` when it is dropped instead (deleted
    /// like an acknowledged one): unreadable, expired, or outside the client's ACL as it is now.
    pub(super) fn sendable(&self, qseq: u64, value: &[u8], acks: &RefCell<Acks>, expired: &Counter) -> Option<Queued> {
        let drop = |acks: &RefCell<Acks>| acks.borrow_mut().acked.push(qseq);
        let d = match decode_queued(value) {
            Ok(Queued::Delivery(d)) => d,
            Ok(released) => return Some(released),
            Err(e) => {
                tracing::error!(client_id = %self.client_id, qseq, error = %e, "A queued message cannot be read; dropped.");
                drop(acks);
                return None;
            }
        };
        if d.message.expired() {
            expired.inc();
            drop(acks);
            return None;
        }
        let who = Who { identity: &self.identity, client_id: &self.client_id };
        if !self.ingress.authority.may_subscribe(&who, &d.message.topic).is_allowed() {
            self.ingress.router.dropped(DeliveryDrop::NotAuthorized);
            drop(acks);
            return None;
        }
        Some(Queued::Delivery(d))
    }

    /// Record that the client received queued QoS 2 delivery `qseq` (its PUBREC came): from
    /// now on only its PUBREL is sent again. Sent to the storage actor now; the future is false
    /// when the store did not commit it.
    pub(super) fn received(self: &Rc<Self>, qseq: u64) -> impl Future<Output = bool> + use<> {
        let change = SessionChange::Rewrite { qseq, value: encode_released(packet_id(qseq)) };
        let commit = self.ingress.commit_session(&self.client_id, change);
        let r = self.clone();
        async move {
            match commit.await {
                Ok(()) => true,
                Err(e) => {
                    if READ_FAILURES.allow() {
                        tracing::warn!(client_id = %r.client_id, error = %e, "Cannot record a PUBREC; the connection is closed and the message sent again later with the same packet id.");
                    }
                    false
                }
            }
        }
    }

    /// Count a queued delivery handed to the client.
    pub(super) fn sent(&self, qos: u8) {
        self.ingress.metrics.deliveries.get_or_create(&QosLabels { qos }).inc();
    }

    /// Hand the acknowledged deliveries to the storage actor (deleted in its next commit; if
    /// that never happens they are sent again, as QoS 1 allows).
    pub(super) fn flush(&self, acks: &RefCell<Acks>) {
        let acked = std::mem::take(&mut acks.borrow_mut().acked);
        if acked.is_empty() {
            return;
        }
        if let Some(storage) = self.ingress.storage.get() {
            let op = SessionOp { client_id: self.client_id.clone(), change: SessionChange::Acked(acked), reply: None };
            let _ = storage.send_message(StorageMsg::Session(op));
        }
    }
}

/// A store that cannot be read or written warns once a second at most.
pub(super) static READ_FAILURES: Throttle = Throttle::new();
