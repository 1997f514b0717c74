//! Files of the dev PKI: atomic replacement (temp file in the same directory, then rename) and
//! PEM reading.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use x509_parser::certificate::X509Certificate;

use super::{Issued, KEY_MODE, PUBLIC_MODE, PkiError, invalid, io_err};

/// Stages both files before renaming either, then renames the key first: a watcher that reacts
/// to the certificate (the file other tools look at) then finds the matching key already there.
pub(super) fn commit_pair(issued: &Issued, key_pem: &str, cert_pem: &str) -> Result<(), PkiError> {
    let key = Staged::write(&issued.key, key_pem.as_bytes(), KEY_MODE)?;
    let cert = Staged::write(&issued.cert, cert_pem.as_bytes(), PUBLIC_MODE)?;
    key.commit()?;
    cert.commit()
}

/// A file written under a temporary name next to its destination, removed unless committed.
pub(super) struct Staged {
    /// The hidden temp file.
    tmp: PathBuf,
    /// Where `commit` renames it to.
    dest: PathBuf,
    /// Set by `commit`; otherwise `drop` removes `tmp`.
    committed: bool,
}

impl Staged {
    pub(super) fn write(dest: &Path, bytes: &[u8], mode: u32) -> Result<Self, PkiError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = parent_dir(dest);
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let name = dest.file_name().ok_or_else(|| invalid(dest, "not a file name".into()))?.to_string_lossy();
        let tmp = dir.join(format!(".{name}.tmp-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
        let staged = Staged { tmp, dest: dest.to_path_buf(), committed: false };
        let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&staged.tmp).map_err(io_err(&staged.tmp))?;
        // `mode` above is masked by the umask; set it exactly (0600 can only get stricter).
        file.set_permissions(Permissions::from_mode(mode)).map_err(io_err(&staged.tmp))?;
        file.write_all(bytes).and_then(|()| file.sync_all()).map_err(io_err(&staged.tmp))?;
        Ok(staged)
    }

    pub(super) fn commit(mut self) -> Result<(), PkiError> {
        fs::rename(&self.tmp, &self.dest).map_err(io_err(&self.dest))?;
        self.committed = true;
        // Make the rename itself durable; failing that is not worth an error.
        let _ = File::open(parent_dir(&self.dest)).and_then(|d| d.sync_all());
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

pub(super) fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The DER contents of the first PEM block of `path`, which must carry `label`.
pub(super) fn read_pem(path: &Path, label: &str) -> Result<Vec<u8>, PkiError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes).map_err(|e| invalid(path, format!("not a PEM file: {e}")))?;
    if pem.label != label {
        return Err(invalid(path, format!("PEM block is '{}', expected '{label}'", pem.label)));
    }
    Ok(pem.contents)
}

pub(super) fn parse_cert<'a>(der: &'a [u8], path: &Path) -> Result<X509Certificate<'a>, PkiError> {
    x509_parser::parse_x509_certificate(der).map(|(_, c)| c).map_err(|e| invalid(path, format!("not an X.509 certificate: {e}")))
}
