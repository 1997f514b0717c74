//! Where archive files live and how one is closed: `<class>/<yyyy-mm-dd>/<hh>-<n>.parquet`
//! (UTC, by the gateway's receive time), written as `<name>.tmp`, fsync'ed, recorded in the
//! manifest, then renamed to its final name and the folder fsync'ed. A crash leaves either a
//! `.tmp` the manifest does not know (removed at the next start: its messages are still in the
//! store) or one it does (renamed then: "rolled forward"); never a half file under a final name.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::ArchiveError;
use super::manifest::Manifest;

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) to days since 1970-01-01 (`days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-12-02T03:04:05.678Z` for ms since the epoch.
pub fn rfc3339(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// `2026-12-02`, `2026-12-02T03:04:05Z` (also with fractions) or ms since the epoch, to ms.
pub fn parse_time(text: &str) -> Option<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    let (date, time) = text.split_once('T').unwrap_or((text, "00:00:00Z"));
    let mut parts = date.splitn(3, '-').map(str::parse::<u32>);
    let (y, m, d) = (parts.next()?.ok()?, parts.next()?.ok()?, parts.next()?.ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let time = time.strip_suffix('Z')?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(str::parse::<i64>);
    let (h, mi, s) = (t.next()?.ok()?, t.next()?.ok()?, t.next().unwrap_or(Ok(0)).ok()?);
    let milli: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    let days = days_from_civil(i64::from(y), m, d);
    if civil_from_days(days) != (i64::from(y), m, d) || !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0..61).contains(&s) {
        return None; // 2026-02-31, 25:00
    }
    Some(days * 86_400_000 + ((h * 60 + mi) * 60 + s) * 1000 + milli)
}

/// The start of the UTC hour holding `ms`.
pub fn hour_of(ms: i64) -> i64 {
    ms - ms.rem_euclid(3_600_000)
}

/// The first free `<class>/<yyyy-mm-dd>/<hh>-<n>.parquet` for the hour starting at `hour_ms`
/// (a name is never used twice, not even after its file was deleted).
pub fn next_name(manifest: &Manifest, taken: &[String], class: &str, hour_ms: i64) -> String {
    let (y, m, d) = civil_from_days(hour_ms.div_euclid(86_400_000));
    let h = hour_ms.rem_euclid(86_400_000) / 3_600_000;
    let prefix = format!("{class}/{y:04}-{m:02}-{d:02}/{h:02}-");
    let used = manifest.all_paths().chain(taken.iter().map(String::as_str)).filter(|p| p.starts_with(&prefix)).count();
    (used..)
        .map(|n| format!("{prefix}{n}.parquet"))
        .find(|p| !manifest.all_paths().any(|q| q == p) && !taken.contains(p))
        .unwrap_or_default()
}

/// `path` with `.tmp` appended.
pub fn tmp_of(path: &Path) -> PathBuf {
    let mut os = path.as_os_str().to_owned();
    os.push(".tmp");
    PathBuf::from(os)
}

/// fsync the folder `dir` (a rename or unlink in it is durable after this).
pub fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(|e| ArchiveError::io(dir, e))
}

/// Create `dir` and its missing parents under `root`, fsync'ing each parent of a new folder.
pub fn create_dirs(root: &Path, dir: &Path) -> Result<(), ArchiveError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| p.starts_with(root) && *p != dir) {
        create_dirs(root, parent)?;
    }
    std::fs::create_dir_all(dir).map_err(|e| ArchiveError::io(dir, e))?;
    match dir.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// What [`recover`] did.
#[derive(Debug, Default)]
pub struct Recovered {
    /// For the log: files rolled forward, `.tmp` files removed, deletions finished.
    pub done: Vec<String>,
    /// Recorded files that are gone with no `.tmp` to finish them (a crash that lost a folder
    /// entry the manifest had counted on): their messages must be read from the store again.
    pub lost: Vec<super::manifest::FileEntry>,
}

/// Bring the folder in line with the manifest after a crash: a `.tmp` of a recorded file with
/// the recorded hash becomes the file; other `.tmp` files are removed; a file the manifest
/// deleted is removed; a recorded file that is simply gone is reported lost.
pub fn recover(dir: &Path, manifest: &Manifest) -> Result<Recovered, ArchiveError> {
    let mut out = Recovered::default();
    let live = manifest.live();
    for f in live.values() {
        let path = dir.join(&f.path);
        if path.exists() {
            continue;
        }
        let tmp = tmp_of(&path);
        if tmp.exists() && crate::sha256::file(&tmp).map_err(|e| ArchiveError::io(&tmp, e))? == f.sha256 {
            std::fs::rename(&tmp, &path).map_err(|e| ArchiveError::io(&path, e))?;
            sync_dir(path.parent().unwrap_or(dir))?;
            out.done.push(format!("rolled forward {}", f.path));
        } else {
            out.lost.push(f.clone());
        }
    }
    for tmp in walk(dir)?.into_iter().filter(|p| p.extension().is_some_and(|e| e == "tmp")) {
        std::fs::remove_file(&tmp).map_err(|e| ArchiveError::io(&tmp, e))?;
        out.done.push(format!("removed unrecorded {}", tmp.display()));
    }
    for path in manifest.deleted() {
        let full = dir.join(&path);
        if !live.contains_key(&path) && full.exists() {
            std::fs::remove_file(&full).map_err(|e| ArchiveError::io(&full, e))?;
            out.done.push(format!("finished deleting {path}"));
        }
    }
    Ok(out)
}

/// Every file under the class folders of `dir` (`.parquet` and `.tmp`), relative paths not
/// resolved.
pub fn walk(dir: &Path) -> Result<Vec<PathBuf>, ArchiveError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ArchiveError::io(&d, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| ArchiveError::io(&d, e))?;
            let path = entry.path();
            let name = entry.file_name();
            if d == dir && (name == "holds" || name == "upload") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet" || e == "tmp") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_parse() {
        for days in [-1_000_000, -1, 0, 1, 20_424, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(rfc3339(1_764_644_645_678), "2025-12-02T03:04:05.678Z");
        assert_eq!(parse_time("2025-12-02T03:04:05.678Z"), Some(1_764_644_645_678));
        assert_eq!(parse_time("2025-12-02"), Some(1_764_633_600_000));
        assert_eq!(parse_time("1764633600000"), Some(1_764_633_600_000));
        assert_eq!(parse_time("2025-13-02"), None);
        assert_eq!(parse_time("2026-02-31"), None);
        assert_eq!(parse_time("2026-02-03T25:00:00Z"), None);
        assert_eq!(hour_of(1_764_644_645_678), 1_764_644_400_000);
    }

    #[test]
    fn names_are_never_reused() {
        let m = Manifest::default();
        let hour = 1_764_644_400_000;
        let first = next_name(&m, &[], "c", hour);
        assert_eq!(first, "c/2025-12-02/03-0.parquet");
        assert_eq!(next_name(&m, &[first], "c", hour), "c/2025-12-02/03-1.parquet");
    }
}
