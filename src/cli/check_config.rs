//! `edge-gateway check-config`: load a config and every file it names; print every problem.

use std::path::PathBuf;
use std::process::ExitCode;

/// `check-config`'s arguments.
#[derive(clap::Args)]
pub struct CheckConfigArgs {
    /// TOML config file; the embedded default when omitted.
    file: Option<PathBuf>,
    /// supervision.toml to check as well.
    #[arg(long)]
    supervision: Option<PathBuf>,
}

/// Exit 0 when the configuration is valid, 2 with every problem otherwise.
pub fn run(args: CheckConfigArgs) -> ExitCode {
    match super::load(args.file, args.supervision) {
        Ok((config, _)) => {
            for key in &config.ignored_env {
                eprintln!(
                    "warning: {key} is set but is not a variable edge-gateway reads ({}); ignored",
                    edge_gateway::config::ENV_OVERRIDES
                );
            }
            println!("configuration OK");
            ExitCode::SUCCESS
        }
        Err(problems) => super::bad_config(&problems),
    }
}
