//! `archive verify`: every file the manifest keeps exists with its recorded size and SHA-256,
//! no other file sits among them, the manifest's chain holds, and (with `--head`) the manifest
//! still contains a head recorded earlier (a copy uploaded or written down elsewhere), so even
//! a rewritten manifest is caught.

use std::path::Path;

use super::ArchiveError;
use super::files;
use super::manifest::Manifest;

/// Every problem found, one line each (empty: the archive verifies). `head`: a manifest head
/// recorded earlier, which must be this manifest's head or the hash of one of its lines.
pub fn verify(dir: &Path, head: Option<&str>) -> Result<(Vec<String>, Manifest), ArchiveError> {
    // Shared with other readers; a flush or deletion in progress finishes first and waits.
    let _shared = super::manifest::lock_shared(dir)?;
    let m = Manifest::read(dir)?;
    let mut problems = m.problems.clone();
    let live = m.live();
    for f in live.values() {
        let path = dir.join(&f.path);
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => problems.push(format!("{}: missing (removed or renamed)", f.path)),
            Err(e) => problems.push(format!("{}: cannot read: {e}", f.path)),
            Ok(meta) if meta.len() != f.bytes => {
                problems.push(format!("{}: {} bytes, the manifest says {} (changed)", f.path, meta.len(), f.bytes))
            }
            Ok(_) => match crate::sha256::file(&path) {
                Ok(sha) if sha == f.sha256 => {}
                Ok(_) => problems.push(format!("{}: SHA-256 differs from the manifest (changed or swapped)", f.path)),
                Err(e) => problems.push(format!("{}: cannot read: {e}", f.path)),
            },
        }
    }
    let deleted: std::collections::HashSet<String> = m.deleted().into_iter().collect();
    for path in files::walk(dir)? {
        if path.extension().is_some_and(|e| e == "tmp") {
            continue; // a flush in progress (or interrupted: removed at the next start)
        }
        let rel = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy().into_owned();
        if !live.contains_key(&rel) {
            let why = if deleted.contains(&rel) { "deleted in the manifest but still present" } else { "not in the manifest (added)" };
            problems.push(format!("{rel}: {why}"));
        }
    }
    if let Some(head) = head {
        let known = head == m.head || m.entries.iter().any(|e| e.prev == head);
        if !known {
            problems.push(format!("manifest: head {head} recorded earlier is not in this manifest (rewritten or truncated)"));
        }
    }
    Ok((problems, m))
}
