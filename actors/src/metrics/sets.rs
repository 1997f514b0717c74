//! Every metric's label set, one struct per shape, with prometheus-client's `EncodeLabelSet`
//! derive: the field names are the label names, the field types the values (enums from
//! `labels.rs`, or strings for values from config).

use prometheus_client::encoding::EncodeLabelSet;

use super::labels::*;

/// `{protocol, qos}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ProtocolQos {
    /// MQTT version.
    pub protocol: Protocol,
    /// 0, 1 or 2.
    pub qos: u8,
}

/// `{reason}` for ingress refusals and closed connections.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct IngressLabels {
    /// Why.
    pub reason: IngressReason,
}

/// `{result}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AttemptLabels {
    /// How it ended.
    pub result: Attempt,
}

/// `{sink}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SinkLabels {
    /// The sink's name from the config.
    pub sink: String,
}

/// `{sink, kind}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// The sink's name from the config.
    pub sink: String,
    /// Why the delivery failed.
    pub kind: DeliveryKind,
}

/// `{reason}` for dropped messages.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DropLabels {
    /// Why.
    pub reason: DropReason,
}

/// `{supervisor}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SupervisorLabels {
    /// The supervisor's path (`root/forwarders`).
    pub supervisor: String,
}

/// `{supervisor, child}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ChildLabels {
    /// The supervisor's path.
    pub supervisor: String,
    /// The child's name.
    pub child: String,
}

/// `{child}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ChildNameLabels {
    /// The child's name.
    pub child: String,
}

/// `{supervisor, child, reason}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ExitLabels {
    /// The supervisor's path.
    pub supervisor: String,
    /// The child's name.
    pub child: String,
    /// How it exited.
    pub reason: ExitReason,
}

/// `{listener, reason}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct GateLabels {
    /// Which listener.
    pub listener: Listener,
    /// Why.
    pub reason: GateRefusal,
}

/// `{reason}` for failed TLS handshakes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TlsLabels {
    /// Why.
    pub reason: TlsFailure,
}

/// `{reason}` for refused authentications.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AuthLabels {
    /// Why.
    pub reason: AuthFailure,
}

/// `{action, reason}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AclLabels {
    /// What was asked.
    pub action: AclAction,
    /// Why it was refused.
    pub reason: DenyReason,
}

/// `{cert}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CertLabels {
    /// Which certificate (`server`, `ca`, `cloud_client`...).
    pub cert: String,
}

/// `{target, result}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReloadLabels {
    /// The reloaded set (`device_tls`, `acl`...).
    pub target: String,
    /// How it ended.
    pub result: ReloadResult,
}

/// `{action}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AdminLabels {
    /// What was done.
    pub action: AdminAction,
}

/// `{state}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DeviceLabels {
    /// The state.
    pub state: DeviceState,
}

/// `{version}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct BuildLabels {
    /// The gateway's version.
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::registry::Registry;

    #[test]
    fn label_sets_encode_the_exported_text() {
        let family: Family<DeliveryLabels, Counter> = Family::default();
        family.get_or_create(&DeliveryLabels { sink: "cloud".into(), kind: DeliveryKind::Http5xx }).inc();
        let mut registry = Registry::default();
        registry.register("forward_errors", "help", family);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"forward_errors_total{sink="cloud",kind="http_5xx"} 1"#), "{text}");
    }

    #[test]
    fn values_are_snake_case_and_distinct() {
        let texts: Vec<&str> = IngressReason::ALL.iter().map(|r| r.as_str()).collect();
        let mut unique = texts.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), texts.len());
        assert!(texts.iter().all(|t| t.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')));
    }
}

/// `{qos}` of a local delivery.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct QosLabels {
    /// 0, 1 or 2.
    pub qos: u8,
}

/// `{reason}` a local delivery was dropped.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DeliveryDropLabels {
    /// Why.
    pub reason: DeliveryDrop,
}

/// `{phase}` of the last self-update.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct UpdateLabels {
    /// Where it stands.
    pub phase: UpdatePhase,
}

/// `{subject, version, result}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ValidationLabels {
    /// The registry subject (from the schema files: bounded by the operator).
    pub subject: String,
    /// The subject's version, as a number.
    pub version: String,
    /// Valid or not.
    pub result: ValidationResult,
}

/// `{subject, reason, action}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SchemaFailureLabels {
    /// The registry subject.
    pub subject: String,
    /// Why the payload failed.
    pub reason: SchemaFailure,
    /// What was done with it.
    pub action: SchemaAction,
}
