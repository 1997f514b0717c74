//! `edge-gateway passwd`: add or replace a user in a password file, atomically (a running
//! gateway reloads the file when it changes).

use std::io::BufRead as _;
use std::path::PathBuf;

use anyhow::Context as _;

/// `passwd`'s arguments.
#[derive(clap::Args)]
pub struct PasswdArgs {
    /// The password file (created if missing).
    file: PathBuf,
    /// The username (the device's identity).
    user: String,
    /// PBKDF2 iterations.
    #[arg(long, default_value_t = edge_gateway::trust::passwd::DEFAULT_ITERATIONS)]
    iterations: u32,
}

/// Read the password from the first line of stdin and write the entry.
pub fn run(args: PasswdArgs) -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin().lock().read_line(&mut password).context("cannot read the password from stdin")?;
    let password = password.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(!password.is_empty(), "empty password on stdin");
    let entry = edge_gateway::trust::passwd::hash_entry(&args.user, password.as_bytes(), args.iterations)?;
    let old = std::fs::read_to_string(&args.file).unwrap_or_default();
    let mut lines: Vec<&str> = old.lines().filter(|l| l.split(':').next() != Some(args.user.as_str())).collect();
    lines.push(&entry);
    edge_gateway::atomic_file::write(&args.file, (lines.join("\n") + "\n").as_bytes(), Some(0o600))
        .with_context(|| format!("{}", args.file.display()))
}
