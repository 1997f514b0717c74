//! The Debian package: `scripts/package.sh` builds it around the binary under test; lintian
//! finds nothing but the tag an upload outside Debian always has; installed into a throwaway
//! root (extracted, with the shared libraries the binary needs), the installed conffile passes
//! `edge-gateway check-config` inside that root once its TLS files are deployed, and names them
//! while they are missing.

use std::path::Path;
use std::process::Command;

use crate::harness;
use crate::util::{self, text};

/// Tags a package built outside Debian's archive always gets (no ITP bug to close).
const EXPECTED_TAGS: &[&str] = &["initial-upload-closes-no-bugs"];

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
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

    let lint = Command::new(util::require("lintian")).args(["--tag-display-limit", "0", &deb]).output().expect("lintian");
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
            .output()
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
