//! edge-gateway: an IoT edge gateway. MQTT in, durable redb store, supervised forwarders.
//!
//! The folders follow the path a message takes, and the concerns around it:
//!
//! ```text
//! device ─▶ ingress ─▶ (actors: storage) ─▶ (actors: forwarder) ─▶ egress ─▶ cloud
//!             │ trust                                                 │
//!             └ telemetry, api (metrics, health, admin) ──────────────┘
//! ```
//!
//! - [`ingress`]: the MQTT listeners, the connection gate, strict packet checks and the publish
//!   path (one core, thin v3 / v5 adapters) up to the storage actor.
//! - [`trust`]: device TLS, identity, authentication, ACLs, password files, the dev PKI.
//! - [`schema`]: the schema registry: payload checks before the PUBACK, compatibility checks.
//! - [`routing`]: local subscriptions and retained messages: accepted publishes to subscribers.
//! - [`egress`]: the sinks the forwarders deliver to (HTTP, file) and the cloud TLS client.
//! - [`api`]: the local HTTP API (metrics, health, devices) and the chaos admin API.
//! - [`telemetry`]: OpenTelemetry traces and logs behind bounded export queues, the panic hook.
//! - [`config`]: the TOML config, validated; a leaf that depends on nothing else here.
//! - [`gateway`]: starting and stopping the whole: store, supervision tree, listeners.
//!
//! The supervised actors themselves (supervisor, storage, forwarders, sessions, rotation,
//! devices) live in the `edge-gateway-actors` crate, which never sees ntex or HTTP types. The
//! binary (`src/main.rs`, `src/cli/`) is thin: it parses the CLI and calls [`Gateway::start`].
//! Tests do the same on port 0.

pub mod api;
pub mod archive;
pub mod atomic_file;
pub mod config;
pub mod egress;
pub mod gateway;
pub mod ingress;
pub mod routing;
pub mod schema;
pub mod sha256;
pub mod telemetry;
pub mod throttle;
pub mod trust;
pub mod update;

pub use gateway::{Exit, Gateway, load_supervision, preflight};
