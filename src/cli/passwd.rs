//! `edge-gateway passwd`: add or replace a user in a password file, atomically (a running
//! gateway reloads the file when it changes).

use std::io::BufRead as _;
use std::path::PathBuf;

use anyhow::Context as _;

/// `passwd`'s arguments.
#[derive(clap::Args)]
pub struct PasswdArgs {
    /// The password file (created if missing; an existing one must read and parse, or it is
    /// left alone).
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
    let old = existing(&args.file)?;
    let mut lines: Vec<&str> = old.lines().filter(|l| l.split(':').next() != Some(args.user.as_str())).collect();
    lines.push(&entry);
    edge_gateway::atomic_file::write(&args.file, (lines.join("\n") + "\n").as_bytes(), Some(0o600))
        .with_context(|| format!("{}", args.file.display()))
}

/// The file's current text: empty when it does not exist yet. A file that cannot be read or does
/// not parse is an error: rewriting it with one user would lose all the others.
fn existing(file: &std::path::Path) -> anyhow::Result<String> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => anyhow::bail!("{}: cannot read it ({e}); left unchanged, since rewriting it would lose its other users", file.display()),
    };
    edge_gateway::trust::passwd::PasswordFile::parse(&text)
        .with_context(|| format!("{}: left unchanged; fix or move it first", file.display()))?;
    Ok(text)
}
