//! Every metric the gateway exports, named in one place.
//!
//! Names follow Prometheus conventions: the registry adds the `gateway_` prefix, units are in the
//! name, and prometheus-client appends `_total` to counters. Labels have bounded cardinality:
//! reasons, kinds, sink names and child names come from code or config, never from a device.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;

#[macro_use]
mod labels;
mod archive;
mod sets;
mod zero;

pub use archive::*;
pub use labels::*;
pub use sets::*;

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Panics caught in the process (a task or thread that panicked is dropped, the gateway goes
/// on): process-wide, counted by the panic hook the gateway installs.
pub static PANICS: LazyLock<Counter> = LazyLock::new(Counter::default);

/// Handles to every metric; cheap to clone (each handle is an `Arc`).
#[derive(Clone)]
pub struct Metrics {
    /// Publishes accepted from devices, by protocol (`v3`, `v5`) and QoS.
    pub ingress_messages: Family<ProtocolQos, Counter>,
    /// Payload bytes of accepted publishes.
    pub ingress_bytes: Counter,
    /// Publishes or packets refused at ingress, by reason.
    pub ingress_rejected: Family<IngressLabels, Counter>,
    /// MQTT connections currently open.
    pub connections: Gauge,
    /// MQTT connections accepted since start.
    pub connections_opened: Counter,
    /// Connections closed by the gateway, by reason (session_ended, handler_error, protocol errors...).
    pub connections_closed: Family<IngressLabels, Counter>,
    /// Successful redb write transactions.
    pub commits: Counter,
    /// Failed redb write transactions (no PUBACK went out for their appends).
    pub commit_failures: Counter,
    /// Reopenings of the store after a failed write or fsync, by result (ok, failed).
    pub store_reopens: Family<AttemptLabels, Counter>,
    /// Appends per successful write transaction.
    pub commit_batch_size: Histogram,
    /// Time from `begin_write` to the end of `commit()`.
    pub commit_duration: Histogram,
    /// Time from receiving a QoS1 publish to having its PUBACK ready (after commit).
    pub puback_latency: Histogram,
    /// Messages stored and not yet delivered to every sink.
    pub backlog_messages: Gauge,
    /// Encoded record bytes stored and not yet delivered to every sink (the unit of storage.quota_bytes).
    pub backlog_bytes: Gauge,
    /// Age of the oldest stored message.
    pub backlog_oldest_age: Gauge<f64, AtomicU64>,
    /// Messages a sink acknowledged, by sink.
    pub forwarded_messages: Family<SinkLabels, Counter>,
    /// Batches a sink acknowledged, by sink.
    pub forwarded_batches: Family<SinkLabels, Counter>,
    /// Failed deliveries, by sink and kind (connect, timeout, io, http_5xx, http_429, http_auth,
    /// http_not_found, http_other, rejected, store).
    pub forward_errors: Family<DeliveryLabels, Counter>,
    /// Messages dropped by the store, by reason (quota, ttl, rejected_overflow).
    pub dropped_messages: Family<DropLabels, Counter>,
    /// Schema checks of payloads, by subject, version and result.
    pub schema_validations: Family<ValidationLabels, Counter>,
    /// Payloads that failed their schema, by subject, reason and the action taken.
    pub schema_failures: Family<SchemaFailureLabels, Counter>,
    /// Messages in the rejected table (kept apart: failed their schema, never forwarded).
    pub rejected_messages: Gauge,
    /// Messages handed to local subscribers, by the QoS they were sent with.
    pub deliveries: Family<QosLabels, Counter>,
    /// Messages not delivered to a local subscriber, by reason.
    pub deliveries_dropped: Family<DeliveryDropLabels, Counter>,
    /// 1 for the phase of the last self-update (all 0: none on record).
    pub update_phase: Family<UpdateLabels, Gauge>,
    /// Subscriptions (of connected clients and of persistent sessions).
    pub subscriptions: Gauge,
    /// Retained messages (topics with one).
    pub retained_messages: Gauge,
    /// Persistent sessions in the store (online and offline).
    pub sessions_persistent: Gauge,
    /// Deliveries queued in the store for persistent sessions (sent and not yet acknowledged,
    /// or waiting for their client).
    pub session_queued: Gauge,
    /// Messages moved to the dead-letter table, by sink.
    pub dead_letters: Family<SinkLabels, Counter>,
    /// Child restarts, by supervisor and child.
    pub actor_restarts: Family<ChildLabels, Counter>,
    /// Supervisors that gave up (intensity exceeded) and escalated, by supervisor.
    pub supervisor_escalations: Family<SupervisorLabels, Counter>,
    /// Time from a child's exit to its replacement running.
    pub restart_duration: HistogramFamily<ChildNameLabels>,
    /// Connections refused before any MQTT byte, by listener and reason (max_connections, rate_limited).
    pub connections_refused: Family<GateLabels, Counter>,
    /// Completed TLS handshakes with devices.
    pub tls_handshakes: Counter,
    /// Failed TLS handshakes, by reason (cert_expired, cert_revoked, cert_unknown_issuer, ...).
    pub tls_handshake_failures: Family<TlsLabels, Counter>,
    /// Refused authentications at CONNECT, by reason (bad_password, client_id_mismatch, ...).
    pub auth_failures: Family<AuthLabels, Counter>,
    /// Publishes and subscriptions refused by the ACL, by action and reason.
    pub acl_denied: Family<AclLabels, Counter>,
    /// Not-after time of every certificate in use, by certificate (server, ca, cloud_client...).
    pub cert_expiry: Family<CertLabels, Gauge>,
    /// Reloads of watched TLS/ACL/password files, by target and result (ok, rejected).
    pub reloads: Family<ReloadLabels, Counter>,
    /// Runs of the configured renewal command, by result (ok, failed).
    pub cert_renewals: Family<AttemptLabels, Counter>,
    /// Forwarders restarted by the watchdog for making no progress, by sink.
    pub forwarder_stalls: Family<SinkLabels, Counter>,
    /// Exits of supervised children (not sessions), by supervisor, child and reason: `failed`
    /// (error or panic), `killed`, `stopped` (another abnormal stop), `normal`.
    pub actor_exits: Family<ExitLabels, Counter>,
    /// Damaged stores moved aside at start (a fresh store was started instead).
    pub store_quarantines: Counter,
    /// Actions taken through the chaos admin API, by action (kill, stop, storage_faults).
    pub admin_actions: Family<AdminLabels, Counter>,
    /// Spans handed to the OTLP collector.
    pub trace_spans_exported: Counter,
    /// Spans dropped: export queue full, or the collector refused or was unreachable.
    pub trace_spans_dropped: Counter,
    /// Log records handed to the OTLP collector (`tracing.export_logs`).
    pub log_records_exported: Counter,
    /// Log records dropped: export queue full or export failed.
    pub log_records_dropped: Counter,
    /// Known devices by state (online, silent, offline).
    pub devices: Family<DeviceLabels, Gauge>,
    /// Time from receiving a message to its sink's acknowledgement, by sink.
    pub e2e_latency: HistogramFamily<SinkLabels>,
    /// Time from the device's own timestamp (when the message carries one) to the sink's
    /// acknowledgement, by sink.
    pub device_latency: HistogramFamily<SinkLabels>,
    /// The archive (retention tier).
    pub archive: ArchiveMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn e2e_histogram() -> Histogram {
    // 1 ms .. ~4.7 h (4^12 ms): a message may wait out a long cloud outage in the store.
    Histogram::new(exponential_buckets(0.001, 4.0, 13))
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~6.5 s
    Histogram::new(exponential_buckets(0.00005, 2.0, 18))
}

impl Metrics {
    /// Fresh, unregistered metrics.
    pub fn new() -> Self {
        Self {
            ingress_messages: Family::default(),
            ingress_bytes: Counter::default(),
            ingress_rejected: Family::default(),
            connections: Gauge::default(),
            connections_opened: Counter::default(),
            connections_closed: Family::default(),
            commits: Counter::default(),
            commit_failures: Counter::default(),
            store_reopens: Family::default(),
            commit_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            commit_duration: latency_histogram(),
            puback_latency: latency_histogram(),
            backlog_messages: Gauge::default(),
            backlog_bytes: Gauge::default(),
            backlog_oldest_age: Gauge::default(),
            forwarded_messages: Family::default(),
            forwarded_batches: Family::default(),
            forward_errors: Family::default(),
            dropped_messages: Family::default(),
            schema_validations: Family::default(),
            schema_failures: Family::default(),
            rejected_messages: Gauge::default(),
            deliveries: Family::default(),
            deliveries_dropped: Family::default(),
            update_phase: Family::default(),
            subscriptions: Gauge::default(),
            retained_messages: Gauge::default(),
            sessions_persistent: Gauge::default(),
            session_queued: Gauge::default(),
            dead_letters: Family::default(),
            actor_restarts: Family::default(),
            supervisor_escalations: Family::default(),
            restart_duration: Family::new_with_constructor(latency_histogram),
            connections_refused: Family::default(),
            tls_handshakes: Counter::default(),
            tls_handshake_failures: Family::default(),
            auth_failures: Family::default(),
            acl_denied: Family::default(),
            cert_expiry: Family::default(),
            reloads: Family::default(),
            cert_renewals: Family::default(),
            forwarder_stalls: Family::default(),
            devices: Family::default(),
            actor_exits: Family::default(),
            admin_actions: Family::default(),
            store_quarantines: Counter::default(),
            trace_spans_exported: Counter::default(),
            trace_spans_dropped: Counter::default(),
            log_records_exported: Counter::default(),
            log_records_dropped: Counter::default(),
            e2e_latency: Family::new_with_constructor(e2e_histogram),
            device_latency: Family::new_with_constructor(e2e_histogram),
            archive: ArchiveMetrics::default(),
        }
    }

    /// Register everything under the `gateway_` prefix.
    pub fn register(&self, registry: &mut Registry, version: &str) {
        let r = registry.sub_registry_with_prefix("gateway");
        // A gauge, not an OpenMetrics `info`: promtool's text parser does not know `info`.
        let build: Family<BuildLabels, Gauge> = Family::default();
        build.get_or_create(&BuildLabels { version: version.to_string() }).set(1);
        r.register("build_info", "Build information; always 1", build);
        r.register("ingress_messages", "Publishes accepted from devices", self.ingress_messages.clone());
        r.register_with_unit("ingress", "Payload bytes of accepted publishes", Unit::Bytes, self.ingress_bytes.clone());
        r.register("ingress_rejected", "Publishes or packets refused at ingress, by reason", self.ingress_rejected.clone());
        r.register("mqtt_connections", "MQTT connections currently open", self.connections.clone());
        r.register("mqtt_connections_opened", "MQTT connections accepted", self.connections_opened.clone());
        r.register("mqtt_connections_closed", "MQTT connections closed by the gateway, by reason", self.connections_closed.clone());
        r.register("storage_commits", "Successful redb write transactions", self.commits.clone());
        r.register("storage_commit_failures", "Failed redb write transactions", self.commit_failures.clone());
        r.register("panics", "Panics caught (the task that panicked is dropped; the gateway goes on)", PANICS.clone());
        r.register("storage_reopens", "Store reopenings after a failed write or fsync, by result", self.store_reopens.clone());
        r.register(
            "storage_commit_batch_size",
            "Operations (appends, acks, dead letters, TTL sweeps) per write transaction",
            self.commit_batch_size.clone(),
        );
        r.register_with_unit(
            "storage_commit_duration",
            "Write transaction time including fsync",
            Unit::Seconds,
            self.commit_duration.clone(),
        );
        r.register_with_unit(
            "puback_latency",
            "Time from an MQTT I/O thread handing a publish to the storage actor to its commit (when a QoS 1 PUBACK can go out)",
            Unit::Seconds,
            self.puback_latency.clone(),
        );
        r.register("backlog_messages", "Messages stored and not yet delivered to every sink", self.backlog_messages.clone());
        r.register_with_unit(
            "backlog",
            "Encoded record bytes stored and not yet delivered to every sink",
            Unit::Bytes,
            self.backlog_bytes.clone(),
        );
        r.register_with_unit("backlog_oldest_age", "Age of the oldest stored message", Unit::Seconds, self.backlog_oldest_age.clone());
        r.register("forwarded_messages", "Messages acknowledged by a sink", self.forwarded_messages.clone());
        r.register("forwarded_batches", "Batches acknowledged by a sink", self.forwarded_batches.clone());
        r.register("forward_errors", "Failed deliveries by sink and kind", self.forward_errors.clone());
        r.register("dropped_messages", "Messages dropped by the store, by reason", self.dropped_messages.clone());
        r.register("dead_letters", "Messages moved to the dead-letter table, by sink", self.dead_letters.clone());
        r.register("deliveries", "Messages handed to local subscribers, by QoS", self.deliveries.clone());
        r.register("deliveries_dropped", "Messages not delivered to a local subscriber, by reason", self.deliveries_dropped.clone());
        r.register(
            "update_phase",
            "1 for the phase of the last self-update (edge-gateway update apply); all 0 when none is on record",
            self.update_phase.clone(),
        );
        r.register("subscriptions", "Subscriptions of connected clients and persistent sessions", self.subscriptions.clone());
        r.register("retained_messages", "Topics with a retained message", self.retained_messages.clone());
        r.register("sessions_persistent", "Persistent sessions in the store", self.sessions_persistent.clone());
        r.register("session_queued_messages", "Deliveries queued in the store for persistent sessions", self.session_queued.clone());
        r.register("schema_validations", "Schema checks of payloads, by subject, version and result", self.schema_validations.clone());
        r.register("schema_failures", "Payloads that failed their schema, by subject, reason and action", self.schema_failures.clone());
        r.register(
            "schema_rejected_messages",
            "Messages kept apart in the rejected table (failed their schema, never forwarded)",
            self.rejected_messages.clone(),
        );
        r.register("actor_restarts", "Child restarts by supervisor and child", self.actor_restarts.clone());
        r.register("supervisor_escalations", "Supervisors that exceeded their restart intensity", self.supervisor_escalations.clone());
        r.register_with_unit(
            "actor_restart_duration",
            "Time from a child's exit to its replacement running",
            Unit::Seconds,
            self.restart_duration.clone(),
        );
        self.register_trust(r);
        self.archive.register(r);
    }

    fn register_trust(&self, r: &mut Registry) {
        r.register("connections_refused", "Connections refused before MQTT, by listener and reason", self.connections_refused.clone());
        r.register("tls_handshakes", "Completed TLS handshakes with devices", self.tls_handshakes.clone());
        r.register("tls_handshake_failures", "Failed TLS handshakes with devices, by reason", self.tls_handshake_failures.clone());
        r.register("auth_failures", "Refused authentications at CONNECT, by reason", self.auth_failures.clone());
        r.register("acl_denied", "Publishes and subscriptions refused by the ACL, by action and reason", self.acl_denied.clone());
        r.register_with_unit(
            "certificate_expiry_timestamp",
            "Not-after time of each certificate in use (unix time)",
            Unit::Seconds,
            self.cert_expiry.clone(),
        );
        r.register("reloads", "Reloads of watched TLS, ACL and password files, by target and result", self.reloads.clone());
        r.register("cert_renewals", "Runs of the configured certificate renewal command, by result", self.cert_renewals.clone());
        r.register_with_unit(
            "end_to_end_latency",
            "Time from receiving a message to its sink's acknowledgement",
            Unit::Seconds,
            self.e2e_latency.clone(),
        );
        r.register_with_unit(
            "device_to_cloud_latency",
            "Time from the device's own timestamp (user property or JSON field ts) to the sink's acknowledgement",
            Unit::Seconds,
            self.device_latency.clone(),
        );
        r.register("devices", "Known devices by state (online, silent, offline)", self.devices.clone());
        r.register("storage_quarantines", "Damaged stores moved aside at start", self.store_quarantines.clone());
        r.register("admin_actions", "Actions taken through the chaos admin API, by action", self.admin_actions.clone());
        r.register("trace_spans_exported", "Spans handed to the OTLP collector", self.trace_spans_exported.clone());
        r.register("log_records_exported", "Log records handed to the OTLP collector", self.log_records_exported.clone());
        r.register(
            "log_records_dropped",
            "Log records not exported: export queue full or the collector failed",
            self.log_records_dropped.clone(),
        );
        r.register(
            "trace_spans_dropped",
            "Spans dropped (export queue full, collector down or refusing)",
            self.trace_spans_dropped.clone(),
        );
        r.register("actor_exits", "Exits of supervised children by supervisor, child and reason", self.actor_exits.clone());
        r.register(
            "forwarder_stalls",
            "Forwarders restarted for making no progress while their sink was reachable",
            self.forwarder_stalls.clone(),
        );
    }

    /// Count one refused publish or packet.
    pub fn reject(&self, reason: IngressReason) {
        self.ingress_rejected.get_or_create(&IngressLabels { reason }).inc();
    }
}
