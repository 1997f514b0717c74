//! The `edge-gateway` binary: parse the CLI and dispatch to one subcommand (`src/cli/`).
//!
//! Exit codes: 0 after a graceful stop, 1 when the gateway fails at run time (the root
//! supervisor gave up, a listener cannot bind), 2 for a bad config or bad usage.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    cli::Cli::parse().dispatch()
}
