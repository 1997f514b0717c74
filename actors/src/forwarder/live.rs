//! A sink and its policy that a reload can replace while the forwarder runs: the forwarder
//! takes the current pair at each attempt, and a restarted forwarder starts from it, so a
//! replaced sink never comes back through a restart.

use std::sync::{Arc, RwLock};

use super::{ForwarderPolicy, Sink};

/// The current sink and policy of one forwarder.
#[derive(Clone)]
pub struct LiveSink(Arc<RwLock<(Arc<dyn Sink>, ForwarderPolicy)>>);

impl LiveSink {
    /// Start with `sink` and `policy`.
    pub fn new(sink: Arc<dyn Sink>, policy: ForwarderPolicy) -> LiveSink {
        LiveSink(Arc::new(RwLock::new((sink, policy))))
    }

    /// The sink and policy now.
    pub fn get(&self) -> (Arc<dyn Sink>, ForwarderPolicy) {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The policy now.
    pub fn policy(&self) -> ForwarderPolicy {
        self.0.read().unwrap_or_else(|e| e.into_inner()).1.clone()
    }

    /// Replace the sink (when `Some`) and the policy; the next attempt uses them.
    pub fn set(&self, sink: Option<Arc<dyn Sink>>, policy: ForwarderPolicy) {
        let mut g = self.0.write().unwrap_or_else(|e| e.into_inner());
        if let Some(sink) = sink {
            g.0 = sink;
        }
        g.1 = policy;
    }
}
