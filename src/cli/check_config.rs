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
        Ok(_) => {
            println!("configuration OK");
            ExitCode::SUCCESS
        }
        Err(problems) => super::bad_config(&problems),
    }
}
