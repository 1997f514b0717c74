//! edge-gateway: an IoT edge gateway. MQTT QoS1 in, durable redb store, supervised forwarders.
//!
//! The binary (`src/main.rs`) is thin: it parses the CLI, loads the config and calls
//! [`Gateway::start`]. Tests do the same on port 0.

pub mod config;
pub mod gateway;
pub mod http;
pub mod mqtt;
pub mod sinks;
pub mod strict;
pub mod tree;

pub use gateway::{Exit, Gateway, load_supervision};
