//! A connection's QoS 2 deliveries in flight, several at once (within the client's receive
//! maximum). The connection's writer (`super::deliver`) writes each PUBLISH (or, for a queued
//! delivery the client received on an earlier connection, its PUBREL again) and opens its
//! exchange here; this connection's exchange task (started at the first) takes every exchange
//! through the rest, in the order they were opened:
//!
//! ```text
//! PUBLISH ─▶ PUBREC ─▶ (queued: row rewritten, SessionChange::Rewrite, sent at once ─▶ committed)
//!         ─▶ PUBREL ─▶ PUBCOMP ─▶ (queued: row acknowledged, deleted in a later commit)
//! PUBLISH ─▶ PUBREC with a reason code >= 0x80 (MQTT 5: refused) ─▶ (queued: row acknowledged)
//! ```
//!
//! Each step waits on its oldest exchange: PUBRECs come in the order of their PUBLISHes (MQTT
//! 4.6) and the storage actor commits in the order it was sent, so the PUBRELs go in the order
//! of the PUBRECs; a PUBCOMP that comes before an older one's only waits for it. The rewrites of
//! the PUBRECs that come while a commit runs meet in the storage actor's mailbox and share the
//! next commit, so a session's QoS 2 drain is no longer one commit per message.
//!
//! Packet ids: a queued QoS 2 delivery goes with the id derived from its queue number, a QoS 1
//! one and a live one with ntex-mqtt's next id (which skips ids in flight); so the writer never
//! has queued QoS 1 and QoS 2 deliveries in flight together (it waits for
//! [`Exchanges::settled`] before a queued QoS 1 delivery, and for no QoS 1 in flight before a
//! QoS 2 one), nor a queued QoS 2 one beside a live one or another with its id
//! ([`Exchanges::in_use`]); one whose id is taken all the same is sent once it is free.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::future::{Future, poll_fn, ready};
use std::num::NonZeroU16;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

use ntex_mqtt::error::SendPacketError;
use ntex_mqtt::{v3, v5};
use tokio::sync::{Notify, mpsc};

use super::deliver::{Outbound, packet_id};
use super::replay::Replayer;
use super::window::Window;

/// What a PUBREC resolves to: the exchange, ready for its PUBREL.
pub(super) enum Received {
    V3(v3::PublishReceived),
    V5(v5::PublishReceived),
}

/// A PUBLISH's wait for its PUBREC.
pub(super) type Pubrec = Pin<Box<dyn Future<Output = Result<Received, SendPacketError>>>>;
/// A PUBREL's wait for its PUBCOMP.
pub(super) type Pubcomp = Pin<Box<dyn Future<Output = Result<(), SendPacketError>>>>;
/// A rewrite's wait for its commit.
type Commit = Pin<Box<dyn Future<Output = bool>>>;

impl Received {
    /// Whether the client refused the message (MQTT 5 PUBREC with a reason code of 0x80 or
    /// more): the exchange ended there, with no PUBREL.
    fn refused(&self) -> bool {
        match self {
            Received::V3(_) => false,
            Received::V5(r) => r.is_refused(),
        }
    }

    /// Write the PUBREL now; the wait for its PUBCOMP.
    fn release(self) -> Result<Pubcomp, SendPacketError> {
        match self {
            Received::V3(r) => r.release_now().map(|f| Box::pin(f) as Pubcomp),
            Received::V5(r) => r.release_now().map(|f| Box::pin(f) as Pubcomp),
        }
    }
}

/// An exchange the writer opened.
pub(super) enum Opened {
    /// Its PUBLISH was written (of queued delivery `qseq`; `None`: a live one); the PUBREC
    /// comes next.
    Published { qseq: Option<u64>, pubrec: Pubrec },
    /// Its PUBREL was written again (the PUBREC came on an earlier connection); the PUBCOMP
    /// comes next.
    Released { qseq: u64, pubcomp: Pubcomp },
}

/// The exchanges open on one connection, as the writer sees them.
#[derive(Default)]
struct Open {
    /// Packet ids of the open exchanges of queued deliveries.
    ids: RefCell<HashSet<NonZeroU16>>,
    /// Open exchanges of live deliveries (their ids are ntex-mqtt's).
    live: Cell<usize>,
    /// Woken when the last one ends.
    settled: Notify,
}

impl Open {
    /// How many are open (a queued delivery's id is never open twice: [`Exchanges::in_use`]).
    fn count(&self) -> usize {
        self.ids.borrow().len() + self.live.get()
    }
}

/// The writer's handle on its connection's exchanges; their task starts with the first (a
/// connection that gets no QoS 2 costs nothing more) and ends once this is dropped and every
/// open exchange has ended.
pub(super) struct Exchanges {
    task: OnceCell<(mpsc::UnboundedSender<Opened>, Rc<Open>)>,
    out: Outbound,
    /// A persistent session's part (records and acknowledgements of queued deliveries).
    r: Option<Rc<Replayer>>,
    w: Rc<Window>,
}

impl Exchanges {
    /// The exchanges of the connection `out` writes to.
    pub(super) fn new(out: Outbound, r: Option<Rc<Replayer>>, w: Rc<Window>) -> Self {
        Exchanges { task: OnceCell::new(), out, r, w }
    }

    /// Hand an exchange whose first packet was written to the task.
    pub(super) fn open(&self, opened: Opened) {
        let (tx, open) = self.task.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let open = Rc::new(Open::default());
            ntex_rt::spawn(run(rx, self.out.clone(), self.r.clone(), self.w.clone(), open.clone()));
            (tx, open)
        });
        let qseq = match &opened {
            Opened::Published { qseq, .. } => *qseq,
            Opened::Released { qseq, .. } => Some(*qseq),
        };
        match qseq {
            Some(qseq) => drop(open.ids.borrow_mut().insert(packet_id(qseq))),
            None => open.live.set(open.live.get() + 1),
        }
        // The task only ends after this sender is dropped.
        let _ = tx.send(opened);
    }

    /// Whether an open exchange may use `id`: a queued delivery's with that id, or any live one
    /// (ntex-mqtt does not pick an id in flight, but the queue's ids are not its picks).
    pub(super) fn in_use(&self, id: NonZeroU16) -> bool {
        self.task.get().is_some_and(|(_, open)| open.live.get() > 0 || open.ids.borrow().contains(&id))
    }

    /// Wait until no exchange is open; false when the connection is gone.
    pub(super) async fn settled(&self) -> bool {
        match self.task.get() {
            Some((_, open)) => self.out.wait_until(&open.settled, || open.count() == 0).await,
            None => self.out.is_open(),
        }
    }
}

/// Exchanges whose PUBREC came, waiting for its record to be committed.
struct Commits {
    queue: VecDeque<(Option<u64>, Received, Commit)>,
    out: Outbound,
}

impl Drop for Commits {
    /// The task ends (the gateway stops) with records not committed: the connection is closed
    /// first, so dropping their `Received` cannot write a PUBREL (ntex-mqtt writes one when a
    /// `PublishReceived` is dropped), which must not go before its record.
    fn drop(&mut self) {
        if !self.queue.is_empty() {
            self.out.force_close();
        }
    }
}

/// What the task does next.
enum Step {
    Opened(Opened),
    NoMore,
    Received(Result<Received, SendPacketError>),
    Recorded(bool),
    Completed(Result<(), SendPacketError>),
}

/// Take every exchange opened through `rx` to its end.
async fn run(mut rx: mpsc::UnboundedReceiver<Opened>, out: Outbound, r: Option<Rc<Replayer>>, w: Rc<Window>, open: Rc<Open>) {
    let mut pubrecs: VecDeque<(Option<u64>, Pubrec)> = VecDeque::new();
    let mut commits = Commits { queue: VecDeque::new(), out: out.clone() };
    let mut pubcomps: VecDeque<(Option<u64>, Pubcomp)> = VecDeque::new();
    let mut more = true;
    let end = |qseq: Option<u64>| {
        match qseq {
            Some(qseq) => drop(open.ids.borrow_mut().remove(&packet_id(qseq))),
            None => open.live.set(open.live.get() - 1),
        }
        if open.count() == 0 {
            open.settled.notify_waiters();
        }
    };
    while more || !pubrecs.is_empty() || !commits.queue.is_empty() || !pubcomps.is_empty() {
        // The oldest exchange of each step, latest step first (it frees the most).
        let step = poll_fn(|cx| {
            if let Some((_, f)) = pubcomps.front_mut()
                && let Poll::Ready(done) = f.as_mut().poll(cx)
            {
                return Poll::Ready(Step::Completed(done));
            }
            if let Some((_, _, f)) = commits.queue.front_mut()
                && let Poll::Ready(ok) = f.as_mut().poll(cx)
            {
                return Poll::Ready(Step::Recorded(ok));
            }
            if let Some((_, f)) = pubrecs.front_mut()
                && let Poll::Ready(received) = f.as_mut().poll(cx)
            {
                return Poll::Ready(Step::Received(received));
            }
            if more && let Poll::Ready(opened) = rx.poll_recv(cx) {
                return Poll::Ready(opened.map_or(Step::NoMore, Step::Opened));
            }
            Poll::Pending
        })
        .await;
        match step {
            Step::Opened(Opened::Published { qseq, pubrec }) => pubrecs.push_back((qseq, pubrec)),
            Step::Opened(Opened::Released { qseq, pubcomp }) => pubcomps.push_back((Some(qseq), pubcomp)),
            Step::NoMore => more = false,
            Step::Received(received) => {
                let Some((qseq, _)) = pubrecs.pop_front() else { continue };
                match received {
                    // Refused: done with, as a PUBACK with an error code ends a QoS 1 delivery
                    // (a queued one is acknowledged, not sent again).
                    Ok(received) if received.refused() => {
                        w.refused.inc();
                        if let Some(qseq) = qseq {
                            w.acked(qseq);
                        }
                        end(qseq);
                    }
                    Ok(received) => {
                        let commit: Commit = match (qseq, &r) {
                            // Recorded before the PUBREL: from then on only the PUBREL goes again.
                            (Some(qseq), Some(r)) => Box::pin(r.received(qseq)),
                            // A live delivery: nothing to record.
                            _ => Box::pin(ready(true)),
                        };
                        commits.queue.push_back((qseq, received, commit));
                    }
                    // The connection is gone (a queued delivery stays queued: sent again, DUP).
                    Err(_) => end(qseq),
                }
            }
            Step::Recorded(ok) => {
                let Some((qseq, received, _)) = commits.queue.pop_front() else { continue };
                if !ok {
                    // Not recorded: a PUBREL now could be followed by the message again on a
                    // later connection. Closed before any PUBREL is written; the next
                    // connection sends the message again with the same id.
                    out.force_close();
                    drop(received);
                    end(qseq);
                    continue;
                }
                match received.release() {
                    Ok(pubcomp) => pubcomps.push_back((qseq, pubcomp)),
                    // Gone: the next connection sends the PUBREL again.
                    Err(_) => end(qseq),
                }
            }
            Step::Completed(done) => {
                let Some((qseq, _)) = pubcomps.pop_front() else { continue };
                if let (Ok(()), Some(qseq)) = (done, qseq) {
                    w.acked(qseq);
                }
                end(qseq);
            }
        }
    }
    if let Some(r) = &r {
        r.flush(&w.acks);
    }
}
