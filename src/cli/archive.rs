//! `edge-gateway archive`: list, query, export and verify the archive (read-only, also while
//! the gateway runs), and the operator's retention actions (delete, hold, release), each
//! written to the audit log (docs/RETENTION.md).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use edge_gateway::archive::columns::{self, ArchivedRow, RowFilter};
use edge_gateway::archive::files::{parse_time, rfc3339};
use edge_gateway::archive::retention::{self, Deletion, Hold};
use edge_gateway::archive::{query, verify};
use edge_gateway::config::{ArchiveConfig, Config};
use edge_gateway_actors::metrics::ArchiveDeletion;

/// `archive`'s subcommands.
#[derive(clap::Subcommand)]
pub enum ArchiveCommand {
    /// The files kept, oldest first: path, class, messages, bytes, time range.
    List(Common),
    /// Messages received in a time range, as JSON lines or CSV on stdout.
    Query(QueryArgs),
    /// Messages of a time range into one file (JSON lines or Parquet).
    Export {
        #[command(flatten)]
        query: QueryArgs,
        /// Where to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check every file against the hash-chained manifest; exit 1 naming each problem.
    Verify {
        #[command(flatten)]
        common: Common,
        /// A manifest head recorded earlier (printed by verify, logged at each flush): it must
        /// still be in the manifest.
        #[arg(long)]
        head: Option<String>,
    },
    /// Delete files of a class (audited). Inside the compliance window only with --force;
    /// never under a legal hold.
    Delete {
        #[command(flatten)]
        common: Common,
        /// The class.
        #[arg(long)]
        class: String,
        /// Files whose newest message is older than this (RFC 3339 date or time, or unix ms).
        #[arg(long, required_unless_present = "path")]
        before: Option<String>,
        /// These files (paths as `archive list` prints them).
        #[arg(long)]
        path: Vec<String>,
        /// Why (written to the audit log); required.
        #[arg(long)]
        reason: String,
        /// Also files inside the compliance window (min_keep_days).
        #[arg(long)]
        force: bool,
    },
    /// Put a class under legal hold: nothing of it is deleted until it is released.
    Hold(HoldArgs),
    /// Release a class's legal hold (set with `archive hold`).
    Release(HoldArgs),
}

/// A class and why (both written to the audit log).
#[derive(clap::Args)]
pub struct HoldArgs {
    #[command(flatten)]
    common: Common,
    /// The class.
    #[arg(long)]
    class: String,
    /// Why (the case, the ticket); written to the audit log.
    #[arg(long)]
    reason: String,
}

/// The config every subcommand reads.
#[derive(clap::Args)]
pub struct Common {
    /// The gateway's config (the embedded default without it).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

/// A time range and filters.
#[derive(clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    common: Common,
    /// Received at or after (RFC 3339 date or time, or unix ms).
    #[arg(long)]
    from: Option<String>,
    /// Received before.
    #[arg(long)]
    to: Option<String>,
    /// Only this device identity.
    #[arg(long)]
    device: Option<String>,
    /// Only topics matching this MQTT filter.
    #[arg(long)]
    topic: Option<String>,
    /// jsonl, csv (query) or jsonl, parquet (export).
    #[arg(long, default_value = "jsonl")]
    format: String,
}

/// Run `cmd`: exit 0, 1 (a problem found, a refusal) or 2 (bad config).
pub fn run(cmd: ArchiveCommand) -> ExitCode {
    let result = match cmd {
        ArchiveCommand::Verify { common, head } => return run_verify(&common, head.as_deref()),
        ArchiveCommand::List(common) => list(&common),
        ArchiveCommand::Query(q) => run_query(&q, None),
        ArchiveCommand::Export { query, out } => run_query(&query, Some(out)),
        ArchiveCommand::Delete { common, class, before, path, reason, force } => {
            delete(&common, &class, before.as_deref(), &path, &reason, force)
        }
        ArchiveCommand::Hold(h) => hold(&h.common, &h.class, Some(&h.reason), ""),
        ArchiveCommand::Release(h) => hold(&h.common, &h.class, None, &h.reason),
    };
    super::report("archive", result)
}

fn archive_config(common: &Common) -> anyhow::Result<ArchiveConfig> {
    let config = match &common.config {
        Some(path) => Config::load(path),
        None => Config::embedded_default(),
    }?;
    config.archive.context("the archive is off in this config (archive.enabled = false)")
}

fn run_verify(common: &Common, head: Option<&str>) -> ExitCode {
    let result = archive_config(common).and_then(|a| Ok(verify::verify(&a.dir, head)?));
    match result {
        Ok((problems, m)) if problems.is_empty() => {
            println!("archive verifies: {} files, {} manifest entries, head {}", m.live().len(), m.entries.len(), m.head);
            ExitCode::SUCCESS
        }
        Ok((problems, _)) => {
            for p in &problems {
                println!("{p}");
            }
            eprintln!("edge-gateway archive verify: {} problem(s)", problems.len());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("edge-gateway archive verify: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn list(common: &Common) -> anyhow::Result<Option<String>> {
    let a = archive_config(common)?;
    let mut out = std::io::stdout().lock();
    for f in query::list(&a.dir)? {
        writeln!(out, "{}\t{}\t{} msgs\t{} bytes\t{} .. {}", f.path, f.class, f.rows, f.bytes, rfc3339(f.first_ms), rfc3339(f.last_ms))?;
    }
    Ok(None)
}

fn time(flag: &str, text: Option<&str>) -> anyhow::Result<Option<i64>> {
    text.map(|t| parse_time(t).with_context(|| format!("--{flag} {t}: not a date (2026-12-01), a time (2026-12-01T10:00:00Z) or unix ms")))
        .transpose()
}

fn run_query(q: &QueryArgs, out: Option<PathBuf>) -> anyhow::Result<Option<String>> {
    let a = archive_config(&q.common)?;
    let topic = match &q.topic {
        Some(t) => Some(
            edge_gateway::routing::table::Subscription::new(t, 0, false, false, None).map_err(|e| anyhow::anyhow!("--topic {t}: {e}"))?,
        ),
        None => None,
    };
    let filter =
        RowFilter { from_ms: time("from", q.from.as_deref())?, to_ms: time("to", q.to.as_deref())?, device: q.device.clone(), topic };
    let (rows, stats) = query::query(&a.dir, &filter)?;
    let summary = format!(
        "{} messages from {} files ({} skipped by time, {} deleted meanwhile), {} row groups read, {} skipped",
        rows.len(),
        stats.files_read,
        stats.files_skipped,
        stats.files_gone,
        stats.groups.groups_read,
        stats.groups.groups_skipped
    );
    match (out, q.format.as_str()) {
        (None, "jsonl") => write_jsonl(&mut std::io::stdout().lock(), &rows)?,
        (None, "csv") => write_csv(&mut std::io::stdout().lock(), &rows)?,
        (Some(path), "jsonl") => {
            let mut file = std::io::BufWriter::new(std::fs::File::create(&path).with_context(|| path.display().to_string())?);
            write_jsonl(&mut file, &rows)?;
            file.flush()?;
        }
        (Some(path), "parquet") => {
            let file = std::fs::File::create(&path).with_context(|| path.display().to_string())?;
            columns::write(&file, rows)?;
            file.sync_all()?;
        }
        (_, other) => bail!("--format {other}: query writes jsonl or csv, export jsonl or parquet"),
    }
    eprintln!("{summary}");
    Ok(None)
}

fn write_jsonl(out: &mut impl std::io::Write, rows: &[ArchivedRow]) -> anyhow::Result<()> {
    for r in rows {
        serde_json::to_writer(&mut *out, r)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn write_csv(out: &mut impl std::io::Write, rows: &[ArchivedRow]) -> anyhow::Result<()> {
    writeln!(
        out,
        "seq,key,device,topic,qos,received_at_ms,device_time_ms,payload,content_type,user_properties,trace_id,schema_subject,schema_version,schema_valid"
    )?;
    for r in rows {
        let value = serde_json::to_value(r)?;
        let cell = |k: &str| match &value[k] {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => csv_quote(s),
            v => v.to_string(),
        };
        let cells: Vec<String> = [
            "seq",
            "key",
            "device",
            "topic",
            "qos",
            "received_at_ms",
            "device_time_ms",
            "payload",
            "content_type",
            "user_properties",
            "trace_id",
            "schema_subject",
            "schema_version",
            "schema_valid",
        ]
        .iter()
        .map(|k| cell(k))
        .collect();
        writeln!(out, "{}", cells.join(","))?;
    }
    Ok(())
}

fn csv_quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

fn operator(force: bool) -> String {
    // SAFETY: getuid(2) has no preconditions.
    let uid = unsafe { libc::getuid() };
    format!("operator uid {uid}{}", if force { " --force" } else { "" })
}

fn delete(
    common: &Common,
    class: &str,
    before: Option<&str>,
    paths: &[String],
    reason: &str,
    force: bool,
) -> anyhow::Result<Option<String>> {
    let a = archive_config(common)?;
    let c = a.classes.iter().find(|c| c.name == class).with_context(|| format!("--class {class}: no such class in the config"))?;
    if reason.trim().is_empty() {
        bail!("--reason: say why (it is written to the audit log)");
    }
    if let Some(h) = retention::hold_of(&a.dir, c) {
        bail!("class {class} is under legal hold ({}); nothing is deleted until `archive release`", h.reason);
    }
    let before = time("before", before)?;
    let now = edge_gateway_actors::storage::now_ms();
    let mut deletions = Vec::new();
    for f in query::list(&a.dir)?.into_iter().filter(|f| f.class == class) {
        let chosen = paths.contains(&f.path) || before.is_some_and(|b| f.last_ms < b);
        if !chosen {
            continue;
        }
        if retention::in_window(c, &f, now as i64) && !force {
            bail!("{}: inside the compliance window (min_keep_days = {}); add --force to delete it anyway", f.path, c.min_keep_days);
        }
        let detail =
            if retention::in_window(c, &f, now as i64) { format!("{reason} (inside the compliance window)") } else { reason.to_string() };
        deletions.push(Deletion { file: f, reason: ArchiveDeletion::Operator, detail });
    }
    if let Some(missing) = paths.iter().find(|p| !deletions.iter().any(|d| &d.file.path == *p)) {
        bail!("--path {missing}: no such file of class {class}");
    }
    retention::delete(&a.dir, &a.classes, &deletions, &operator(force), now)?;
    Ok(Some(format!("deleted {} file(s) of class {class}; recorded in the manifest and the audit log", deletions.len())))
}

fn hold(common: &Common, class: &str, reason: Option<&str>, release_reason: &str) -> anyhow::Result<Option<String>> {
    let a = archive_config(common)?;
    let c = a.classes.iter().find(|c| c.name == class).with_context(|| format!("--class {class}: no such class in the config"))?;
    if reason.unwrap_or(release_reason).trim().is_empty() {
        bail!("--reason: say why (it is written to the audit log)");
    }
    let now = edge_gateway_actors::storage::now_ms();
    let by = operator(false);
    let h = reason.map(|r| Hold { reason: r.to_string(), since_ms: now, by: by.clone() });
    if h.is_none() && c.legal_hold {
        bail!("class {class}'s hold is set in the config (legal_hold = true): remove it there");
    }
    retention::set_hold(&a.dir, class, h.as_ref(), release_reason, &by, now)?;
    Ok(Some(match h {
        Some(_) => format!("class {class} is under legal hold"),
        None => format!("class {class}'s legal hold is released"),
    }))
}
