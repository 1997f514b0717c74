//! Supervisor semantics with small test actors that log their starts and stops.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::*;
use crate::backoff::Backoff;
use crate::health::Health;
use crate::metrics::{ChildLabels, Metrics, SupervisorLabels};

type Log = Arc<Mutex<Vec<String>>>;

struct Probe;

struct ProbeArgs {
    name: String,
    log: Log,
    /// How long `post_stop` takes (to exercise shutdown timeouts).
    stop_delay: Duration,
}

impl Actor for Probe {
    type Msg = ();
    type State = ProbeArgs;
    type Arguments = ProbeArgs;

    async fn pre_start(&self, _: ActorRef<()>, args: ProbeArgs) -> Result<ProbeArgs, ActorProcessingErr> {
        args.log.lock().unwrap().push(format!("start:{}", args.name));
        Ok(args)
    }

    async fn post_stop(&self, _: ActorRef<()>, st: &mut ProbeArgs) -> Result<(), ActorProcessingErr> {
        tokio::time::sleep(st.stop_delay).await;
        st.log.lock().unwrap().push(format!("stop:{}", st.name));
        Ok(())
    }
}

fn probe(name: &str, restart: Restart, log: &Log, stop_delay: Duration) -> ChildSpec {
    let (n, log) = (name.to_string(), log.clone());
    ChildSpec {
        name: name.into(),
        restart,
        shutdown: Duration::from_millis(200),
        start: start_fn(move |sup| {
            let args = ProbeArgs { name: n.clone(), log: log.clone(), stop_delay };
            async move { Ok(Probe::spawn_linked(None, Probe, args, sup).await?.0.get_cell()) }
        }),
    }
}

fn policy(strategy: Strategy, intensity: u32) -> SupervisorPolicy {
    SupervisorPolicy {
        strategy,
        intensity,
        period: Duration::from_secs(10),
        backoff: Backoff { initial: Duration::from_millis(1), max: Duration::from_millis(5) },
    }
}

struct Tree {
    sup: ActorRef<SupervisorMsg>,
    done: tokio::task::JoinHandle<()>,
    health: Health,
    metrics: Metrics,
    log: Log,
}

async fn tree(strategy: Strategy, intensity: u32, restart_b: Restart) -> Tree {
    let log: Log = Arc::default();
    let zero = Duration::ZERO;
    let children =
        vec![probe("a", Restart::Permanent, &log, zero), probe("b", restart_b, &log, zero), probe("c", Restart::Permanent, &log, zero)];
    let (health, metrics) = (Health::default(), Metrics::new());
    let args = SupervisorArgs {
        path: "t".into(),
        policy: policy(strategy, intensity),
        children,
        metrics: metrics.clone(),
        health: health.clone(),
    };
    let (sup, done) = Supervisor::spawn(None, Supervisor, args).await.unwrap();
    Tree { sup, done, health, metrics, log }
}

impl Tree {
    fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    /// Kill a child and wait until the log holds `expected` entries (the exit's consequences).
    async fn kill(&self, child: &str, expected: usize) {
        let path = format!("t/{child}");
        self.health.actor(&path).unwrap().kill();
        self.wait_log(expected).await;
    }

    /// Poll until the log holds at least `n` entries (panics after 5 s).
    async fn wait_log(&self, n: usize) {
        for _ in 0..1000 {
            if self.log.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("log did not reach {n} entries: {:?}", self.log.lock().unwrap());
    }

    /// For "nothing happens" assertions: there is no event to poll for, so give the supervisor a
    /// bounded moment in which a wrong restart would show up.
    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_start_in_order_and_stop_in_reverse() {
    let t = tree(Strategy::OneForOne, 3, Restart::Permanent).await;
    assert_eq!(t.take_log(), ["start:a", "start:b", "start:c"]);
    t.sup.call(SupervisorMsg::Shutdown, None).await.unwrap();
    let log = t.log.clone();
    t.done.await.unwrap();
    assert_eq!(*log.lock().unwrap(), ["stop:c", "stop:b", "stop:a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_one_restarts_only_the_exited_child() {
    let t = tree(Strategy::OneForOne, 3, Restart::Permanent).await;
    t.take_log();
    t.kill("b", 1).await;
    t.settle().await;
    assert_eq!(t.take_log(), ["start:b"]);
    assert_eq!(t.metrics.actor_restarts.get_or_create(&ChildLabels { supervisor: "t".into(), child: "b".into() }).get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_all_stops_the_others_in_reverse_and_restarts_all_in_order() {
    let t = tree(Strategy::OneForAll, 3, Restart::Permanent).await;
    t.take_log();
    t.kill("b", 5).await;
    assert_eq!(t.take_log(), ["stop:c", "stop:a", "start:a", "start:b", "start:c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_for_one_restarts_the_child_and_those_declared_after_it() {
    let t = tree(Strategy::RestForOne, 3, Restart::Permanent).await;
    t.take_log();
    t.kill("b", 3).await;
    assert_eq!(t.take_log(), ["stop:c", "start:b", "start:c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_children_restart_only_after_an_abnormal_exit() {
    let t = tree(Strategy::OneForOne, 3, Restart::Transient).await;
    t.take_log();
    t.kill("b", 1).await;
    assert_eq!(t.take_log(), ["start:b"], "a kill is abnormal");
    t.health.actor("t/b").unwrap().stop(None);
    t.wait_log(1).await;
    t.settle().await;
    assert_eq!(t.take_log(), ["stop:b"], "a normal stop is final");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_children_are_never_restarted() {
    let t = tree(Strategy::OneForOne, 3, Restart::Temporary).await;
    t.take_log();
    let b = t
        .sup
        .get_cell()
        .get_children()
        .into_iter()
        .find(|c| {
            t.health.actor("t/a").is_none_or(|a| a.get_id() != c.get_id()) && t.health.actor("t/c").is_none_or(|x| x.get_id() != c.get_id())
        })
        .unwrap();
    b.kill();
    t.settle().await;
    assert!(t.take_log().is_empty(), "a temporary child is not restarted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceeding_intensity_stops_the_children_and_fails_the_supervisor() {
    let t = tree(Strategy::OneForOne, 2, Restart::Permanent).await;
    t.take_log();
    t.kill("a", 1).await;
    t.kill("a", 2).await;
    t.health.actor("t/a").unwrap().kill();
    tokio::time::timeout(Duration::from_secs(5), t.done).await.expect("supervisor ended").unwrap();
    let log = t.log.lock().unwrap().clone();
    assert_eq!(&log[log.len() - 2..], ["stop:c", "stop:b"], "{log:?}");
    assert_eq!(t.metrics.supervisor_escalations.get_or_create(&SupervisorLabels { supervisor: "t".into() }).get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_does_not_stop_in_time_is_killed() {
    let log: Log = Arc::default();
    let slow = probe("slow", Restart::Permanent, &log, Duration::from_secs(30));
    let args = SupervisorArgs {
        path: "t".into(),
        policy: policy(Strategy::OneForOne, 1),
        children: vec![slow],
        metrics: Metrics::new(),
        health: Health::default(),
    };
    let (sup, done) = Supervisor::spawn(None, Supervisor, args).await.unwrap();
    let started = std::time::Instant::now();
    sup.call(SupervisorMsg::Shutdown, None).await.unwrap();
    done.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown took {:?}", started.elapsed());
    assert_eq!(*log.lock().unwrap(), ["start:slow"], "killed before its post_stop finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_child_with_a_taken_key_replaces_the_old_one() {
    let log: Log = Arc::default();
    let args = SupervisorArgs {
        path: "s".into(),
        policy: policy(Strategy::OneForOne, 10),
        children: vec![],
        metrics: Metrics::new(),
        health: Health::default(),
    };
    let (sup, _done) = Supervisor::spawn(None, Supervisor, args).await.unwrap();
    for name in ["first", "second"] {
        let spec = probe(name, Restart::Temporary, &log, Duration::ZERO);
        let key = Some("client-1".to_string());
        sup.call(|reply| SupervisorMsg::StartChild { spec, key, reply }, None).await.unwrap().unwrap().unwrap();
    }
    assert_eq!(*log.lock().unwrap(), ["start:first", "stop:first", "start:second"]);
    assert_eq!(sup.get_cell().get_children().len(), 1);
}
