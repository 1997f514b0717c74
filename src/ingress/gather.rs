//! What an I/O thread gathers to hand over in one go: its appends for the storage actor
//! (`batcher.rs`), its letters for the sessions and device health actors (`outbox.rs`). Each is a
//! queue of the thread's own (single-threaded: no lock) and whether a task that sends it is
//! already spawned, so the first item of a round spawns one and the others join it.

use std::cell::{Cell, RefCell};
use std::thread::LocalKey;

/// One thread's gathered items, in the order they came.
pub(super) struct Gathered<T> {
    items: RefCell<Vec<T>>,
    /// A send task holds the [`Scheduled`] of this round.
    scheduled: Cell<bool>,
}

impl<T> Default for Gathered<T> {
    fn default() -> Self {
        Gathered { items: RefCell::new(Vec::new()), scheduled: Cell::new(false) }
    }
}

impl<T> Gathered<T> {
    /// How many wait.
    pub(super) fn len(&self) -> usize {
        self.items.borrow().len()
    }

    /// Everything waiting, now (a send already scheduled finds the rest later).
    pub(super) fn take_now(&self) -> Vec<T> {
        std::mem::take(&mut *self.items.borrow_mut())
    }
}

/// Add `item` to this thread's `queue`; the first item of a round returns the [`Scheduled`]
/// that the caller hands to a new send task.
pub(super) fn push<T>(queue: &'static LocalKey<Gathered<T>>, item: T) -> Option<Scheduled<T>> {
    queue.with(|q| {
        q.items.borrow_mut().push(item);
        (!q.scheduled.replace(true)).then_some(Scheduled(queue))
    })
}

/// The send of one round, held by its task from its creation (an argument of the task's
/// function): [`Scheduled::take`] ends the round, and a task dropped before it took the items
/// (its runtime stopping) ends it too, so the next item schedules a send again.
pub(super) struct Scheduled<T: 'static>(&'static LocalKey<Gathered<T>>);

impl<T> Scheduled<T> {
    /// The items of this round; the next item starts a new one.
    pub(super) fn take(self) -> Vec<T> {
        let items = self.0.try_with(|q| {
            q.scheduled.set(false);
            q.take_now()
        });
        std::mem::forget(self);
        items.unwrap_or_default()
    }
}

impl<T> Drop for Scheduled<T> {
    fn drop(&mut self) {
        // `try_with`: a task dropped while the thread's locals are torn down.
        let _ = self.0.try_with(|q| q.scheduled.set(false));
    }
}
