//! The supervised actor runtime of edge-gateway.
//!
//! This crate holds the actors and the supervisor that runs them; it never sees ntex or HTTP
//! types. The root crate does the I/O wiring: it turns MQTT publishes into
//! [`storage::StorageMsg::AppendBatch`] calls and implements [`forwarder::Sink`] for HTTP and files.
//!
//! - [`supervisor`]: OTP-style supervisor (strategies, restart types, intensity, backoff).
//! - [`storage`]: the store (redb or SQLite) and the group-committing storage actor.
//! - [`forwarder`]: one actor per sink, reading the store in sequence order.
//! - [`session`]: the open MQTT sessions, one entry per connection, in one actor.
//! - [`rotation`]: reloads certificates, CRLs, ACLs and password files; watches expiry.
//! - [`metrics`]: every metric the runtime exports, named in one place.
//! - [`devices`]: online/offline/silent status of every device, kept across restarts.
//! - [`health`]: what `/readyz` reads.
//! - [`liveness`]: progress of the forwarders and the watchdog that restarts a stalled one.

pub mod backoff;
pub mod devices;
pub mod forwarder;
pub mod health;
pub mod liveness;
pub mod metrics;
pub mod record;
pub mod rotation;
pub mod session;
pub mod slot;
pub mod spans;
pub mod storage;
pub mod supervisor;
pub mod tomlkey;
