//! Finding the message a sink refuses inside a batch.
//!
//! A sink that rejects a batch (a 4xx other than auth, 404, 408 and 429) does not say which
//! message it objected to. The forwarder then resends the batch's messages one per batch, up
//! to the rejected batch's last seq: the single message that is rejected again goes to the
//! dead-letter table, the others are delivered, and full batches resume after that seq.

/// What to do after a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rejection {
    /// Resend from the same cursor, one message per batch.
    Isolate,
    /// This one message is the offender: dead-letter it and move on.
    DeadLetter(u64),
}

/// The isolation window of one forwarder.
#[derive(Debug, Default)]
pub(super) struct Isolation {
    /// While the cursor is at or below this seq, one message per batch.
    until: Option<u64>,
}

impl Isolation {
    /// How many messages the next batch, starting at `cursor`, may hold.
    pub(super) fn batch_limit(&self, cursor: u64, max_messages: usize) -> usize {
        if self.until.is_some_and(|s| cursor <= s) { 1 } else { max_messages }
    }

    /// The batch `first..=last` of `n` messages was rejected.
    pub(super) fn rejected(&mut self, n: usize, first: u64, last: u64) -> Rejection {
        if n > 1 {
            self.until = Some(last);
            Rejection::Isolate
        } else {
            Rejection::DeadLetter(first)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drive the window against a sink that rejects every batch holding one of `bad`; returns
    /// the delivered batches and the dead letters.
    fn run(total: u64, max: usize, bad: &[u64]) -> (Vec<(u64, u64)>, Vec<u64>) {
        let (mut iso, mut cursor) = (Isolation::default(), 1u64);
        let (mut delivered, mut dead) = (Vec::new(), Vec::new());
        for _ in 0..1_000 {
            if cursor > total {
                return (delivered, dead);
            }
            let last = (cursor + iso.batch_limit(cursor, max) as u64 - 1).min(total);
            if bad.iter().any(|b| (cursor..=last).contains(b)) {
                match iso.rejected((last - cursor + 1) as usize, cursor, last) {
                    Rejection::Isolate => {}
                    Rejection::DeadLetter(seq) => {
                        dead.push(seq);
                        cursor = seq + 1;
                    }
                }
            } else {
                delivered.push((cursor, last));
                cursor = last + 1;
            }
        }
        panic!("no progress: cursor {cursor}");
    }

    #[test]
    fn the_offender_alone_is_dead_lettered_and_full_batches_resume_after_the_window() {
        let (delivered, dead) = run(10, 4, &[6]);
        assert_eq!(dead, [6]);
        assert_eq!(delivered, [(1, 4), (5, 5), (7, 7), (8, 8), (9, 10)]);
    }

    #[test]
    fn two_offenders_in_one_batch_are_both_found_and_nothing_else_is_lost() {
        let (delivered, dead) = run(12, 4, &[2, 4, 9]);
        assert_eq!(dead, [2, 4, 9]);
        let mut seqs: Vec<u64> = delivered.iter().flat_map(|&(a, b)| a..=b).collect();
        seqs.extend(&dead);
        seqs.sort();
        assert_eq!(seqs, (1..=12).collect::<Vec<_>>(), "every message delivered or dead-lettered, once");
    }

    #[test]
    fn a_rejected_single_message_batch_is_dead_lettered_at_once() {
        let mut iso = Isolation::default();
        assert_eq!(iso.rejected(1, 7, 7), Rejection::DeadLetter(7));
        assert_eq!(iso.batch_limit(8, 100), 100, "no window opened");
    }
}
