//! Closing a connection when its session ends, from whichever thread ends it.
//!
//! The sessions actor holds a [`Closer`] per session. Dropping it (a takeover, the admin API,
//! the actor's own end) asks the connection's MQTT I/O thread to run the close it armed. One
//! task per I/O thread receives those requests, rather than a task per connection waiting on
//! a channel of its own (1.6 KB each: docs/BENCHMARKS.md, "Idle connections").

use std::cell::RefCell;
use std::collections::HashMap;

use tokio::sync::mpsc;

/// Dropping it asks the I/O thread that armed it to run its close (if still armed).
pub(super) struct Closer {
    conn: u64,
    tx: mpsc::UnboundedSender<u64>,
}

impl Drop for Closer {
    fn drop(&mut self) {
        // The I/O thread is gone only when its connections are.
        let _ = self.tx.send(self.conn);
    }
}

/// This I/O thread's armed closes and where their requests arrive.
struct Armed {
    tx: mpsc::UnboundedSender<u64>,
    by_conn: HashMap<u64, Box<dyn FnOnce()>>,
}

thread_local! {
    static ARMED: RefCell<Option<Armed>> = const { RefCell::new(None) };
}

/// Arm `close` for connection `conn` on this I/O thread: it runs here when the returned
/// [`Closer`] is dropped, unless [`disarm`] came first.
pub(super) fn arm(conn: u64, close: impl FnOnce() + 'static) -> Closer {
    ARMED.with(|armed| {
        let mut armed = armed.borrow_mut();
        // A thread whose runtime was replaced (its task dropped) starts over.
        if armed.as_ref().is_some_and(|a| a.tx.is_closed()) {
            *armed = None;
        }
        let armed = armed.get_or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            ntex_rt::spawn(run(rx));
            Armed { tx, by_conn: HashMap::new() }
        });
        armed.by_conn.insert(conn, Box::new(close));
        Closer { conn, tx: armed.tx.clone() }
    })
}

/// The connection ended by itself: its close must not run.
pub(super) fn disarm(conn: u64) {
    // `try_with`: a connection state dropped while the thread's locals are torn down.
    let _ = ARMED.try_with(|armed| armed.borrow_mut().as_mut().map(|a| a.by_conn.remove(&conn)));
}

/// Run the closes asked for, one at a time (taken out of the table first: a close drops
/// connection state, which disarms).
async fn run(mut rx: mpsc::UnboundedReceiver<u64>) {
    while let Some(conn) = rx.recv().await {
        let close = ARMED.with(|armed| armed.borrow_mut().as_mut().and_then(|a| a.by_conn.remove(&conn)));
        if let Some(close) = close {
            close();
        }
    }
}
