//! Every labelled series whose label values are known at start exists from the first scrape,
//! at 0 (Prometheus' "avoid missing metrics": `rate()` and `increase()` alerts work from the
//! start, and a dashboard shows 0 rather than nothing).
//!
//! What is known at start: every label value that comes from code (the enums in `labels.rs`)
//! and the configured sinks, here; the supervision tree's children (the supervisor, as it adds
//! each child) and the reload targets (the rotation actor, at its start). Certificate expiry
//! gauges are set with their real value by the rotation actor, never at 0.

use super::*;

impl Metrics {
    /// Create every series whose labels are known now, at 0.
    pub fn zero_known_series(&self, sinks: &[String]) {
        for &protocol in Protocol::ALL {
            for qos in [0u8, 1, 2] {
                let _ = self.ingress_messages.get_or_create(&ProtocolQos { protocol, qos });
            }
        }
        for &reason in IngressReason::REJECTED {
            let _ = self.ingress_rejected.get_or_create(&IngressLabels { reason });
        }
        for &reason in IngressReason::CLOSED {
            let _ = self.connections_closed.get_or_create(&IngressLabels { reason });
        }
        for &listener in Listener::ALL {
            for &reason in GateRefusal::ALL {
                let _ = self.connections_refused.get_or_create(&GateLabels { listener, reason });
            }
        }
        for &reason in TlsFailure::ALL {
            let _ = self.tls_handshake_failures.get_or_create(&TlsLabels { reason });
        }
        for &reason in AuthFailure::ALL {
            let _ = self.auth_failures.get_or_create(&AuthLabels { reason });
        }
        for &action in AclAction::ALL {
            for &reason in DenyReason::ALL {
                let _ = self.acl_denied.get_or_create(&AclLabels { action, reason });
            }
        }
        for &result in Attempt::ALL {
            let _ = self.store_reopens.get_or_create(&AttemptLabels { result });
            let _ = self.cert_renewals.get_or_create(&AttemptLabels { result });
        }
        for &reason in DropReason::ALL {
            let _ = self.dropped_messages.get_or_create(&DropLabels { reason });
        }
        for qos in [0u8, 1, 2] {
            let _ = self.deliveries.get_or_create(&QosLabels { qos });
        }
        for &reason in DeliveryDrop::ALL {
            let _ = self.deliveries_dropped.get_or_create(&DeliveryDropLabels { reason });
        }
        for &phase in UpdatePhase::ALL {
            let _ = self.update_phase.get_or_create(&UpdateLabels { phase });
        }
        for &action in AdminAction::ALL {
            let _ = self.admin_actions.get_or_create(&AdminLabels { action });
        }
        for &state in DeviceState::ALL {
            let _ = self.devices.get_or_create(&DeviceLabels { state });
        }
        for sink in sinks {
            let labels = SinkLabels { sink: sink.clone() };
            let _ = self.forwarded_messages.get_or_create(&labels);
            let _ = self.forwarded_batches.get_or_create(&labels);
            let _ = self.dead_letters.get_or_create(&labels);
            let _ = self.forwarder_stalls.get_or_create(&labels);
            let _ = self.e2e_latency.get_or_create(&labels);
            let _ = self.device_latency.get_or_create(&labels);
            for &kind in DeliveryKind::ALL {
                let _ = self.forward_errors.get_or_create(&DeliveryLabels { sink: sink.clone(), kind });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn a_fresh_registry_shows_every_code_label_value_at_zero() {
        let m = Metrics::new();
        m.zero_known_series(&["cloud".to_string()]);
        let mut registry = Registry::default();
        m.register(&mut registry, "test");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"gateway_forward_errors_total{sink="cloud",kind="http_5xx"} 0"#,
            r#"gateway_tls_handshake_failures_total{reason="cert_revoked"} 0"#,
            r#"gateway_acl_denied_total{action="subscribe",reason="denied_by_rule"} 0"#,
            r#"gateway_ingress_rejected_total{reason="quota"} 0"#,
            r#"gateway_mqtt_connections_closed_total{reason="session_ended"} 0"#,
            r#"gateway_connections_refused_total{listener="tls",reason="rate_limited"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(!text.contains(r#"gateway_ingress_rejected_total{reason="session_ended"}"#), "not a rejection reason");
    }
}
