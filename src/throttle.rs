//! A once-per-second gate for log lines a remote peer can trigger at will.
//!
//! Refusals are always counted in metrics; their WARN lines go through a [`Throttle`] so that a
//! misbehaving device (or a scan) cannot flood the journal.

use std::sync::atomic::{AtomicU64, Ordering};

/// Allows one event per wall-clock second.
pub struct Throttle(AtomicU64);

impl Throttle {
    /// A throttle that allows the first event.
    pub const fn new() -> Self {
        Throttle(AtomicU64::new(0))
    }

    /// Whether this event may be logged (the first one in the current second).
    pub fn allow(&self) -> bool {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        self.allow_at(now)
    }

    /// Whether an event in second `now` (unix seconds) may be logged.
    pub fn allow_at(&self, now: u64) -> bool {
        self.0.swap(now, Ordering::Relaxed) != now
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_event_of_a_second_is_allowed() {
        let t = Throttle::new();
        assert_eq!((0..1000).filter(|_| t.allow_at(1_700_000_000)).count(), 1);
        assert!(t.allow_at(1_700_000_001), "the next second allows one again");
        assert!(!t.allow_at(1_700_000_001));
    }
}
