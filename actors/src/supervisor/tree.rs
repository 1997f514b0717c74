//! Builds the supervision tree from the config and `supervision.toml`.
//!
//! ```text
//! root ─┬─ storage      StorageActor (the only writer of the store)
//!       ├─ forwarders   Supervisor ─┬ forwarder:<sink> ForwarderActor, one per sink
//!       │                          └ archive           ArchiveActor (root crate), if enabled
//!       ├─ sessions     SessionsActor (the open MQTT sessions: one entry per connection)
//!       ├─ rotation     RotationActor (reloads TLS, ACL and password files; watches expiry)
//!       └─ devices      DevicesActor (online/offline/silent status, devices.redb/.sqlite)
//! ```

use std::sync::Arc;

use ractor::Actor;
use tokio::sync::watch;

use super::{ChildPolicy, ChildSpec, RootChild, StartFn, SupervisionConfig, Supervisor, SupervisorArgs, SupervisorPolicy, start_fn};
use crate::devices::{DevicesActor, DevicesArgs, DevicesMsg, DevicesPolicy, LiveSessions};
use crate::forwarder::{ForwarderActor, ForwarderArgs, LiveSink};
use crate::health::Health;
use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::rotation::{Reloadable, RotationActor, RotationArgs, RotationMsg, RotationPolicy};
use crate::session::{SessionsActor, SessionsMsg};
use crate::slot::ActorSlot;
use crate::storage::{SharedDb, StorageActor, StorageArgs, StorageMsg, StoragePolicy, Store};

/// One sink's forwarder: its name, limits and the I/O half the root crate built.
#[derive(Clone)]
pub struct SinkSpec {
    /// Unique name: cursor key in the store, metric label, child name `forwarder:<name>`.
    pub name: String,
    /// Where batches go, with batching, backoff and stall detection (replaceable by a reload).
    pub live: LiveSink,
}

/// Everything the tree's actors are built from.
#[derive(Clone)]
pub struct TreeInputs {
    /// The open store.
    pub store: Store,
    /// Prefix of idempotency keys.
    pub gateway_id: String,
    /// Quota, TTL, batching.
    pub storage_policy: StoragePolicy,
    /// Sinks with their built I/O halves.
    pub sinks: Vec<SinkSpec>,
    /// Other consumers of the store with cursors of their own (the archive), started by the
    /// root crate under the forwarders supervisor with the forwarders' child policy: child
    /// name and start function.
    pub consumers: Vec<(String, StartFn)>,
    /// Metrics handles.
    pub metrics: Metrics,
    /// Readiness.
    pub health: Health,
    /// Next unassigned seq, published by the storage actor.
    pub committed: Arc<watch::Sender<u64>>,
    /// Where the current storage actor is found.
    pub storage: ActorSlot<StorageMsg>,
    /// Where the current sessions actor is found.
    pub sessions: ActorSlot<SessionsMsg>,
    /// Files the rotation actor keeps current (TLS sets, ACL, passwords).
    pub reloadables: Vec<Arc<dyn Reloadable>>,
    /// Debounce, expiry warnings, renewal.
    pub rotation_policy: RotationPolicy,
    /// Where the current rotation actor is found.
    pub rotation: ActorSlot<RotationMsg>,
    /// Forwarder progress, read by the watchdog.
    pub liveness: Liveness,
    /// The device status file (`devices.redb` or `devices.sqlite`), opened once.
    pub devices_db: SharedDb,
    /// Silent detection and persistence of device status.
    pub devices_policy: DevicesPolicy,
    /// Where the current device health actor is found.
    pub devices: ActorSlot<DevicesMsg>,
    /// Open sessions per identity, kept by ingress.
    pub live_sessions: LiveSessions,
}

/// The root supervisor's arguments.
pub fn root_args(sup: &SupervisionConfig, inputs: &TreeInputs) -> SupervisorArgs {
    let children = sup
        .root_children
        .iter()
        .map(|(child, policy)| match child {
            RootChild::Storage => storage_spec(policy, inputs),
            RootChild::Forwarders => forwarders_spec(policy, &sup.forwarders, &sup.forwarder, inputs),
            RootChild::Sessions => sessions_spec(policy, inputs),
            RootChild::Rotation => rotation_spec(policy, inputs),
            RootChild::Devices => devices_spec(policy, inputs),
        })
        .collect();
    supervisor_args("root", sup.root.clone(), children, inputs)
}

fn supervisor_args(path: &str, policy: SupervisorPolicy, children: Vec<ChildSpec>, inputs: &TreeInputs) -> SupervisorArgs {
    SupervisorArgs { path: path.to_string(), policy, children, metrics: inputs.metrics.clone(), health: inputs.health.clone() }
}

fn storage_spec(policy: &ChildPolicy, inputs: &TreeInputs) -> ChildSpec {
    let inputs = inputs.clone();
    ChildSpec {
        name: RootChild::Storage.as_str().into(),
        restart: policy.restart,
        shutdown: policy.shutdown,
        start: start_fn(move |sup| {
            let inputs = inputs.clone();
            async move {
                let args = StorageArgs {
                    store: inputs.store.clone(),
                    gateway_id: inputs.gateway_id.clone(),
                    policy: inputs.storage_policy.clone(),
                    metrics: inputs.metrics.clone(),
                    health: inputs.health.clone(),
                    committed: inputs.committed.clone(),
                    clock: crate::storage::now_ms,
                };
                let (actor, _) = StorageActor::spawn_linked(None, StorageActor, args, sup).await?;
                inputs.storage.set(actor.clone());
                Ok(actor.get_cell())
            }
        }),
    }
}

fn forwarders_spec(policy: &ChildPolicy, sup_policy: &SupervisorPolicy, child: &ChildPolicy, inputs: &TreeInputs) -> ChildSpec {
    let mut children: Vec<ChildSpec> = inputs.sinks.iter().map(|spec| forwarder_spec(child, spec, inputs)).collect();
    children.extend(inputs.consumers.iter().map(|(name, start)| ChildSpec {
        name: name.clone(),
        restart: child.restart,
        shutdown: child.shutdown,
        start: start.clone(),
    }));
    let args = (sup_policy.clone(), children, inputs.clone());
    ChildSpec {
        name: RootChild::Forwarders.as_str().into(),
        restart: policy.restart,
        shutdown: policy.shutdown,
        start: start_fn(move |sup| {
            let (policy, children, inputs) = args.clone();
            async move {
                let args = supervisor_args("root/forwarders", policy, children, &inputs);
                let (actor, _) = Supervisor::spawn_linked(None, Supervisor, args, sup).await?;
                Ok(actor.get_cell())
            }
        }),
    }
}

fn forwarder_spec(policy: &ChildPolicy, spec: &SinkSpec, inputs: &TreeInputs) -> ChildSpec {
    let (spec, inputs) = (spec.clone(), inputs.clone());
    ChildSpec {
        name: format!("forwarder:{}", spec.name),
        restart: policy.restart,
        shutdown: policy.shutdown,
        start: start_fn(move |sup| {
            let args = ForwarderArgs {
                name: spec.name.clone(),
                live: spec.live.clone(),
                store: inputs.store.clone(),
                storage: inputs.storage.clone(),
                committed: inputs.committed.subscribe(),
                metrics: inputs.metrics.clone(),
                liveness: inputs.liveness.clone(),
            };
            async move { Ok(ForwarderActor::spawn_linked(None, ForwarderActor, args, sup).await?.0.get_cell()) }
        }),
    }
}

fn sessions_spec(policy: &ChildPolicy, inputs: &TreeInputs) -> ChildSpec {
    let inputs = inputs.clone();
    ChildSpec {
        name: RootChild::Sessions.as_str().into(),
        restart: policy.restart,
        shutdown: policy.shutdown,
        start: start_fn(move |sup| {
            let inputs = inputs.clone();
            async move {
                let (actor, _) = SessionsActor::spawn_linked(None, SessionsActor, (), sup).await?;
                inputs.sessions.set(actor.clone());
                Ok(actor.get_cell())
            }
        }),
    }
}

fn rotation_spec(policy: &ChildPolicy, inputs: &TreeInputs) -> ChildSpec {
    let inputs = inputs.clone();
    ChildSpec {
        name: RootChild::Rotation.as_str().into(),
        restart: policy.restart,
        shutdown: policy.shutdown,
        start: start_fn(move |sup| {
            let inputs = inputs.clone();
            async move {
                let p = &inputs.rotation_policy;
                let args = RotationArgs {
                    targets: inputs.reloadables.clone(),
                    metrics: inputs.metrics.clone(),
                    renewal: p.renewal.clone(),
                    debounce: p.debounce,
                    check_every: p.check_every,
                };
                let (actor, _) = RotationActor::spawn_linked(None, RotationActor, args, sup).await?;
                inputs.rotation.set(actor.clone());
                Ok(actor.get_cell())
            }
        }),
    }
}

fn devices_spec(policy: &ChildPolicy, inputs: &TreeInputs) -> ChildSpec {
    let inputs = inputs.clone();
    ChildSpec {
        name: RootChild::Devices.as_str().into(),
        restart: policy.restart,
        shutdown: policy.shutdown,
        start: start_fn(move |sup| {
            let inputs = inputs.clone();
            async move {
                let args = DevicesArgs {
                    db: inputs.devices_db.clone(),
                    metrics: inputs.metrics.clone(),
                    silent_after: inputs.devices_policy.silent_after,
                    persist_every: inputs.devices_policy.persist_every,
                    live: inputs.live_sessions.clone(),
                };
                let (actor, _) = DevicesActor::spawn_linked(None, DevicesActor, args, sup).await?;
                inputs.devices.set(actor.clone());
                Ok(actor.get_cell())
            }
        }),
    }
}
