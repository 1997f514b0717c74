//! Exponential backoff with full jitter, used by forwarders and supervisors.

use std::time::Duration;

use rand::Rng;

/// Backoff bounds: the first delay and the largest one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Upper bound of the delay before the first retry.
    pub initial: Duration,
    /// Upper bound of any delay, however many attempts failed.
    pub max: Duration,
}

impl Backoff {
    /// The ceiling for retry number `attempt` (1-based): `initial * 2^(attempt-1)`, capped at `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(20);
        self.initial.saturating_mul(1u32 << shift).min(self.max)
    }

    /// A delay drawn uniformly from `[0, ceiling(attempt)]` ("full jitter").
    pub fn full_jitter(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5) };

    #[test]
    fn ceiling_doubles_per_attempt_until_max() {
        assert_eq!(B.ceiling(1), Duration::from_millis(100));
        assert_eq!(B.ceiling(2), Duration::from_millis(200));
        assert_eq!(B.ceiling(4), Duration::from_millis(800));
        assert_eq!(B.ceiling(7), Duration::from_secs(5));
        assert_eq!(B.ceiling(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn full_jitter_stays_within_the_ceiling() {
        for attempt in 1..30 {
            assert!(B.full_jitter(attempt) <= B.ceiling(attempt));
        }
    }
}
