//! `edge-gateway schema ...`: compatibility checks for CI pipelines, and the messages a running
//! gateway kept apart.
//!
//! Exit codes: 0 compatible / valid; 1 refused (incompatible, or outside the keywords
//! compatibility is decided on), with every reason; 2 the input itself is bad (unreadable, not
//! JSON, not a JSON Schema, an unknown mode).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use edge_gateway::schema::compat::{self, Mode};
use edge_gateway::schema::registry::Registry;
use serde_json::Value;

/// `schema`'s subcommands.
#[derive(clap::Subcommand)]
pub enum SchemaCommand {
    /// Check that NEW may follow OLD under a compatibility mode (exit 1 with every
    /// incompatibility).
    Check {
        /// BACKWARD (default), FORWARD, FULL, their _TRANSITIVE forms (the same for two files), or NONE.
        #[arg(long, default_value = "BACKWARD")]
        mode: String,
        /// The earlier version (a JSON Schema file).
        old: PathBuf,
        /// The new version.
        new: PathBuf,
    },
    /// Load a registry folder as the gateway would: every problem, exit 1 if there is one.
    CheckRegistry {
        /// The folder (bindings.toml and one folder per subject).
        dir: PathBuf,
    },
    /// List the messages a running gateway kept apart (failed their schema, never forwarded).
    Rejected {
        /// The gateway's local API.
        #[arg(long, default_value = "http://127.0.0.1:9880")]
        url: String,
        /// Bearer token file (needed with http.auth = "all").
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// The first id to list.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Most messages to list.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print the API's JSON instead of one line per message.
        #[arg(long)]
        json: bool,
    },
}

/// Run one `schema` subcommand.
pub fn run(cmd: SchemaCommand) -> ExitCode {
    match cmd {
        SchemaCommand::Check { mode, old, new } => check(&mode, &old, &new),
        SchemaCommand::CheckRegistry { dir } => check_registry(&dir),
        SchemaCommand::Rejected { url, token_file, from, limit, json } => rejected(&url, token_file.as_deref(), from, limit, json),
    }
}

fn check(mode: &str, old: &Path, new: &Path) -> ExitCode {
    let Some(mode) = Mode::parse(mode) else {
        let all: Vec<&str> = Mode::ALL.iter().map(|m| m.as_str()).collect();
        return bad_input(&format!("--mode: \"{mode}\" is not one of {}", all.join(", ")));
    };
    let (old_schema, new_schema) = match (read_schema(old), read_schema(new)) {
        (Ok(o), Ok(n)) => (o, n),
        (Err(e), _) | (_, Err(e)) => return bad_input(&format!("{e:#}")),
    };
    if mode == Mode::None {
        println!("compatible (NONE: nothing is checked)");
        return ExitCode::SUCCESS;
    }
    let mut refused: Vec<String> = Vec::new();
    for (path, schema) in [(old, &old_schema), (new, &new_schema)] {
        let outside = compat::unsupported(schema);
        if !outside.is_empty() {
            refused.push(format!(
                "{}: uses keywords outside the subset compatibility is decided on: {}",
                path.display(),
                outside.join(", ")
            ));
        }
    }
    if refused.is_empty() {
        refused = compat::check(mode, &[(1, &old_schema)], &new_schema).iter().map(|f| f.to_string()).collect();
    }
    if refused.is_empty() {
        println!("compatible ({mode})");
        return ExitCode::SUCCESS;
    }
    eprintln!("incompatible ({mode}): {} problem(s)", refused.len());
    for r in &refused {
        eprintln!("  {r}");
    }
    ExitCode::FAILURE
}

/// A file that is JSON and a JSON Schema the validator accepts.
fn read_schema(path: &Path) -> anyhow::Result<Value> {
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    let value: Value = serde_json::from_slice(&bytes).with_context(|| format!("{}: not JSON", path.display()))?;
    jsonschema::draft202012::new(&value).map_err(|e| anyhow::anyhow!("{}: not a valid JSON Schema: {e}", path.display()))?;
    Ok(value)
}

fn check_registry(dir: &Path) -> ExitCode {
    match Registry::load(dir) {
        Ok(r) => {
            let versions: usize = r.subjects.values().map(|s| s.versions.len()).sum();
            println!("registry OK: {} subject(s), {versions} version(s), {} binding(s)", r.subjects.len(), r.bindings.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn bad_input(problem: &str) -> ExitCode {
    eprintln!("edge-gateway schema: {problem}");
    ExitCode::from(2)
}

fn rejected(url: &str, token_file: Option<&Path>, from: u64, limit: usize, json: bool) -> ExitCode {
    let token = match token_file.map(std::fs::read_to_string).transpose() {
        Ok(t) => t.map(|t| t.trim().to_string()),
        Err(e) => return bad_input(&format!("--token-file: {e}")),
    };
    let endpoint = format!("{}/api/rejected?from={from}&limit={limit}", url.trim_end_matches('/'));
    let body = match fetch(&endpoint, token) {
        Ok(body) => body,
        Err(e) => {
            eprintln!("edge-gateway schema rejected: {endpoint}: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        println!("{body}");
        return ExitCode::SUCCESS;
    }
    let Ok(page) = serde_json::from_str::<Value>(&body) else {
        eprintln!("edge-gateway schema rejected: {endpoint}: the answer is not JSON");
        return ExitCode::FAILURE;
    };
    let messages = page["messages"].as_array().cloned().unwrap_or_default();
    for m in &messages {
        let msg = &m["message"];
        let schema = &msg["schema"];
        println!(
            "{}\t{}\t{}\t{}\t{}/{}\t{}",
            m["id"],
            msg["received_at_ms"],
            msg["device"].as_str().unwrap_or(""),
            msg["topic"].as_str().unwrap_or(""),
            schema["subject"].as_str().unwrap_or(""),
            schema["version"],
            schema["errors"][0].as_str().unwrap_or("")
        );
    }
    eprintln!("{} message(s){}", messages.len(), page["next"].as_u64().map(|n| format!("; more with --from {n}")).unwrap_or_default());
    ExitCode::SUCCESS
}

/// GET `endpoint`; the body of a 2xx answer.
fn fetch(endpoint: &str, token: Option<String>) -> anyhow::Result<String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut request = reqwest::Client::new().get(endpoint).timeout(std::time::Duration::from_secs(10));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await?;
        let status = response.status();
        let body = response.text().await?;
        anyhow::ensure!(status.is_success(), "HTTP {status}: {}", body.trim());
        Ok(body)
    })
}
