//! The Debian package: `scripts/package.sh` builds it around the binary under test; lintian
//! finds nothing but the tag an upload outside Debian always has; installed into a throwaway
//! root (extracted, with the shared libraries the binary needs), the installed conffile passes
//! `edge-gateway check-config` inside that root once its TLS files are deployed, and names them
//! while they are missing. Release artefacts: `scripts/release.sh`, signed and verified with
//! minisign.

use std::path::Path;
use std::process::Command;

use crate::harness;
use crate::util::OutputWithin;
use crate::util::{self, text};

/// Tags a package built outside Debian's archive always gets (no ITP bug to close).
const EXPECTED_TAGS: &[&str] = &["initial-upload-closes-no-bugs"];

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output_within().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", text(&out));
    out
}

/// Copy `bin`'s shared libraries (as ldd names them) into `root` at the same paths.
fn copy_libraries(bin: &Path, root: &Path) {
    let out = run(Command::new("ldd").arg(bin));
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let path = line.split_whitespace().find(|w| w.starts_with('/'));
        let Some(path) = path else { continue };
        let target = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(path, &target).unwrap_or_else(|e| panic!("copy {path}: {e}"));
    }
}

#[test]
fn the_deb_is_lintian_clean_and_its_conffile_passes_check_config_in_a_throwaway_root() {
    let dir = util::temp_dir();
    let out = run(Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/package.sh"))
        .arg("--binary")
        .arg(harness::binary())
        .arg("--out")
        .arg(dir.path().join("deb")));
    let deb = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let info = text(&run(Command::new("dpkg-deb").args(["--info", &deb])));
    assert!(info.contains("Package: edge-gateway") && info.contains("Depends: libc6"), "{info}");
    let contents = text(&run(Command::new("dpkg-deb").args(["--contents", &deb])));
    for f in [
        "./usr/bin/edge-gateway",
        "./lib/systemd/system/edge-gateway.service",
        "./etc/edge-gateway/gateway.toml",
        "./usr/share/man/man1/edge-gateway.1.gz",
    ] {
        assert!(contents.contains(f), "{f} in the package: {contents}");
    }
    let listed = text(&run(Command::new("sh").arg("-c").arg(format!("dpkg-deb --ctrl-tarfile {deb} | tar -xO ./conffiles"))));
    assert_eq!(listed, "/etc/edge-gateway/acl.toml\n/etc/edge-gateway/gateway.toml\n", "the configuration files are conffiles");

    let lint = Command::new(util::require("lintian")).args(["--tag-display-limit", "0", &deb]).output_within().expect("lintian");
    let tags: Vec<String> = String::from_utf8_lossy(&lint.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .filter(|t| !EXPECTED_TAGS.contains(&t.as_str()))
        .collect();
    assert!(tags.is_empty(), "lintian: {}", text(&lint));

    // Installed into a throwaway root: the files, and the libraries the binary needs.
    let root = dir.path().join("root");
    run(Command::new("dpkg-deb").args(["-x", &deb]).arg(&root));
    copy_libraries(&root.join("usr/bin/edge-gateway"), &root);
    let check = || {
        Command::new("chroot")
            .arg(&root)
            .args(["/usr/bin/edge-gateway", "check-config", "/etc/edge-gateway/gateway.toml"])
            .output_within()
            .expect("chroot")
    };
    let missing = check();
    assert!(
        !missing.status.success() && text(&missing).contains("/etc/edge-gateway/tls/server.pem"),
        "the missing TLS files are named: {}",
        text(&missing)
    );
    // The operator's step: deploy the TLS files (here from the dev PKI).
    let tls = root.join("etc/edge-gateway/tls");
    run(Command::new(harness::binary()).args(["certs", "ca", "--dir"]).arg(&tls));
    run(Command::new(harness::binary()).args(["certs", "server", "--ca-dir"]).arg(&tls).arg("--out").arg(tls.join("server")));
    let ok = check();
    assert!(ok.status.success() && text(&ok).contains("configuration OK"), "{}", text(&ok));
}

/// Release artefacts: SHA256SUMS over the binary and the .deb, signed in minisign's format with
/// a throwaway key; the standard `minisign` tool verifies the signature, `sha256sum -c` the
/// files, and both catch a changed byte. Without a key nothing is released.
#[test]
fn release_artefacts_are_checksummed_and_signed_so_that_minisign_verifies_them() {
    let dir = util::temp_dir();
    let (public, secret) = (dir.path().join("edge-gateway.pub"), dir.path().join("edge-gateway.key"));
    run(Command::new(util::require("minisign")).args(["-G", "-W", "-p"]).arg(&public).arg("-s").arg(&secret));
    let release = || {
        let mut c = Command::new("bash");
        c.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/release.sh"))
            .arg("--binary")
            .arg(harness::binary())
            .arg("--out")
            .arg(dir.path().join("out"));
        c
    };
    let unsigned = release().env_remove("EDGE_GATEWAY_SIGNING_KEY_FILE").env_remove("EDGE_GATEWAY_SIGNING_KEY").output_within().unwrap();
    assert!(!unsigned.status.success() && text(&unsigned).contains("no signing key"), "{}", text(&unsigned));
    let out = run(release()
        .env("EDGE_GATEWAY_SIGNING_KEY", std::fs::read_to_string(&secret).unwrap())
        .env("EDGE_GATEWAY_SIGNING_PUBLIC_KEY_FILE", &public));
    let out_dir = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let sums = std::fs::read_to_string(out_dir.join("SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), 3, "{sums}");
    assert!(sums.contains("-linux") && sums.contains("-linux.minisig") && sums.contains(".deb"), "{sums}");
    // The binary and its signature are an update bundle: signed with what it is.
    let binary = out_dir.join(sums.lines().find(|l| l.ends_with("-linux")).unwrap().split_whitespace().nth(1).unwrap());
    let bundle = Command::new("minisign").arg("-Vm").arg(&binary).arg("-p").arg(&public).output_within().unwrap();
    let describe = Command::new(harness::binary()).args(["update", "describe"]).output_within().unwrap();
    let describe = String::from_utf8_lossy(&describe.stdout).trim().to_string();
    assert!(describe.starts_with("edge-gateway ") && describe.contains(" store="), "{describe}");
    assert!(bundle.status.success() && text(&bundle).contains(&format!("Trusted comment: {describe} (")), "{}", text(&bundle));
    let verify = || Command::new("minisign").arg("-Vm").arg(out_dir.join("SHA256SUMS")).arg("-p").arg(&public).output_within().unwrap();
    let checked = verify();
    assert!(checked.status.success() && text(&checked).contains("Trusted comment: edge-gateway"), "{}", text(&checked));
    run(Command::new("sha256sum").arg("-c").arg("SHA256SUMS").current_dir(&out_dir));
    // A changed byte: the checksum catches it in a file, the signature in SHA256SUMS.
    let deb = out_dir.join(sums.lines().find(|l| l.ends_with(".deb")).unwrap().split_whitespace().nth(1).unwrap());
    let mut bytes = std::fs::read(&deb).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&deb, bytes).unwrap();
    assert!(!Command::new("sha256sum").arg("-c").arg("SHA256SUMS").current_dir(&out_dir).output_within().unwrap().status.success());
    std::fs::write(out_dir.join("SHA256SUMS"), sums.replacen('0', "1", 1)).unwrap();
    assert!(!verify().status.success(), "a changed SHA256SUMS fails the signature");
}
