//! edge-gateway: an IoT edge gateway. MQTT QoS1 in, durable redb store, supervised forwarders.
//!
//! The binary (`src/main.rs`) is thin: it parses the CLI, loads the config and calls
//! [`Gateway::start`]. Tests do the same on port 0.

pub mod acl;
pub mod admin;
pub mod auth;
pub mod config;
pub mod gateway;
pub mod http;
pub mod mqtt;
pub mod otlp_logs;
pub mod passwd;
pub mod pki;
pub mod sinks;
pub mod strict;
pub mod telemetry;
pub mod throttle;
pub mod tls;
pub mod tree;

pub use gateway::{Exit, Gateway, load_supervision, preflight};
