//! The `sessions` actor: the registry of open MQTT sessions, one entry per connection, under
//! the root supervisor.
//!
//! A session is the connection's place in the supervision tree. The I/O side hands the actor a
//! [`Closer`] for its connection; the entry holds it, so however the entry ends (taken over by a newer connection with the same client id, ended by the admin
//! API, or the actor itself stopped, killed or failed, which drops every entry) the receiver
//! wakes and the I/O side closes the connection. The device reconnects and resends what was not
//! acknowledged. When the connection ends by itself, the I/O side reports it and the entry is
//! forgotten.
//!
//! Sessions are entries, not an actor each: a session never ran code of its own (publishes go
//! straight to storage; ACL decisions and device status are made by ingress and the device
//! health actor) and was never restarted (a device reconnects by itself), so a ractor actor per
//! connection (its task, mailbox and supervision channels: ~9 KB, docs/BENCHMARKS.md "Idle
//! connections") bought nothing an entry does not give.

use std::collections::HashMap;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

/// What a session holds for its connection: never used, only dropped; its drop closes the
/// connection (the I/O side decides how).
pub type Closer = Box<dyn Send>;

/// The sessions actor (stateless handler).
pub struct SessionsActor;

/// Which sessions to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    /// Any one (chaos: `root/sessions/any`).
    Any,
    /// Every one.
    All,
    /// The session of this client id.
    ClientId(String),
}

/// Messages to the sessions actor.
pub enum SessionsMsg {
    /// A connection's session begins; an open session with the same client id is ended first
    /// (takeover). Not answered: the I/O side does not wait (a round trip to this actor's
    /// thread per CONNECT). A message that never arrives (the actor stopped meanwhile) drops
    /// its closer, which closes the connection, as the actor's end does for every entry.
    Open {
        /// MQTT client id: the key of the entry.
        client_id: String,
        /// The connection among all, so that a late [`SessionsMsg::Closed`] of an older
        /// connection with the same client id does not end the newer one's entry.
        conn: u64,
        /// Dropped when the entry ends: tells the I/O side to close the connection.
        closer: Closer,
    },
    /// The connection ended by itself: forget its entry.
    Closed {
        /// MQTT client id.
        client_id: String,
        /// The connection that ended.
        conn: u64,
    },
    /// End sessions (admin API, chaos, tests): their connections close. Replies how many ended.
    End(Which, RpcReplyPort<usize>),
    /// How many sessions are open.
    Count(RpcReplyPort<usize>),
}

/// One open session.
struct Entry {
    /// Its connection.
    conn: u64,
    /// Dropping it is the signal.
    _closer: Closer,
}

/// The open sessions by client id; dropping the state (a stop, a kill, a failure) closes every
/// connection.
#[derive(Default)]
pub struct SessionsState {
    open: HashMap<String, Entry>,
}

impl Actor for SessionsActor {
    type Msg = SessionsMsg;
    type State = SessionsState;
    type Arguments = ();

    async fn pre_start(&self, _myself: ActorRef<SessionsMsg>, _args: ()) -> Result<SessionsState, ActorProcessingErr> {
        Ok(SessionsState::default())
    }

    async fn post_stop(&self, _myself: ActorRef<SessionsMsg>, state: &mut SessionsState) -> Result<(), ActorProcessingErr> {
        // ractor hands the state on after a graceful stop; the connections close now.
        let n = state.open.len();
        state.open.clear();
        tracing::info!(sessions = n, "Sessions actor stopped; their connections close.");
        Ok(())
    }

    async fn handle(&self, _myself: ActorRef<SessionsMsg>, msg: SessionsMsg, state: &mut SessionsState) -> Result<(), ActorProcessingErr> {
        match msg {
            SessionsMsg::Open { client_id, conn, closer } => {
                // A connection that ended before this arrived sends its `Closed` after it (one
                // sender, one mailbox: in order), so no orphan stays.
                if let Some(old) = state.open.insert(client_id.clone(), Entry { conn, _closer: closer }) {
                    tracing::info!(%client_id, old_conn = old.conn, "Taking over: ending the previous session with this client id.");
                }
            }
            SessionsMsg::Closed { client_id, conn } => state.forget(&client_id, conn),
            SessionsMsg::End(which, reply) => {
                let ended = state.end(&which);
                if ended > 0 {
                    tracing::info!(?which, sessions = ended, "Sessions ended; their connections close.");
                }
                let _ = reply.send(ended);
            }
            SessionsMsg::Count(reply) => {
                let _ = reply.send(state.open.len());
            }
        }
        Ok(())
    }
}

impl SessionsState {
    /// Forget the entry of `client_id` if it is still `conn`'s.
    fn forget(&mut self, client_id: &str, conn: u64) {
        if self.open.get(client_id).is_some_and(|e| e.conn == conn) {
            self.open.remove(client_id);
        }
    }

    /// End the sessions `which` names; how many.
    fn end(&mut self, which: &Which) -> usize {
        match which {
            Which::All => std::mem::take(&mut self.open).len(),
            Which::Any => {
                let Some(key) = self.open.keys().next().cloned() else { return 0 };
                usize::from(self.open.remove(&key).is_some())
            }
            Which::ClientId(id) => usize::from(self.open.remove(id).is_some()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::oneshot;

    fn open(actor: &ActorRef<SessionsMsg>, client_id: &str, conn: u64) -> oneshot::Receiver<()> {
        let (closer, closed) = oneshot::channel::<()>();
        actor.cast(SessionsMsg::Open { client_id: client_id.into(), conn, closer: Box::new(closer) }).expect("cast");
        closed
    }

    async fn count(actor: &ActorRef<SessionsMsg>) -> usize {
        actor.call(SessionsMsg::Count, Some(Duration::from_secs(5))).await.expect("call").expect("answered")
    }

    async fn end(actor: &ActorRef<SessionsMsg>, which: Which) -> usize {
        actor.call(|r| SessionsMsg::End(which, r), Some(Duration::from_secs(5))).await.expect("call").expect("answered")
    }

    /// The receiver of a closer that was dropped answers at once; one still held never does.
    async fn closed(rx: &mut oneshot::Receiver<()>) -> bool {
        tokio::time::timeout(Duration::from_millis(200), rx).await.is_ok()
    }

    #[tokio::test]
    async fn a_takeover_ends_the_older_connection_and_a_late_close_of_it_keeps_the_newer() {
        let (actor, handle) = SessionsActor::spawn(None, SessionsActor, ()).await.expect("spawn");
        let mut first = open(&actor, "dev-1", 1);
        let mut other = open(&actor, "dev-2", 2);
        assert!(!closed(&mut first).await, "an open session keeps its connection");
        let mut second = open(&actor, "dev-1", 3);
        assert!(closed(&mut first).await, "the takeover closes the older connection");
        actor.cast(SessionsMsg::Closed { client_id: "dev-1".into(), conn: 1 }).expect("cast");
        assert_eq!(count(&actor).await, 2, "the older connection's late close does not end the newer session");
        assert!(!closed(&mut second).await);
        actor.cast(SessionsMsg::Closed { client_id: "dev-1".into(), conn: 3 }).expect("cast");
        assert_eq!(count(&actor).await, 1);
        assert_eq!(end(&actor, Which::ClientId("nobody".into())).await, 0);
        assert_eq!(end(&actor, Which::Any).await, 1);
        assert!(closed(&mut other).await, "an ended session closes its connection");
        assert_eq!(end(&actor, Which::Any).await, 0, "nothing left to end");
        actor.stop(None);
        handle.await.expect("stopped");
    }

    #[tokio::test]
    async fn a_close_sent_right_after_its_open_leaves_no_entry() {
        // `Open` is not answered: a connection that ends at once sends `Closed` behind it, and
        // the mailbox keeps the order, so no orphan entry stays.
        let (actor, handle) = SessionsActor::spawn(None, SessionsActor, ()).await.expect("spawn");
        let mut rx = open(&actor, "dev-1", 1);
        actor.cast(SessionsMsg::Closed { client_id: "dev-1".into(), conn: 1 }).expect("cast");
        assert_eq!(count(&actor).await, 0);
        assert!(closed(&mut rx).await, "the forgotten entry dropped its closer");
        actor.stop(None);
        handle.await.expect("stopped");
    }

    #[tokio::test]
    async fn an_open_for_a_stopped_actor_is_refused_and_closes_its_connection() {
        let (actor, handle) = SessionsActor::spawn(None, SessionsActor, ()).await.expect("spawn");
        actor.stop(None);
        handle.await.expect("stopped");
        let (closer, mut rx) = oneshot::channel::<()>();
        let sent = actor.cast(SessionsMsg::Open { client_id: "dev-1".into(), conn: 1, closer: Box::new(closer) });
        assert!(sent.is_err(), "the I/O side sees the refusal and refuses the CONNECT");
        drop(sent);
        assert!(closed(&mut rx).await, "the undelivered message dropped its closer");
    }

    #[tokio::test]
    async fn killing_the_actor_closes_every_connection() {
        let (actor, handle) = SessionsActor::spawn(None, SessionsActor, ()).await.expect("spawn");
        let mut rx: Vec<_> = Vec::new();
        for i in 0..3 {
            rx.push(open(&actor, &format!("dev-{i}"), i));
        }
        actor.kill();
        let _ = handle.await;
        for r in &mut rx {
            assert!(closed(r).await, "a killed sessions actor drops its entries");
        }
    }

    #[tokio::test]
    async fn a_graceful_stop_closes_every_connection() {
        let (actor, handle) = SessionsActor::spawn(None, SessionsActor, ()).await.expect("spawn");
        let mut a = open(&actor, "a", 1);
        let mut b = open(&actor, "b", 2);
        assert_eq!(end(&actor, Which::All).await, 2);
        assert!(closed(&mut a).await && closed(&mut b).await);
        let mut c = open(&actor, "c", 3);
        actor.stop(None);
        handle.await.expect("stopped");
        assert!(closed(&mut c).await, "post_stop ends the open sessions");
    }
}
