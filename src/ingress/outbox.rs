//! What one MQTT I/O thread tells the sessions actor and the device health actor, handed over
//! together.
//!
//! Every CONNECT enters a session (`SessionsMsg::Open`) and reports its device online
//! (`DevicesMsg::Connected`); every end of a connection takes both back. Sent one by one, each
//! woke the actor runtime's thread from the I/O thread: a wake-up and two context switches per
//! CONNECT, a fifth of its CPU on a 2-core machine (docs/BENCHMARKS.md, "Idle connections").
//! Here they wait on their thread at most [`HOLD`] (or until [`FLUSH_AT`] are waiting) and go
//! together, so one wake-up serves a burst of connections.
//!
//! Order is kept: letters leave in the order they were posted, so each actor sees a
//! connection's messages in order (`Open` before `Closed`; `Connected` before `Seen` and
//! `Disconnected`). Nothing waits for them: the CONNACK does not depend on either actor (a
//! takeover of an older connection with the same client id happens at most [`HOLD`] later).
//! A letter to an actor that is down when it leaves is dropped, as a direct send to it was:
//! an `Open`'s closer then closes its connection (the device reconnects).

use std::cell::Cell;
use std::time::Duration;

use edge_gateway_actors::devices::DevicesMsg;
use edge_gateway_actors::session::SessionsMsg;
use edge_gateway_actors::slot::ActorSlot;
use ractor::ActorRef;

use super::gather::{self, Gathered, Scheduled};

/// How long a letter waits at most for others to go with it.
pub(super) const HOLD: Duration = Duration::from_millis(2);

/// Letters that leave at once, without waiting for [`HOLD`] (a connection storm).
const FLUSH_AT: usize = 256;

/// One message and its addressee.
enum Letter {
    /// To the sessions actor that holds (or will hold) the connection's entry.
    Sessions(ActorRef<SessionsMsg>, SessionsMsg),
    /// To the device health actor as it is when the letter leaves (it may have restarted).
    Devices(ActorSlot<DevicesMsg>, DevicesMsg),
}

impl Letter {
    fn deliver(self) {
        match self {
            Letter::Sessions(actor, msg) => {
                let _ = actor.cast(msg);
            }
            Letter::Devices(slot, msg) => {
                if let Some(actor) = slot.get() {
                    let _ = actor.cast(msg);
                }
            }
        }
    }
}

thread_local! {
    /// This thread's letters waiting, in the order they were posted.
    static OUTBOX: Gathered<Letter> = Gathered::default();
    /// The thread's runtime is ending: letters leave at once (no task would send them).
    static DIRECT: Cell<bool> = const { Cell::new(false) };
}

/// Post `msg` to the sessions actor `actor`.
pub(super) fn to_sessions(actor: &ActorRef<SessionsMsg>, msg: SessionsMsg) {
    post(Letter::Sessions(actor.clone(), msg));
}

/// Post `msg` to the device health actor (the one in `slot` when it leaves).
pub(super) fn to_devices(slot: &ActorSlot<DevicesMsg>, msg: DevicesMsg) {
    post(Letter::Devices(slot.clone(), msg));
}

fn post(letter: Letter) {
    // `try_with`: a connection's state dropped while the thread's locals are torn down sends
    // its letters itself.
    if DIRECT.try_with(Cell::get).unwrap_or(true) {
        letter.deliver();
        return;
    }
    if let Some(round) = gather::push(&OUTBOX, letter) {
        ntex_rt::spawn(send_later(round));
    }
    if OUTBOX.with(Gathered::len) >= FLUSH_AT {
        send_now();
    }
}

/// Send this round's letters [`HOLD`] from now.
async fn send_later(round: Scheduled<Letter>) {
    tokio::time::sleep(HOLD).await;
    round.take().into_iter().for_each(Letter::deliver);
}

/// Send this thread's letters now (the round's task, when it wakes, finds the ones posted since).
fn send_now() {
    let letters = OUTBOX.try_with(Gathered::take_now).unwrap_or_default();
    letters.into_iter().for_each(Letter::deliver);
}

/// The thread's runtime ends: send what waits, and from now on every letter at once (the
/// connections it drops post their ends).
pub(super) fn close() {
    let _ = DIRECT.try_with(|direct| direct.set(true));
    send_now();
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use ractor::{Actor, ActorProcessingErr};

    use super::*;

    /// Stands in for the sessions actor: records what reaches it.
    struct Recorder;

    type Seen = Arc<Mutex<Vec<String>>>;

    impl Actor for Recorder {
        type Msg = SessionsMsg;
        type State = Seen;
        type Arguments = Seen;

        async fn pre_start(&self, _: ActorRef<SessionsMsg>, seen: Seen) -> Result<Seen, ActorProcessingErr> {
            Ok(seen)
        }

        async fn handle(&self, _: ActorRef<SessionsMsg>, msg: SessionsMsg, seen: &mut Seen) -> Result<(), ActorProcessingErr> {
            let line = match msg {
                SessionsMsg::Open { conn, .. } => format!("open {conn}"),
                SessionsMsg::Closed { conn, .. } => format!("closed {conn}"),
                _ => "other".into(),
            };
            seen.lock().unwrap().push(line);
            Ok(())
        }
    }

    fn open(conn: u64) -> SessionsMsg {
        SessionsMsg::Open { client_id: format!("c{conn}"), conn, closer: Box::new(()) }
    }

    fn closed(conn: u64) -> SessionsMsg {
        SessionsMsg::Closed { client_id: format!("c{conn}"), conn }
    }

    fn waiting() -> usize {
        OUTBOX.with(Gathered::len)
    }

    /// Runs `test` on a runtime like an I/O thread's, with a recorder as the sessions actor.
    fn on_io_thread(test: impl AsyncFnOnce(ActorRef<SessionsMsg>, Seen) + 'static) {
        ntex_rt::System::new("outbox-test", ntex_net::DefaultRuntime).block_on(async move {
            let seen = Seen::default();
            let (actor, _) = Actor::spawn(None, Recorder, seen.clone()).await.unwrap();
            test(actor, seen).await;
        });
    }

    async fn recorded(seen: &Seen, n: usize) -> Vec<String> {
        for _ in 0..500 {
            if seen.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen.lock().unwrap().clone()
    }

    #[test]
    fn letters_wait_then_reach_their_actor_in_the_order_they_were_posted() {
        on_io_thread(async |actor, seen| {
            to_sessions(&actor, open(1));
            to_sessions(&actor, closed(1));
            to_sessions(&actor, open(2));
            assert_eq!(waiting(), 3, "posted letters wait for the hold to end");
            assert_eq!(recorded(&seen, 3).await, ["open 1", "closed 1", "open 2"]);
            assert_eq!(waiting(), 0);
            // The next letter schedules a send of its own.
            to_sessions(&actor, closed(2));
            assert_eq!(recorded(&seen, 4).await.last().map(String::as_str), Some("closed 2"));
        });
    }

    #[test]
    fn a_full_outbox_and_a_closed_one_send_at_once() {
        on_io_thread(async |actor, seen| {
            for conn in 0..FLUSH_AT as u64 - 1 {
                to_sessions(&actor, open(conn));
            }
            assert_eq!(waiting(), FLUSH_AT - 1);
            to_sessions(&actor, open(1000));
            assert_eq!(waiting(), 0, "the letter that fills the outbox sends them all");
            assert_eq!(recorded(&seen, FLUSH_AT).await.len(), FLUSH_AT);
            to_sessions(&actor, closed(1000));
            assert_eq!(waiting(), 1);
            close();
            assert_eq!(waiting(), 0, "closing sends what waits");
            to_sessions(&actor, closed(0));
            assert_eq!(waiting(), 0, "after closing, letters leave at once");
            let seen = recorded(&seen, FLUSH_AT + 2).await;
            assert_eq!(seen[FLUSH_AT..], ["closed 1000", "closed 0"]);
        });
    }
}
