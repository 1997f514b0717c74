//! The supervisor actor: starts children, watches their exits, restarts per policy.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent};

use super::spec::{Restart, Strategy, SupervisorPolicy};
use crate::health::Health;
use crate::metrics::{ChildLabels, ChildNameLabels, ExitLabels, ExitReason, Metrics, SupervisorLabels};

/// Starts one child linked to the supervisor whose cell it is given.
pub type StartFn = Arc<dyn Fn(ActorCell) -> Pin<Box<dyn Future<Output = Result<ActorCell, SpawnErr>> + Send>> + Send + Sync>;

/// Wrap an async closure as a [`StartFn`].
pub fn start_fn<F, Fut>(f: F) -> StartFn
where
    F: Fn(ActorCell) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ActorCell, SpawnErr>> + Send + 'static,
{
    Arc::new(move |sup| Box::pin(f(sup)))
}

/// One child as declared.
#[derive(Clone)]
pub struct ChildSpec {
    /// Name used in logs, metrics and health (`root/storage`). Bounded: not per device.
    pub name: String,
    /// When it is restarted.
    pub restart: Restart,
    /// Graceful stop budget before a kill.
    pub shutdown: Duration,
    /// How to start it (again).
    pub start: StartFn,
}

/// The supervisor (stateless handler).
pub struct Supervisor;

/// Start-up arguments.
pub struct SupervisorArgs {
    /// Path in the tree (`root`, `root/forwarders`), for logs and health.
    pub path: String,
    /// Strategy, intensity, backoff.
    pub policy: SupervisorPolicy,
    /// Static children, started in this order.
    pub children: Vec<ChildSpec>,
    /// Restart counters.
    pub metrics: Metrics,
    /// Child states for readiness.
    pub health: Health,
}

/// Messages to a supervisor.
pub enum SupervisorMsg {
    /// Start a dynamic child; a running child with the same `key` is stopped first (takeover).
    StartChild { spec: ChildSpec, key: Option<String>, reply: RpcReplyPort<Result<ActorCell, SpawnErr>> },
    /// A backoff elapsed: start the children with these order numbers if still down.
    RestartDue(Vec<u64>),
    /// Stop every child in reverse order, then stop.
    Shutdown(RpcReplyPort<()>),
}

struct Child {
    spec: ChildSpec,
    cell: Option<ActorCell>,
    key: Option<String>,
    /// When it went down, for the restart-duration histogram.
    down_since: Option<Instant>,
}

/// Children in start order plus indexes.
pub struct SupervisorState {
    args: SupervisorArgs,
    /// Order number -> child; iteration order is start order.
    children: BTreeMap<u64, Child>,
    next_order: u64,
    /// Running child -> order number. A child we stop ourselves is removed first, so its exit
    /// event is ignored.
    by_id: HashMap<ActorId, u64>,
    /// Dynamic child key (MQTT client id) -> order number.
    by_key: HashMap<String, u64>,
    /// Restart times within the current period.
    restarts: VecDeque<Instant>,
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(&self, myself: ActorRef<SupervisorMsg>, mut args: SupervisorArgs) -> Result<SupervisorState, ActorProcessingErr> {
        let specs = std::mem::take(&mut args.children);
        let _ = args.metrics.supervisor_escalations.get_or_create(&SupervisorLabels { supervisor: args.path.clone() });
        let mut state = SupervisorState {
            args,
            children: BTreeMap::new(),
            next_order: 0,
            by_id: HashMap::new(),
            by_key: HashMap::new(),
            restarts: VecDeque::new(),
        };
        for spec in specs {
            let order = state.add(spec, None);
            if let Err(e) = state.start_child(&myself, order).await {
                state.stop_all().await;
                return Err(format!("{}: cannot start child: {e}", state.args.path).into());
            }
        }
        tracing::info!(supervisor = %state.args.path, children = state.children.len(), "Supervisor started.");
        Ok(state)
    }

    async fn post_stop(&self, _myself: ActorRef<SupervisorMsg>, state: &mut SupervisorState) -> Result<(), ActorProcessingErr> {
        state.stop_all().await;
        state.args.health.remove_subtree(&state.args.path);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::StartChild { spec, key, reply } => state.on_start_child(&myself, spec, key, reply).await,
            SupervisorMsg::RestartDue(orders) => state.on_restart_due(&myself, orders).await,
            SupervisorMsg::Shutdown(reply) => {
                state.stop_all().await;
                myself.stop(Some("shutdown".into()));
                let _ = reply.send(());
                Ok(())
            }
        }
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        evt: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let abnormal = !matches!(reason.as_deref(), None | Some("normal") | Some("shutdown"));
                let kind = match reason.as_deref() {
                    _ if !abnormal => ExitReason::Normal,
                    Some("killed") => ExitReason::Killed,
                    _ => ExitReason::Stopped,
                };
                let cause = reason.unwrap_or_else(|| "normal".into());
                state.on_exit(&myself, cell.get_id(), (abnormal, kind), cause).await
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                state.on_exit(&myself, cell.get_id(), (true, ExitReason::Failed), err.to_string()).await
            }
            _ => Ok(()),
        }
    }
}

impl SupervisorState {
    fn add(&mut self, spec: ChildSpec, key: Option<String>) -> u64 {
        let order = self.next_order;
        self.next_order += 1;
        if let Some(k) = &key {
            self.by_key.insert(k.clone(), order);
        }
        if spec.restart != Restart::Temporary {
            self.zero_child_series(&spec.name);
        }
        self.children.insert(order, Child { spec, cell: None, key, down_since: None });
        order
    }

    /// A child's restart and exit series exist at 0 from its start (alerts on `rate()` and
    /// `increase()` work from the first scrape).
    fn zero_child_series(&self, child: &str) {
        let m = &self.args.metrics;
        let (supervisor, child) = (self.args.path.clone(), child.to_string());
        let _ = m.actor_restarts.get_or_create(&ChildLabels { supervisor: supervisor.clone(), child: child.clone() });
        let _ = m.restart_duration.get_or_create(&ChildNameLabels { child: child.clone() });
        for &reason in ExitReason::ALL {
            let _ = m.actor_exits.get_or_create(&ExitLabels { supervisor: supervisor.clone(), child: child.clone(), reason });
        }
    }

    fn child_path(&self, name: &str) -> String {
        format!("{}/{}", self.args.path, name)
    }

    async fn start_child(&mut self, myself: &ActorRef<SupervisorMsg>, order: u64) -> Result<ActorCell, SpawnErr> {
        let Some(child) = self.children.get(&order) else {
            return Err(SpawnErr::StartupFailed("child no longer declared".into()));
        };
        let start = child.spec.start.clone();
        let cell = start(myself.get_cell()).await?;
        let path = self.child_path(&child.spec.name);
        let (restart, name) = (child.spec.restart, child.spec.name.clone());
        if let Some(child) = self.children.get_mut(&order) {
            child.cell = Some(cell.clone());
            if let Some(since) = child.down_since.take() {
                let labels = ChildNameLabels { child: name };
                self.args.metrics.restart_duration.get_or_create(&labels).observe(since.elapsed().as_secs_f64());
            }
        }
        self.by_id.insert(cell.get_id(), order);
        if restart != Restart::Temporary {
            self.args.health.set_child(&path, Some(cell.clone()), restart == Restart::Permanent, false);
        }
        Ok(cell)
    }

    async fn on_start_child(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        spec: ChildSpec,
        key: Option<String>,
        reply: RpcReplyPort<Result<ActorCell, SpawnErr>>,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(old) = key.as_ref().and_then(|k| self.by_key.get(k).copied()) {
            tracing::info!(supervisor = %self.args.path, key = ?key, "Taking over: stopping the previous child with this key.");
            self.stop_child(old, "takeover").await;
            self.remove(old);
        }
        let order = self.add(spec, key);
        let result = self.start_child(myself, order).await;
        if result.is_err() {
            self.remove(order);
        }
        if reply.send(result).is_err() {
            // The caller gave up waiting (its connection is gone): do not keep an orphan.
            self.stop_child(order, "caller gone").await;
            self.remove(order);
        }
        Ok(())
    }

    fn remove(&mut self, order: u64) {
        if let Some(child) = self.children.remove(&order) {
            if let Some(k) = child.key
                && self.by_key.get(&k) == Some(&order)
            {
                self.by_key.remove(&k);
            }
            if let Some(cell) = child.cell {
                self.by_id.remove(&cell.get_id());
            }
        }
    }

    /// Stop one child gracefully within its shutdown budget, else kill it.
    async fn stop_child(&mut self, order: u64, reason: &str) {
        let Some(child) = self.children.get_mut(&order) else { return };
        let Some(cell) = child.cell.take() else { return };
        child.down_since = Some(Instant::now());
        self.by_id.remove(&cell.get_id());
        let (timeout, name, restart) = (child.spec.shutdown, child.spec.name.clone(), child.spec.restart);
        if cell.stop_and_wait(Some(reason.to_string()), Some(timeout)).await.is_err() {
            tracing::warn!(supervisor = %self.args.path, child = %name, timeout_ms = timeout.as_millis() as u64, "Child did not stop in time; killing it.");
            let _ = cell.kill_and_wait(Some(timeout)).await;
        }
        if restart != Restart::Temporary {
            self.args.health.set_child(&self.child_path(&name), None, restart == Restart::Permanent, false);
        }
    }

    /// Stop every child, last started first.
    async fn stop_all(&mut self) {
        let orders: Vec<u64> = self.children.keys().rev().copied().collect();
        for order in orders {
            self.stop_child(order, "shutdown").await;
        }
    }

    async fn on_exit(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        id: ActorId,
        (abnormal, kind): (bool, ExitReason),
        cause: String,
    ) -> Result<(), ActorProcessingErr> {
        let Some(order) = self.by_id.remove(&id) else { return Ok(()) };
        let Some(child) = self.children.get_mut(&order) else { return Ok(()) };
        if child.spec.restart != Restart::Temporary {
            let labels = ExitLabels { supervisor: self.args.path.clone(), child: child.spec.name.clone(), reason: kind };
            self.args.metrics.actor_exits.get_or_create(&labels).inc();
        }
        child.cell = None;
        child.down_since = Some(Instant::now());
        let (name, restart) = (child.spec.name.clone(), child.spec.restart);
        let restart_it = match restart {
            Restart::Permanent => true,
            Restart::Transient => abnormal,
            Restart::Temporary => false,
        };
        if restart != Restart::Temporary {
            self.args.health.set_child(&self.child_path(&name), None, restart == Restart::Permanent, false);
        }
        if !restart_it {
            if abnormal && restart != Restart::Temporary {
                tracing::warn!(supervisor = %self.args.path, child = %name, %cause, "Child exited abnormally; not restarted (temporary).");
            }
            self.remove(order);
            return Ok(());
        }
        tracing::warn!(supervisor = %self.args.path, child = %name, %cause, abnormal, "Child exited; restarting per policy.");
        self.plan_restart(myself, order).await
    }

    /// Count a restart against intensity; escalate, or stop the affected siblings and schedule
    /// the restart after the backoff.
    async fn plan_restart(&mut self, myself: &ActorRef<SupervisorMsg>, order: u64) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        let period = self.args.policy.period;
        while self.restarts.front().is_some_and(|t| now.duration_since(*t) > period) {
            self.restarts.pop_front();
        }
        self.restarts.push_back(now);
        if self.restarts.len() as u32 > self.args.policy.intensity {
            return self.escalate().await;
        }
        let affected: Vec<u64> = match self.args.policy.strategy {
            Strategy::OneForOne => vec![order],
            Strategy::OneForAll => self.children.keys().copied().collect(),
            Strategy::RestForOne => self.children.range(order..).map(|(k, _)| *k).collect(),
        };
        for &o in affected.iter().rev() {
            if o != order {
                self.stop_child(o, "sibling restart").await;
            }
        }
        let mut due = Vec::new();
        for o in affected {
            let Some(child) = self.children.get(&o) else { continue };
            if child.spec.restart == Restart::Temporary {
                self.remove(o);
                continue;
            }
            let name = child.spec.name.clone();
            self.args.metrics.actor_restarts.get_or_create(&ChildLabels { supervisor: self.args.path.clone(), child: name.clone() }).inc();
            self.args.health.set_child(&self.child_path(&name), None, child.spec.restart == Restart::Permanent, true);
            due.push(o);
        }
        let delay = self.args.policy.backoff.ceiling(self.restarts.len() as u32);
        tracing::info!(supervisor = %self.args.path, delay_ms = delay.as_millis() as u64, children = due.len(), "Restart scheduled.");
        myself.send_after(delay, move || SupervisorMsg::RestartDue(due));
        Ok(())
    }

    async fn on_restart_due(&mut self, myself: &ActorRef<SupervisorMsg>, orders: Vec<u64>) -> Result<(), ActorProcessingErr> {
        for order in orders {
            let down = self.children.get(&order).is_some_and(|c| c.cell.is_none());
            if !down {
                continue;
            }
            if let Err(e) = self.start_child(myself, order).await {
                let name = self.children.get(&order).map(|c| c.spec.name.clone()).unwrap_or_default();
                tracing::warn!(supervisor = %self.args.path, child = %name, error = %e, "Restart failed; retrying per policy.");
                return self.plan_restart(myself, order).await;
            }
        }
        Ok(())
    }

    async fn escalate(&mut self) -> Result<(), ActorProcessingErr> {
        let path = self.args.path.clone();
        tracing::error!(supervisor = %path, intensity = self.args.policy.intensity, period_secs = self.args.policy.period.as_secs(), "Restart intensity exceeded; stopping children and escalating.");
        self.args.metrics.supervisor_escalations.get_or_create(&SupervisorLabels { supervisor: path.clone() }).inc();
        self.stop_all().await;
        Err(format!("supervisor {path}: restart intensity exceeded").into())
    }
}
