//! SIGHUP: check the configuration again and reload what can change while the gateway runs.
//!
//! The whole file is validated first, with every file it names (as at start): if anything is
//! wrong, every problem is logged and nothing is applied. Then every reloadable target (device
//! TLS and CRLs, the HTTPS and JetStream sinks' TLS files, password and ACL files, the schema
//! registry) is reloaded at once, as the rotation actor does when a file changes; each outcome
//! is logged. The sinks' batching and backoff settings, an HTTP sink's URL and timeout
//! (without TLS files) and a file sink's path are applied to the running forwarders
//! (`gateway::sinks::LiveSinks`), and `gateway.log_filter` to the log lines. Any other setting
//! that differs from the file the gateway started with is named in a WARN as needing a
//! restart, and is not applied.

use std::path::PathBuf;

use edge_gateway::config::Config;
use edge_gateway::gateway::sinks::LiveSinks;
use edge_gateway::preflight;
use edge_gateway_actors::rotation::RotationMsg;
use edge_gateway_actors::slot::ActorSlot;
use ractor::rpc::CallResult;

/// Until the process ends: each SIGHUP checks `path` (`None`: the embedded default, so only the
/// files it names) and reloads.
pub async fn on_sighup(mut hup: tokio::signal::unix::Signal, path: Option<PathBuf>, rotation: ActorSlot<RotationMsg>, sinks: LiveSinks) {
    let started_with = path.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: checking the configuration.");
        let text = match &path {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::error!(path = %p.display(), error = %e, "SIGHUP: cannot read the configuration; nothing applied.");
                    continue;
                }
            },
            None => None,
        };
        let config = match &text {
            Some(t) => Config::parse(t, std::env::vars()),
            None => Config::embedded_default(),
        };
        let config = match config {
            Ok(c) => match preflight(&c) {
                problems if problems.is_empty() => c,
                problems => {
                    tracing::error!(?problems, "SIGHUP: the configuration is not valid; nothing applied, the gateway goes on as it was.");
                    continue;
                }
            },
            Err(e) => {
                tracing::error!(problems = ?e.0, "SIGHUP: the configuration is not valid; nothing applied, the gateway goes on as it was.");
                continue;
            }
        };
        let sink_plan = match sinks.reload(&config) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: a sink cannot be built; nothing applied, the gateway goes on as it was.");
                continue;
            }
        };
        reload_files(&rotation).await;
        for setting in &sink_plan.applied {
            tracing::info!(%setting, "SIGHUP: applied.");
        }
        match super::logs::set_filter(&config.log_filter) {
            Ok(true) => tracing::info!(filter = %config.log_filter, "SIGHUP: gateway.log_filter applied."),
            Ok(false) => tracing::info!("SIGHUP: RUST_LOG is set; gateway.log_filter is not used."),
            Err(e) => tracing::error!(error = %e, "SIGHUP: gateway.log_filter not applied."),
        }
        let mut changed = match (&started_with, &text) {
            (Some(a), Some(b)) => changed_settings(a, b),
            _ => Vec::new(),
        };
        // Applied above, named per sink by the plan, or read from the file by each
        // `update apply` (the keys).
        changed.retain(|k| k != "sinks" && k != "gateway.log_filter" && k != "update.public_keys");
        changed.extend(sink_plan.need_restart);
        if changed.is_empty() {
            tracing::info!("SIGHUP: done; no other setting changed.");
        } else {
            tracing::warn!(settings = ?changed, "SIGHUP: these settings changed in the file and need a restart; they were not applied.");
        }
    }
}

/// Every reloadable target, now; each outcome logged.
async fn reload_files(rotation: &ActorSlot<RotationMsg>) {
    let Some(actor) = rotation.get() else {
        tracing::error!("SIGHUP: the rotation actor is restarting; the files were not reloaded (it reloads them when they change).");
        return;
    };
    match actor.call(RotationMsg::ReloadAll, Some(std::time::Duration::from_secs(30))).await {
        Ok(CallResult::Success(outcomes)) => {
            for (target, outcome) in outcomes {
                match outcome {
                    Ok(()) => tracing::info!(%target, "SIGHUP: reloaded."),
                    Err(e) => tracing::error!(%target, error = %e, "SIGHUP: reload refused; the previous one stays."),
                }
            }
        }
        _ => tracing::error!("SIGHUP: the rotation actor did not answer; the files were not reloaded."),
    }
}

/// The dotted keys whose values differ between two TOML texts (both valid).
fn changed_settings(before: &str, after: &str) -> Vec<String> {
    let (Ok(a), Ok(b)) = (before.parse::<toml::Table>(), after.parse::<toml::Table>()) else { return vec!["(the whole file)".into()] };
    let mut out = Vec::new();
    diff("", &toml::Value::Table(a), &toml::Value::Table(b), &mut out);
    out
}

fn diff(prefix: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<String>) {
    match (a, b) {
        (toml::Value::Table(a), toml::Value::Table(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff(&key, x, y, out),
                    _ => out.push(key),
                }
            }
        }
        (a, b) if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_that_changed_are_named_by_their_keys() {
        let before = "[mqtt]\nlisten = \"a\"\nmax_inflight = 64\n[[sinks]]\nname = \"x\"\n";
        let after = "[mqtt]\nlisten = \"b\"\nmax_inflight = 64\n[storage]\nttl_secs = 5\n[[sinks]]\nname = \"y\"\n";
        assert_eq!(changed_settings(before, after), ["mqtt.listen", "sinks", "storage"]);
        assert!(changed_settings(before, before).is_empty());
    }
}
