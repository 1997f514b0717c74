//! `edge-gateway store salvage`: copy what can be read from a (quarantined) store file into
//! the configured store, keeping idempotency keys; the gateway must be stopped.

use std::path::PathBuf;

use anyhow::Context as _;
use edge_gateway::config::Config;
use edge_gateway_actors::storage::Store;

/// `store`'s subcommands.
#[derive(clap::Subcommand)]
pub enum StoreCommand {
    /// Re-import every readable message of a quarantined (or any other) store file, of either
    /// engine, into this gateway's store, keeping their idempotency keys; the gateway must be
    /// stopped. Also the way to move a backlog from one `storage.backend` to the other.
    Salvage {
        /// The quarantined file (data_dir/gateway.redb.quarantine-<ms>, or .sqlite.quarantine-<ms>
        /// with its -wal next to it).
        file: PathBuf,
        /// The gateway's config (for data_dir and sinks). Without it the embedded default is used,
        /// and only for a FILE in that config's data dir.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// Import and say what was imported, from where, how.
pub fn run(cmd: StoreCommand) -> anyhow::Result<String> {
    let StoreCommand::Salvage { file, config: config_path } = cmd;
    let config = match &config_path {
        Some(path) => Config::load(path),
        None => Config::embedded_default(),
    }?;
    let target = config.store_path();
    if config_path.is_none() {
        same_data_dir(&file, &target)?;
    }
    let found = Store::salvage(&file).with_context(|| format!("{}: cannot be read", file.display()))?;
    let sinks = config.sinks.iter().map(|s| s.name.clone()).collect();
    let store = Store::open(config.backend, &target, sinks)
        .with_context(|| format!("{} (is the gateway still running? stop it first)", target.display()))?;
    let imported = store.import(&found.values)?;
    let how = match &found.open_error {
        None => format!("read through {}, {} unreadable rows skipped", found.kind, found.skipped),
        Some(e) => format!("{} cannot open it ({e}): found by a raw scan of its bytes", found.kind),
    };
    Ok(format!(
        "imported {imported} messages from {} into {} ({how}); they keep their idempotency keys, so the cloud drops any it already has",
        file.display(),
        target.display(),
    ))
}

/// Without `--config` the target is the embedded default's store (`./data/gateway.redb`,
/// relative to where the command runs): import only a file that sits next to it, so a salvage
/// run from the wrong directory cannot fill a store no gateway reads.
fn same_data_dir(file: &std::path::Path, target: &std::path::Path) -> anyhow::Result<()> {
    let dir = |p: &std::path::Path| {
        p.parent().map(|d| if d.as_os_str().is_empty() { std::path::Path::new(".") } else { d }).map(std::fs::canonicalize)
    };
    match (dir(file), dir(target)) {
        (Some(Ok(a)), Some(Ok(b))) if a == b => Ok(()),
        _ => anyhow::bail!(
            "{} is not in the data dir of the embedded default config ({}); name the gateway's config with --config, so the messages go into the store that gateway reads",
            file.display(),
            target.parent().unwrap_or(target).display()
        ),
    }
}
