//! A shared, replaceable reference to a supervised actor.
//!
//! A restarted actor has a new `ActorRef`. Instead of global names, whoever starts the actor
//! writes the new reference into its [`ActorSlot`], and every user reads the slot per call, so a
//! restart is picked up without anybody holding a stale reference.

use std::sync::{Arc, RwLock};

use ractor::ActorRef;

/// The current reference to one supervised actor, `None` while it is down.
pub struct ActorSlot<M: ractor::Message> {
    /// Shared between the starter (writer) and all callers (readers).
    inner: Arc<RwLock<Option<ActorRef<M>>>>,
}

impl<M: ractor::Message> Clone for ActorSlot<M> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<M: ractor::Message> Default for ActorSlot<M> {
    fn default() -> Self {
        Self { inner: Arc::new(RwLock::new(None)) }
    }
}

impl<M: ractor::Message> ActorSlot<M> {
    /// The actor currently in the slot, if any.
    pub fn get(&self) -> Option<ActorRef<M>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Put a freshly started actor in the slot.
    pub fn set(&self, actor: ActorRef<M>) {
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = Some(actor);
    }
}
