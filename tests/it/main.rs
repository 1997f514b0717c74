//! Integration tests: one test crate with modules (one build, not one per file).
//!
//! They start the gateway through the library on port 0 (or the real binary where a process
//! must die) and drive it with real clients: mosquitto_pub, rumqttc, and a raw client for what
//! real clients will not send.

mod access;
mod admin;
mod archive;
mod archive_crash;
mod archive_retention;
mod bridge;
mod broker;
mod chaos;
mod cloud_tls;
mod cve;
mod daemon;
mod devices;
mod endpoint;
mod exactly_once;
mod faults;
mod fuzz;
mod harness;
mod ingest;
mod malformed;
mod nats;
mod package;
mod pipeline;
mod process;
mod raw;
mod recovery;
mod schemas;
mod sessions;
mod supervision;
mod tracing;
mod trust;
mod update;
mod util;
mod visibility;
