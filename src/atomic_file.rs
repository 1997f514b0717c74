//! The one way the gateway replaces a small file durably: a temporary file in the same
//! directory, written and fsync'ed, renamed over the target (tempfile's `persist`), then the
//! directory fsync'ed. A reader sees the old file or the new one, never a part.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// Replace `path` with `bytes`; with `mode`, the file gets those permission bits (set before
/// any byte is written, so a secret is never readable by others).
pub fn write(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    if let Some(mode) = mode {
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Make `path` belong to the owner of `owner_of` (a no-op when they already match; needs root
/// otherwise): a file an operator's `sudo` command creates next to the gateway's own files must
/// stay writable and readable by the gateway's user.
pub fn give_to_owner(owner_of: &Path, path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let (owner, it) = (std::fs::metadata(owner_of)?, std::fs::symlink_metadata(path)?);
    if owner.uid() != it.uid() || owner.gid() != it.gid() {
        std::os::unix::fs::lchown(path, Some(owner.uid()), Some(owner.gid()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_replaced_whole_with_its_mode_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwords");
        std::fs::write(&path, "old\n").unwrap();
        write(&path, b"new\n", Some(0o600)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "only the target remains");
    }
}
