//! Step 3 of the start: every configured sink's I/O half, for the forwarders; and, on SIGHUP,
//! the sink settings that can change while the gateway runs ([`LiveSinks::reload`]).

use std::sync::{Arc, Mutex};

use edge_gateway_actors::forwarder::{ForwarderPolicy, LiveSink};
use edge_gateway_actors::rotation::Reloadable;
use edge_gateway_actors::supervisor::tree::SinkSpec;

use super::GatewayError;
use crate::config::{Config, SinkConfig, SinkKind};
use crate::egress;

/// What step 3 built: the forwarders' specs, the MQTT bridges (attached to the router later),
/// and the sinks a reload may change.
pub(super) type Built = (Vec<SinkSpec>, Vec<Arc<egress::MqttSink>>, LiveSinks);

/// Step 3: every sink's I/O half; an HTTPS sink's TLS files join the rotation.
pub(super) fn build_sinks(config: &Config, gateway_id: &str, reloadables: &mut Vec<Arc<dyn Reloadable>>) -> Result<Built, GatewayError> {
    let (mut specs, mut bridges, mut live) = (Vec::new(), Vec::new(), Vec::new());
    for s in &config.sinks {
        let egress::Built { sink, cloud_tls, bridge } = egress::build(gateway_id, s, &config.broker.api_identity)?;
        reloadables.extend(cloud_tls.map(|c| c as Arc<dyn Reloadable>));
        bridges.extend(bridge);
        let handle = LiveSink::new(sink, policy(s));
        live.push((s.clone(), handle.clone()));
        specs.push(SinkSpec { name: s.name.clone(), live: handle });
    }
    let live = LiveSinks {
        gateway_id: gateway_id.to_string(),
        api_identity: config.broker.api_identity.clone(),
        sinks: Arc::new(Mutex::new(live)),
    };
    Ok((specs, bridges, live))
}

fn policy(s: &SinkConfig) -> ForwarderPolicy {
    ForwarderPolicy { max_messages: s.batch_max_messages, max_bytes: s.batch_max_bytes, backoff: s.backoff, stuck_after: s.stuck_after }
}

/// Every forwarder's sink as configured now, replaceable on SIGHUP.
#[derive(Clone)]
pub struct LiveSinks {
    gateway_id: String,
    api_identity: String,
    sinks: Arc<Mutex<Vec<(SinkConfig, LiveSink)>>>,
}

/// What a reload did with the sinks.
#[derive(Debug, Default)]
pub struct SinkReload {
    /// Settings now in use (`sinks.NAME.batch_max_messages`, `sinks.NAME.url`, ...).
    pub applied: Vec<String>,
    /// Settings that changed but need a restart, each with why.
    pub need_restart: Vec<String>,
}

impl LiveSinks {
    /// Apply `config`'s sinks where that is safe: batching and backoff settings of any sink; the URL and timeout of an HTTP sink without TLS files, a file sink's path (a new
    /// sink is built; the next attempt uses it, the same batch with the same key). Everything
    /// else (a sink added, removed or of another kind, TLS files, an MQTT or NATS connection)
    /// needs a restart. All or nothing: if a new sink cannot be built, none is replaced.
    pub fn reload(&self, config: &Config) -> Result<SinkReload, egress::EgressError> {
        let mut current = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = SinkReload::default();
        let names = |v: &mut dyn Iterator<Item = String>| v.collect::<std::collections::BTreeSet<_>>();
        let (old, new) = (names(&mut current.iter().map(|(c, _)| c.name.clone())), names(&mut config.sinks.iter().map(|c| c.name.clone())));
        for added in new.difference(&old) {
            out.need_restart.push(format!("sinks.{added} (a new sink)"));
        }
        for removed in old.difference(&new) {
            out.need_restart.push(format!("sinks.{removed} (removed)"));
        }
        let mut plan = Vec::new();
        for (i, (was, _)) in current.iter().enumerate() {
            let Some(now) = config.sinks.iter().find(|s| s.name == was.name) else { continue };
            // The stall limit is read when the forwarder starts: a new one needs a restart.
            if was.stuck_after != now.stuck_after {
                out.need_restart.push(format!("sinks.{}.stuck_after_secs", now.name));
            }
            let mut now = now.clone();
            now.stuck_after = was.stuck_after;
            let now = &now;
            let policy_changed = policy(was) != policy(now);
            let sink = if was.kind == now.kind {
                None
            } else if live_kind(&was.kind) && live_kind(&now.kind) {
                let built = egress::build(&self.gateway_id, now, &self.api_identity)?;
                Some(built.sink)
            } else {
                out.need_restart.push(format!("sinks.{} (its kind, TLS files or connection)", now.name));
                continue;
            };
            if sink.is_some() || policy_changed {
                plan.push((i, now.clone(), sink, policy_changed));
            }
        }
        for (i, now, sink, policy_changed) in plan {
            let name = now.name.clone();
            if sink.is_some() {
                out.applied.push(format!("sinks.{name} (destination)"));
            }
            if policy_changed {
                out.applied.push(format!("sinks.{name} (batching, backoff)"));
            }
            current[i].1.set(sink, policy(&now));
            current[i].0 = now;
        }
        Ok(out)
    }
}

/// A sink kind replaced by building a new one: no background connection, no watched files.
fn live_kind(kind: &SinkKind) -> bool {
    matches!(kind, SinkKind::Http { tls: None, .. } | SinkKind::File { .. })
}
