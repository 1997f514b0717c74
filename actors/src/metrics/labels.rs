//! Every metric label set, and an enum for every label whose values come from code.
//!
//! Values that come from config (sink names, supervisor paths, child names, certificate labels,
//! reload targets) stay strings; everything else is an enum, so a label value cannot be
//! misspelled at one call site and differ from the value a dashboard or test matches.
//!
//! Label sets (`sets.rs`) use prometheus-client's `EncodeLabelSet` derive. Label values do not use its
//! `EncodeLabelValue` derive: that writes the Rust identifier (`Quota`), while the exported
//! values are snake_case (`quota`) and must not change; [`label_values!`] writes the text.

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use std::fmt::{self, Write as _};

/// An enum of label values, each with its exported text: `as_str`, `Display`, `ALL` and
/// `EncodeLabelValue` come with it.
macro_rules! label_values {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The exported label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
                encoder.write_str(self.as_str())
            }
        }
    };
}

label_values! {
    /// The MQTT protocol version of a connection.
    pub enum Protocol {
        /// MQTT 3.1.1.
        V3 => "v3",
        /// MQTT 5.
        V5 => "v5",
    }
}

label_values! {
    /// Why a publish or packet was refused at ingress, or why the gateway closed a connection
    /// (`gateway_ingress_rejected_total`, `gateway_mqtt_connections_closed_total`).
    pub enum IngressReason {
        /// The store is at `storage.quota_bytes` with `overflow = "reject"`.
        Quota => "quota",
        /// The store could not take the message.
        StoreError => "store_error",
        /// A retained publish to a new topic beyond `broker.retained_max` (or the bytes).
        RetainedFull => "retained_full",
        /// A topic name that is empty or has wildcards.
        InvalidTopic => "invalid_topic",
        /// A v3 client with an empty client id and clean session off.
        EmptyClientId => "empty_client_id",
        /// A new persistent session beyond `broker.max_sessions` (the CONNECT is refused).
        SessionsFull => "sessions_full",
        /// A packet over `mqtt.max_packet_size`.
        Oversize => "oversize",
        /// A packet that may not come now (a second CONNECT, a server-only packet).
        UnexpectedPacket => "unexpected_packet",
        /// Any other malformed packet or protocol violation.
        ProtocolError => "protocol_error",
        /// No packet within 1.5 keep-alive intervals.
        KeepaliveTimeout => "keepalive_timeout",
        /// A publish above the granted maximum QoS.
        QosUnsupported => "qos_unsupported",
        /// The session ended (taken over, ended by the admin API, or the sessions actor ended).
        SessionEnded => "session_ended",
        /// A handler failed (the store was down, a certificate went bad).
        HandlerError => "handler_error",
        /// The topic's archive class is at its quota with `on_full = "refuse_ingest"`.
        ArchiveFull => "archive_full",
    }
}

impl IngressReason {
    /// The reasons of `gateway_ingress_rejected_total`.
    pub const REJECTED: &'static [IngressReason] = &[
        IngressReason::InvalidTopic,
        IngressReason::Quota,
        IngressReason::StoreError,
        IngressReason::RetainedFull,
        IngressReason::ArchiveFull,
        IngressReason::EmptyClientId,
        IngressReason::SessionsFull,
        IngressReason::Oversize,
        IngressReason::QosUnsupported,
        IngressReason::KeepaliveTimeout,
        IngressReason::UnexpectedPacket,
        IngressReason::ProtocolError,
    ];

    /// The reasons of `gateway_mqtt_connections_closed_total`.
    pub const CLOSED: &'static [IngressReason] = &[
        IngressReason::SessionEnded,
        IngressReason::HandlerError,
        IngressReason::InvalidTopic,
        IngressReason::Oversize,
        IngressReason::QosUnsupported,
        IngressReason::KeepaliveTimeout,
        IngressReason::UnexpectedPacket,
        IngressReason::ProtocolError,
    ];
}

label_values! {
    /// Which device listener a connection came to.
    pub enum Listener {
        /// Plain TCP.
        Plain => "plain",
        /// TLS.
        Tls => "tls",
    }
}

label_values! {
    /// Why a connection was refused before any TLS or MQTT work.
    pub enum GateRefusal {
        /// `mqtt.max_connections` open already.
        MaxConnections => "max_connections",
        /// The source address is over `mqtt.max_new_connections_per_source`.
        RateLimited => "rate_limited",
    }
}

label_values! {
    /// Why a device's TLS handshake failed.
    pub enum TlsFailure {
        /// No handshake within `tls.handshake_timeout`.
        HandshakeTimeout => "handshake_timeout",
        /// The client certificate has expired.
        CertExpired => "cert_expired",
        /// The client certificate is not valid yet.
        CertNotYetValid => "cert_not_yet_valid",
        /// The client certificate is revoked by a CRL.
        CertRevoked => "cert_revoked",
        /// The client certificate does not chain to `tls.ca`.
        CertUnknownIssuer => "cert_unknown_issuer",
        /// No client certificate where one is required.
        NoClientCert => "no_client_cert",
        /// Any other certificate problem.
        CertInvalid => "cert_invalid",
        /// Version or cipher mismatch, a peer that hung up mid-handshake.
        HandshakeFailed => "handshake_failed",
    }
}

label_values! {
    /// Why an authentication was refused (`gateway_auth_failures_total`).
    pub enum AuthFailure {
        /// Username or password wrong.
        BadPassword => "bad_password",
        /// Neither a client certificate nor a username and password.
        NoCredentials => "no_credentials",
        /// The client id differs from the identity.
        ClientIdMismatch => "client_id_mismatch",
        /// The certificate has no value in the configured identity field.
        NoIdentity => "no_identity",
        /// The identity cannot name a topic level (empty, `/`, `+`, `#`, NUL, too long).
        BadIdentity => "bad_identity",
        /// The CONNECT's will topic is not one the identity may publish to.
        WillNotAuthorized => "will_not_authorized",
        /// The certificate expired while its session was open.
        CertExpiredInSession => "cert_expired_in_session",
        /// The certificate was revoked while its session was open.
        CertRevokedInSession => "cert_revoked_in_session",
    }
}

label_values! {
    /// What the ACL was asked about.
    pub enum AclAction {
        /// A PUBLISH.
        Publish => "publish",
        /// A SUBSCRIBE filter.
        Subscribe => "subscribe",
    }
}

label_values! {
    /// Why the ACL refused.
    pub enum DenyReason {
        /// No allow rule matched (deny by default).
        NoRule => "no_rule",
        /// A deny rule matched.
        DeniedByRule => "denied_by_rule",
    }
}

label_values! {
    /// Why a delivery to a sink failed (`gateway_forward_errors_total{kind}`).
    pub enum DeliveryKind {
        /// The sink could not be reached.
        Connect => "connect",
        /// No answer in time (or HTTP 408).
        Timeout => "timeout",
        /// Another transport or file error.
        Io => "io",
        /// HTTP 5xx.
        Http5xx => "http_5xx",
        /// HTTP 429.
        Http429 => "http_429",
        /// HTTP 401, 403 or 407.
        HttpAuth => "http_auth",
        /// HTTP 404.
        HttpNotFound => "http_not_found",
        /// Any other HTTP status.
        HttpOther => "http_other",
        /// The sink refused the content (the message goes to the dead letters).
        Rejected => "rejected",
        /// The store could not be read or written.
        Store => "store",
    }
}

impl DeliveryKind {
    /// The sink (or the store) cannot be reached: an outage, not a stalled forwarder.
    pub fn is_unreachable(self) -> bool {
        matches!(self, DeliveryKind::Connect | DeliveryKind::Store)
    }

    /// The sink answered (with an error status): it is talking.
    pub fn is_answer(self) -> bool {
        matches!(
            self,
            DeliveryKind::Http5xx | DeliveryKind::Http429 | DeliveryKind::HttpAuth | DeliveryKind::HttpNotFound | DeliveryKind::HttpOther
        )
    }
}

label_values! {
    /// Why the store dropped messages.
    pub enum DropReason {
        /// Over `storage.quota_bytes` with `overflow = "drop_oldest"`.
        Quota => "quota",
        /// Older than `storage.ttl`.
        Ttl => "ttl",
        /// The oldest kept-apart message, over `schemas.rejected_max`.
        RejectedOverflow => "rejected_overflow",
    }
}

label_values! {
    /// Why a message was not delivered to a local subscriber (`gateway_deliveries_dropped_total`).
    pub enum DeliveryDrop {
        /// The subscriber's queue (`broker.max_queued`) was full: it reads slower than others publish.
        QueueFull => "queue_full",
        /// The ACL, as it is now, no longer lets the subscriber receive the topic.
        NotAuthorized => "not_authorized",
        /// Its MQTT 5 message expiry interval passed before it could be sent.
        Expired => "expired",
        /// A persistent session's queue (`broker.session_max_queued`) was full: the client has
        /// been away (or slow) for that many messages.
        SessionFull => "session_full",
        /// The client cannot take a queued message (larger than its maximum packet size).
        Unsendable => "unsendable",
        /// The client refused it: an MQTT 5 PUBACK or PUBREC with a reason code of 0x80 or more.
        /// The delivery ends there (a queued one is not sent again).
        Refused => "refused",
    }
}

label_values! {
    /// How a payload's schema check ended (`gateway_schema_validations_total`).
    pub enum ValidationResult {
        /// The payload validated.
        Valid => "valid",
        /// It did not (see `gateway_schema_failures_total` for why, and the action taken).
        Invalid => "invalid",
    }
}

label_values! {
    /// Why a payload failed its schema (`gateway_schema_failures_total`).
    pub enum SchemaFailure {
        /// Not JSON (or not UTF-8).
        NotJson => "not_json",
        /// JSON that the schema refuses.
        Schema => "schema",
        /// The device named a version the subject does not have.
        UnknownVersion => "unknown_version",
        /// The device named another subject than the binding's, or a tag that does not parse.
        BadTag => "bad_tag",
    }
}

label_values! {
    /// What the gateway did with a payload that failed its schema (`gateway_schema_failures_total`).
    pub enum SchemaAction {
        /// Refused with MQTT 5 PUBACK 0x99; not stored.
        Refused => "refused",
        /// Stored in the rejected table, never forwarded.
        KeptApart => "kept_apart",
        /// Stored and forwarded with `valid = false` and the errors.
        Tagged => "tagged",
    }
}

label_values! {
    /// How an attempt ended (store reopen, renewal command).
    pub enum Attempt {
        /// It worked.
        Ok => "ok",
        /// It failed.
        Failed => "failed",
    }
}

label_values! {
    /// How a reload of watched files ended.
    pub enum ReloadResult {
        /// The new set is in use.
        Ok => "ok",
        /// The new set was refused; the previous one stays.
        Rejected => "rejected",
    }
}

label_values! {
    /// How a supervised child exited.
    pub enum ExitReason {
        /// An error or a panic.
        Failed => "failed",
        /// Killed.
        Killed => "killed",
        /// Another abnormal stop.
        Stopped => "stopped",
        /// A normal stop.
        Normal => "normal",
    }
}

label_values! {
    /// An action taken through the chaos admin API.
    pub enum AdminAction {
        /// An actor was killed.
        Kill => "kill",
        /// An actor was stopped.
        Stop => "stop",
        /// Storage faults were set.
        StorageFaults => "storage_faults",
        /// An MQTT I/O thread was blocked.
        StallIo => "stall_io",
    }
}

label_values! {
    /// A known device's state.
    pub enum DeviceState {
        /// Connected and heard from recently.
        Online => "online",
        /// Connected, silent for longer than `devices.silent_after`.
        Silent => "silent",
        /// No open session.
        Offline => "offline",
    }
}

label_values! {
    /// Where the last self-update stands (`edge-gateway update apply`).
    pub enum UpdatePhase {
        /// Staged and verified; the gateway is switching to it.
        Trying => "trying",
        /// The new version started; its probation runs.
        Started => "started",
        /// The new version ran through its probation.
        Committed => "committed",
        /// The new version was not ready in time or exited: the previous one runs again.
        RolledBack => "rolled_back",
        /// `data_dir/update/state.json` cannot be read (permissions, damage).
        Unreadable => "unreadable",
    }
}
