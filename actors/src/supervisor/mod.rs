//! An OTP-style supervisor on ractor's supervision events.
//!
//! - Strategies: `one_for_one`, `one_for_all`, `rest_for_one`.
//! - Restart types: `permanent` (always restarted), `transient` (restarted after an abnormal
//!   exit: a failure, a panic or a kill), `temporary` (never restarted).
//! - Intensity: more than `intensity` restarts within `period` and the supervisor stops its
//!   children (in reverse order) and fails, which its parent sees as an abnormal exit. The root's
//!   failure makes the process exit non-zero.
//! - Restart backoff: the n-th restart within the period waits `backoff_initial * 2^(n-1)`,
//!   capped at `backoff_max`.
//! - Children start in declared order and stop in reverse, each within its shutdown timeout,
//!   after which it is killed.
//!
//! The policies come from `supervision.toml` ([`spec`]); the tree's shape comes from the program
//! ([`tree`]: which actor each child is, and what it is started with).

mod actor;
pub mod spec;
pub mod tree;

pub use actor::{ChildSpec, StartFn, Supervisor, SupervisorArgs, SupervisorMsg, start_fn};
pub use spec::{ChildPolicy, Restart, RootChild, Strategy, SupervisionConfig, SupervisorPolicy};

#[cfg(test)]
mod tests;
