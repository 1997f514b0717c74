//! `supervision.toml`: the policies of the supervision tree, parsed and validated.
//!
//! Every problem is collected and named by its dotted key (`root.children[1].restart: ...`).

use std::time::Duration;

use serde::Deserialize;

use crate::backoff::Backoff;

/// The children of the root. They can be declared in any order that starts with `storage`
/// (the others depend on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RootChild {
    /// The storage actor, the only writer of the store.
    Storage,
    /// The supervisor of the forwarders, one per sink.
    Forwarders,
    /// The sessions actor: the open MQTT sessions, one entry per connection.
    Sessions,
    /// The cert-rotation actor.
    Rotation,
    /// The device health actor.
    Devices,
}

impl RootChild {
    /// Every root child, in the default start order.
    pub const ALL: [RootChild; 5] =
        [RootChild::Storage, RootChild::Forwarders, RootChild::Sessions, RootChild::Rotation, RootChild::Devices];

    /// The name in `supervision.toml` and in child paths (`root/<name>`).
    pub fn as_str(self) -> &'static str {
        match self {
            RootChild::Storage => "storage",
            RootChild::Forwarders => "forwarders",
            RootChild::Sessions => "sessions",
            RootChild::Rotation => "rotation",
            RootChild::Devices => "devices",
        }
    }

    /// The child named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<RootChild> {
        RootChild::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// Which children restart when one exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Only the exited child.
    OneForOne,
    /// Every child: the others are stopped (in reverse order) and all restart in order.
    OneForAll,
    /// The exited child and every child declared after it.
    RestForOne,
}

/// When a child is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Restart {
    /// Always.
    Permanent,
    /// Only after an abnormal exit (failure, panic, kill).
    Transient,
    /// Never.
    Temporary,
}

/// How one supervisor treats its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorPolicy {
    /// Which children restart together.
    pub strategy: Strategy,
    /// Restarts allowed within `period` before giving up.
    pub intensity: u32,
    /// The sliding window for `intensity`.
    pub period: Duration,
    /// Delay bounds between an exit and the restart.
    pub backoff: Backoff,
}

/// How a supervisor treats one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildPolicy {
    /// When it is restarted.
    pub restart: Restart,
    /// How long a graceful stop may take before the child is killed.
    pub shutdown: Duration,
}

/// The validated contents of `supervision.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisionConfig {
    /// The root supervisor.
    pub root: SupervisorPolicy,
    /// The root's children in start order, each with its policy.
    pub root_children: Vec<(RootChild, ChildPolicy)>,
    /// The supervisor of the forwarders (one child per sink).
    pub forwarders: SupervisorPolicy,
    /// The policy of every forwarder.
    pub forwarder: ChildPolicy,
    /// Sections read but no longer used, each with why; the gateway logs them at WARN.
    pub ignored: Vec<String>,
}

/// Why a `[sessions]` section (an older file) is not read.
const IGNORED_SESSIONS: &str = "[sessions]: ignored (sessions are entries of the root child `sessions`, never restarted: a device \
     reconnects by itself); remove the section";

/// The file shipped in the repository, embedded as the default.
pub const DEFAULT_SUPERVISION_TOML: &str = include_str!("../../../supervision.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    root: RawSupervisor,
    forwarders: RawSupervisor,
    /// Older files gave sessions a supervisor of their own; such a copy still parses.
    sessions: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSupervisor {
    strategy: Strategy,
    intensity: u32,
    period_secs: u64,
    backoff_initial_ms: u64,
    backoff_max_ms: u64,
    #[serde(default)]
    children: Vec<RawChild>,
    child: Option<RawChild>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChild {
    name: Option<String>,
    restart: Restart,
    shutdown_ms: u64,
}

impl SupervisionConfig {
    /// Parse and validate; `Err` holds every problem, each starting with its dotted key.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let raw: RawFile = toml::from_str(text).map_err(|e| vec![crate::tomlkey::describe(text, &e)])?;
        let mut errors = Vec::new();
        let root = supervisor("root", &raw.root, &mut errors);
        let forwarders = supervisor("forwarders", &raw.forwarders, &mut errors);
        let root_children = root_children(&raw.root, &mut errors);
        no_children("forwarders", &raw.forwarders, &mut errors);
        let forwarder = template("forwarders", &raw.forwarders, &mut errors);
        if raw.root.child.is_some() {
            errors.push("root.child: the root has named children; use [[root.children]]".into());
        }
        let ignored = raw.sessions.iter().map(|_| IGNORED_SESSIONS.to_string()).collect();
        match (errors.is_empty(), root, forwarders, forwarder) {
            (true, Some(root), Some(forwarders), Some(forwarder)) => Ok(Self { root, root_children, forwarders, forwarder, ignored }),
            _ => Err(errors),
        }
    }

    /// The embedded default.
    pub fn default_config() -> Self {
        Self::parse(DEFAULT_SUPERVISION_TOML).expect("the embedded supervision.toml is valid")
    }
}

fn supervisor(key: &str, raw: &RawSupervisor, errors: &mut Vec<String>) -> Option<SupervisorPolicy> {
    let before = errors.len();
    if raw.period_secs == 0 {
        errors.push(format!("{key}.period_secs: must be > 0"));
    }
    if raw.backoff_initial_ms == 0 {
        errors.push(format!("{key}.backoff_initial_ms: must be > 0"));
    }
    if raw.backoff_max_ms < raw.backoff_initial_ms {
        errors.push(format!("{key}.backoff_max_ms: must be >= backoff_initial_ms ({})", raw.backoff_initial_ms));
    }
    if raw.backoff_max_ms > 60_000 {
        errors.push(format!("{key}.backoff_max_ms: must be <= 60000"));
    }
    (errors.len() == before).then(|| SupervisorPolicy {
        strategy: raw.strategy,
        intensity: raw.intensity,
        period: Duration::from_secs(raw.period_secs),
        backoff: Backoff { initial: Duration::from_millis(raw.backoff_initial_ms), max: Duration::from_millis(raw.backoff_max_ms) },
    })
}

fn child(key: &str, raw: &RawChild, errors: &mut Vec<String>) -> Option<ChildPolicy> {
    if raw.shutdown_ms == 0 || raw.shutdown_ms > 600_000 {
        errors.push(format!("{key}.shutdown_ms: must be between 1 and 600000"));
        return None;
    }
    Some(ChildPolicy { restart: raw.restart, shutdown: Duration::from_millis(raw.shutdown_ms) })
}

fn root_children(raw: &RawSupervisor, errors: &mut Vec<String>) -> Vec<(RootChild, ChildPolicy)> {
    let mut out = Vec::new();
    for (i, c) in raw.children.iter().enumerate() {
        let key = format!("root.children[{i}]");
        let Some(name) = &c.name else {
            errors.push(format!("{key}.name: missing"));
            continue;
        };
        let Some(root_child) = RootChild::from_name(name) else {
            let expected: Vec<&str> = RootChild::ALL.iter().map(|c| c.as_str()).collect();
            errors.push(format!("{key}.name: unknown child \"{name}\" (expected one of {expected:?})"));
            continue;
        };
        if out.iter().any(|(n, _)| *n == root_child) {
            errors.push(format!("{key}.name: \"{name}\" is declared twice"));
            continue;
        }
        if let Some(policy) = child(&key, c, errors) {
            out.push((root_child, policy));
        }
    }
    for name in RootChild::ALL.map(RootChild::as_str) {
        if !raw.children.iter().any(|c| c.name.as_deref() == Some(name)) {
            errors.push(format!("root.children: child \"{name}\" is missing"));
        }
    }
    if raw.children.first().and_then(|c| c.name.as_deref()).is_some_and(|n| n != "storage") {
        errors.push("root.children[0].name: must be \"storage\" (the other children depend on it)".into());
    }
    out
}

fn no_children(key: &str, raw: &RawSupervisor, errors: &mut Vec<String>) {
    if !raw.children.is_empty() {
        errors.push(format!("{key}.children: children are created at run time; configure them with [{key}.child]"));
    }
}

fn template(key: &str, raw: &RawSupervisor, errors: &mut Vec<String>) -> Option<ChildPolicy> {
    let Some(c) = &raw.child else {
        errors.push(format!("{key}.child: missing"));
        return None;
    };
    if c.name.is_some() {
        errors.push(format!("{key}.child.name: not allowed (children are named at run time)"));
    }
    child(&format!("{key}.child"), c, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_is_valid() {
        let cfg = SupervisionConfig::default_config();
        assert_eq!(cfg.root_children.iter().map(|(n, _)| *n).collect::<Vec<_>>(), RootChild::ALL);
        assert!(cfg.ignored.is_empty(), "{:?}", cfg.ignored);
    }

    #[test]
    fn every_problem_is_named_by_its_dotted_key() {
        let text =
            DEFAULT_SUPERVISION_TOML.replace("period_secs = 10", "period_secs = 0").replacen("shutdown_ms = 5000", "shutdown_ms = 0", 1);
        let errors = SupervisionConfig::parse(&text).unwrap_err();
        let joined = errors.join("\n");
        assert!(joined.contains("root.period_secs: must be > 0"), "{joined}");
        assert!(joined.contains("root.children[0].shutdown_ms"), "{joined}");
        assert!(errors.len() >= 2, "{joined}");
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name() {
        let text = DEFAULT_SUPERVISION_TOML.replacen("intensity =", "intensty = 3\nintensity =", 1);
        let errors = SupervisionConfig::parse(&text).unwrap_err();
        assert!(errors[0].contains("intensty"), "{errors:?}");
    }

    #[test]
    fn a_missing_root_child_is_refused() {
        let text = DEFAULT_SUPERVISION_TOML.replace("name = \"sessions\"", "name = \"storage\"");
        let errors = SupervisionConfig::parse(&text).unwrap_err().join("\n");
        assert!(errors.contains("declared twice"), "{errors}");
        assert!(errors.contains("child \"sessions\" is missing"), "{errors}");
    }

    #[test]
    fn an_older_file_with_a_sessions_supervisor_still_parses_and_says_it_is_ignored() {
        let text = format!(
            "{DEFAULT_SUPERVISION_TOML}\n[sessions]\nstrategy = \"one_for_one\"\nintensity = 1000\nperiod_secs = 10\n\
             backoff_initial_ms = 1\nbackoff_max_ms = 1\n\n[sessions.child]\nrestart = \"temporary\"\nshutdown_ms = 1000\n"
        );
        let cfg = SupervisionConfig::parse(&text).expect("parses");
        assert_eq!(cfg.ignored.len(), 1);
        assert!(cfg.ignored[0].starts_with("[sessions]: ignored"), "{:?}", cfg.ignored);
        assert_eq!(cfg.root_children, SupervisionConfig::default_config().root_children);
    }
}
