//! The registry in use: loaded at start, reloaded by the rotation actor when anything in the
//! folder changes (a bad registry is refused with every problem named and the old one stays),
//! and the one place payload checks are counted and logged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use edge_gateway_actors::metrics::{Metrics, SchemaAction, SchemaFailure, SchemaFailureLabels, ValidationLabels, ValidationResult};
use edge_gateway_actors::rotation::{CertExpiry, ReloadError, Reloadable};
use prometheus_client::metrics::counter::Counter;

use super::RegistryError;
use super::binding::Action;
use super::check::Verdict;
use super::registry::Registry;
use super::tag::Carrier;
use crate::throttle::Throttle;
use crate::trust::acl::Who;
use crate::trust::tls::Swap;

/// A registry with its per-version counters resolved once (no label allocation per message).
struct Loaded {
    registry: Registry,
    /// subject -> version -> [valid, invalid].
    counters: BTreeMap<String, BTreeMap<u32, [Counter; 2]>>,
}

/// The schema checks of the whole gateway; cheap to share (`Arc`).
pub struct Schemas {
    /// `None`: no registry configured, nothing is checked.
    dir: Option<PathBuf>,
    current: Swap<Loaded>,
    metrics: Metrics,
}

/// A checked payload and what is done with it.
#[derive(Debug, Clone)]
pub struct Checked {
    /// What the check found.
    pub verdict: Verdict,
    /// For a failure: what happens (a refusal the protocol cannot carry is kept apart).
    pub action: Option<SchemaAction>,
}

impl Schemas {
    /// Load the registry in `dir` (none: an empty registry that binds nothing).
    pub fn load(dir: Option<&Path>, metrics: Metrics) -> Result<Arc<Schemas>, RegistryError> {
        let registry = match dir {
            Some(d) => Registry::load(d)?,
            None => Registry::default(),
        };
        let loaded = Loaded::new(registry, &metrics);
        Ok(Arc::new(Schemas { dir: dir.map(Path::to_path_buf), current: Swap::new(loaded), metrics }))
    }

    /// Whether a registry is configured (else [`Schemas::check`] is never needed).
    pub fn enabled(&self) -> bool {
        self.dir.is_some()
    }

    /// Subjects and bindings in use, for `GET /api/schemas`.
    pub fn describe(&self) -> serde_json::Value {
        let mut out = self.current.get().registry.describe();
        out["dir"] = self.dir.as_ref().map(|d| d.display().to_string()).into();
        out
    }

    /// Check one payload (counted; a failure logged, at most once a second). `can_refuse`:
    /// the protocol can refuse this one message (MQTT 5, QoS 1).
    pub fn check(&self, who: &Who, msg: &Carrier<'_>, payload: &[u8], can_refuse: bool) -> Option<Checked> {
        let loaded = self.current.get();
        let verdict = loaded.registry.check(who, msg, payload)?;
        let valid = verdict.failure.is_none();
        match loaded.counters.get(&verdict.tag.subject).and_then(|v| v.get(&verdict.tag.version)) {
            Some([ok, bad]) => if valid { ok } else { bad }.inc(),
            // A version the registry does not have (a device named it): one series, whatever
            // number the device chose, so a device cannot grow the label set.
            None => {
                let labels =
                    ValidationLabels { subject: verdict.tag.subject.clone(), version: "unknown".into(), result: ValidationResult::Invalid };
                self.metrics.schema_validations.get_or_create(&labels).inc()
            }
        };
        let Some(reason) = verdict.failure else { return Some(Checked { verdict, action: None }) };
        let action = match verdict.action {
            Action::Refuse if can_refuse => SchemaAction::Refused,
            Action::Refuse | Action::KeepApart => SchemaAction::KeptApart,
            Action::Tag => SchemaAction::Tagged,
        };
        self.metrics.schema_failures.get_or_create(&SchemaFailureLabels { subject: verdict.tag.subject.clone(), reason, action }).inc();
        if FAILURES.allow() {
            tracing::warn!(
                device = who.identity,
                topic = msg.topic,
                subject = %verdict.tag.subject,
                version = verdict.tag.version,
                %reason,
                %action,
                error = verdict.first_error(),
                "Payload failed its schema (more this second are only counted)."
            );
        }
        Some(Checked { verdict, action: Some(action) })
    }
}

impl Loaded {
    fn new(registry: Registry, metrics: &Metrics) -> Loaded {
        let mut counters = BTreeMap::new();
        for (name, subject) in &registry.subjects {
            // Every failure series of a known subject exists from the load, at 0.
            for &reason in SchemaFailure::ALL {
                for &action in SchemaAction::ALL {
                    drop(metrics.schema_failures.get_or_create(&SchemaFailureLabels { subject: name.clone(), reason, action }));
                }
            }
            let per_version: &mut BTreeMap<u32, [Counter; 2]> = counters.entry(name.clone()).or_default();
            for version in subject.versions.keys() {
                let handle = |result| {
                    let labels = ValidationLabels { subject: name.clone(), version: version.to_string(), result };
                    metrics.schema_validations.get_or_create(&labels).clone()
                };
                per_version.insert(*version, [handle(ValidationResult::Valid), handle(ValidationResult::Invalid)]);
            }
        }
        Loaded { registry, counters }
    }
}

impl Reloadable for Schemas {
    fn name(&self) -> String {
        "schemas".into()
    }

    fn paths(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    fn folders(&self) -> Vec<PathBuf> {
        self.dir.iter().cloned().collect()
    }

    fn reload(&self) -> Result<(), ReloadError> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let registry = Registry::load(dir)?;
        let problems = self.current.get().registry.changes_in_use(&registry);
        if !problems.is_empty() {
            return Err(RegistryError { dir: dir.clone(), problems }.into());
        }
        tracing::info!(dir = %dir.display(), subjects = registry.subjects.len(), bindings = registry.bindings.len(), "Schema registry loaded.");
        self.current.set(Loaded::new(registry, &self.metrics));
        Ok(())
    }

    fn expiry(&self) -> Vec<CertExpiry> {
        Vec::new()
    }
}

/// Failed payloads a device can send at will: one WARN line per second.
static FAILURES: Throttle = Throttle::new();
