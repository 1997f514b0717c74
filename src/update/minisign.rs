//! minisign's formats (<https://jedisct1.github.io/minisign/>), verification only: a public key
//! (`Ed` + 8-byte key id + 32-byte Ed25519 key, base64), and a signature file: an untrusted
//! comment, the signature (`ED`: of the file's BLAKE2b-512; key id; 64 bytes), a trusted comment
//! and the global signature over the signature and the trusted comment. Both signatures must
//! verify, so the trusted comment (which names the version) is signed too.
//!
//! Only prehashed (`ED`, minisign's default since 0.8) signatures are taken: the global
//! signature does not cover the algorithm bytes, so accepting legacy `Ed` too would let anyone
//! turn a release's signature into a valid one over its 64-byte digest.

use std::io::Read as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, UnparsedPublicKey};

use super::UpdateError;
use super::blake2b::Blake2b;

/// A minisign public key.
#[derive(Debug, Clone)]
pub struct PublicKey {
    id: [u8; 8],
    key: [u8; 32],
}

impl PublicKey {
    /// From its base64 line, or from a whole `.pub` file's text (the comment line is skipped).
    pub fn parse(text: &str) -> Result<PublicKey, UpdateError> {
        let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("untrusted comment:")).unwrap_or("");
        let bytes = STANDARD.decode(line).map_err(|e| UpdateError::Key(format!("not base64: {e}")))?;
        if bytes.len() != 42 || &bytes[..2] != b"Ed" {
            return Err(UpdateError::Key(format!("not a minisign Ed25519 public key ({} bytes)", bytes.len())));
        }
        Ok(PublicKey { id: bytes[2..10].try_into().expect("8"), key: bytes[10..].try_into().expect("32") })
    }

    /// The key id as minisign prints it (hex, most significant byte first).
    pub fn id(&self) -> String {
        key_id(&self.id)
    }
}

fn key_id(id: &[u8; 8]) -> String {
    id.iter().rev().map(|b| format!("{b:02X}")).collect()
}

/// A parsed `.minisig` file.
struct SignatureFile {
    key_id: [u8; 8],
    signature: [u8; 64],
    trusted_comment: String,
    global: [u8; 64],
}

fn parse_signature(text: &str) -> Result<SignatureFile, UpdateError> {
    let bad = |why: &str| UpdateError::SignatureFile(why.to_string());
    let mut lines = text.lines();
    let (Some(_untrusted), Some(sig), Some(trusted), Some(global)) = (lines.next(), lines.next(), lines.next(), lines.next()) else {
        return Err(bad("fewer than 4 lines"));
    };
    let sig = STANDARD.decode(sig.trim()).map_err(|_| bad("the signature line is not base64"))?;
    if sig.len() != 74 {
        return Err(bad("the signature line is not 74 bytes"));
    }
    match &sig[..2] {
        b"ED" => {}
        b"Ed" => return Err(bad("a legacy (not prehashed) signature: sign with minisign 0.8 or later, without -l")),
        _ => return Err(bad("unknown signature algorithm")),
    }
    let trusted_comment =
        trusted.strip_prefix("trusted comment: ").ok_or_else(|| bad("the third line is not a trusted comment"))?.to_string();
    let global = STANDARD.decode(global.trim()).map_err(|_| bad("the global signature is not base64"))?;
    let global: [u8; 64] = global.try_into().map_err(|_| bad("the global signature is not 64 bytes"))?;
    Ok(SignatureFile { key_id: sig[2..10].try_into().expect("8"), signature: sig[10..].try_into().expect("64"), trusted_comment, global })
}

/// Verify `file` against `signature_file` with one of `keys`; the signed trusted comment.
pub fn verify(file: &Path, signature_file: &Path, keys: &[PublicKey]) -> Result<String, UpdateError> {
    let text = std::fs::read_to_string(signature_file).map_err(|e| UpdateError::read(signature_file, e))?;
    let sig = parse_signature(&text)?;
    let key = keys.iter().find(|k| k.id == sig.key_id).ok_or_else(|| UpdateError::UnknownKey(key_id(&sig.key_id)))?;
    let message = blake2b_file(file)?;
    let public = UnparsedPublicKey::new(&ED25519, key.key);
    public.verify(&message, &sig.signature).map_err(|_| UpdateError::BadSignature)?;
    let mut global = sig.signature.to_vec();
    global.extend_from_slice(sig.trusted_comment.as_bytes());
    public.verify(&global, &sig.global).map_err(|_| UpdateError::BadSignature)?;
    Ok(sig.trusted_comment)
}

fn blake2b_file(path: &Path) -> Result<[u8; 64], UpdateError> {
    let mut f = std::fs::File::open(path).map_err(|e| UpdateError::read(path, e))?;
    let mut h = Blake2b::default();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| UpdateError::read(path, e))?;
        if n == 0 {
            return Ok(h.finalize());
        }
        h.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with minisign 0.11: `minisign -G -W`, then `minisign -S -m f -t ...` over "hello\n".
    const PUB: &str = "untrusted comment: minisign public key 20F6004AC470591F\nRWQfWXDESgD2IMV8NmzSKaJwWFJh2ZEoDkyk8VQ0+X3HPzOeAv1yLgxd\n";
    const SIG: &str = "untrusted comment: signature from minisign secret key
RUQfWXDESgD2ICcTtYBFQVNritWjbXG4HYkYdsRe3rBpbofnQM0Ur0LZFLG/AEvj0enoKdsxxTqH6rVyVmnC5KQfPLwA1ZV4oQ8=
trusted comment: edge-gateway 0.1.1 store=1 records=1-3
ZtryFN8z+rI5pwO0mswNhGeCGp6HsrHHmK4hZiStR90tQGla8hEY0CT8mJkov23YB1VslkzxvR6NJ8EbVzh5Ag==
";

    #[test]
    fn a_minisign_signature_verifies_and_any_change_is_refused() {
        let k = PublicKey::parse(PUB).unwrap();
        assert_eq!(k.id(), "20F6004AC470591F");
        assert_eq!(PublicKey::parse(PUB.lines().nth(1).unwrap()).unwrap().id(), k.id());
        assert!(matches!(PublicKey::parse("RWQf"), Err(UpdateError::Key(_))));
        let dir = tempfile::tempdir().unwrap();
        let (file, sig) = (dir.path().join("f"), dir.path().join("f.minisig"));
        std::fs::write(&file, "hello\n").unwrap();
        std::fs::write(&sig, SIG).unwrap();
        assert_eq!(verify(&file, &sig, std::slice::from_ref(&k)).unwrap(), "edge-gateway 0.1.1 store=1 records=1-3");
        // The file changed.
        std::fs::write(&file, "hellp\n").unwrap();
        assert!(matches!(verify(&file, &sig, std::slice::from_ref(&k)), Err(UpdateError::BadSignature)));
        std::fs::write(&file, "hello\n").unwrap();
        // The trusted comment changed (a version raised by hand).
        std::fs::write(&sig, SIG.replace("0.1.1", "9.1.1")).unwrap();
        assert!(matches!(verify(&file, &sig, std::slice::from_ref(&k)), Err(UpdateError::BadSignature)));
        // The same signature marked as a legacy one (over the digest as if it were the file).
        std::fs::write(&sig, SIG.replacen("RUQ", "RWQ", 1)).unwrap();
        assert!(matches!(verify(&file, &sig, std::slice::from_ref(&k)), Err(UpdateError::SignatureFile(_))));
        // Another key.
        std::fs::write(&sig, SIG).unwrap();
        let mut other = k.clone();
        other.id[0] ^= 1;
        assert!(matches!(verify(&file, &sig, &[other]), Err(UpdateError::UnknownKey(_))));
    }
}
