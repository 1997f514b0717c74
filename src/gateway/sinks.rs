//! Step 3 of the start: every configured sink's I/O half, for the forwarders.

use std::sync::Arc;

use edge_gateway_actors::forwarder::ForwarderPolicy;
use edge_gateway_actors::rotation::Reloadable;
use edge_gateway_actors::supervisor::tree::SinkSpec;

use super::GatewayError;
use crate::config::Config;
use crate::egress;

/// Step 3: every sink's I/O half; an HTTPS sink's TLS files join the rotation.
/// (MQTT bridges with a downlink come back too: they are attached to the router later.)
pub(super) fn build_sinks(
    config: &Config,
    gateway_id: &str,
    reloadables: &mut Vec<Arc<dyn Reloadable>>,
) -> Result<(Vec<SinkSpec>, Vec<Arc<egress::MqttSink>>), GatewayError> {
    let (mut specs, mut bridges) = (Vec::new(), Vec::new());
    for s in &config.sinks {
        let egress::Built { sink, cloud_tls, bridge } = egress::build(gateway_id, s, &config.broker.api_identity)?;
        reloadables.extend(cloud_tls.map(|c| c as Arc<dyn Reloadable>));
        bridges.extend(bridge);
        let policy = ForwarderPolicy {
            max_messages: s.batch_max_messages,
            max_bytes: s.batch_max_bytes,
            backoff: s.backoff,
            stuck_after: s.stuck_after,
        };
        specs.push(SinkSpec { name: s.name.clone(), policy, sink });
    }
    Ok((specs, bridges))
}
