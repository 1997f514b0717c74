#!/usr/bin/env bash
# scripts/package.sh: build edge-gateway's Debian package from a staged tree with dpkg-deb.
#
# usage: scripts/package.sh [--binary PATH] [--out DIR]
#   --binary  the edge-gateway binary to package (default target/dist/edge-gateway, what
#             cargo build --profile dist builds; scripts/release.sh passes its own)
#   --out     where the .deb goes (default target/debian); its path is printed on stdout
#
# Contents: /usr/bin/edge-gateway, the systemd unit, /etc/edge-gateway/gateway.toml and acl.toml
# (conffiles: the production configuration, mTLS only, no plain TCP), the man page, copyright
# and changelog. The postinst creates the system user and /var/lib/edge-gateway; it does not
# enable or start the service (the TLS files must be deployed first).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${CARGO_TARGET_DIR:-target}/dist/edge-gateway
OUT=target/debian
while [[ $# -gt 0 ]]; do
    case "$1" in
        --binary) BIN=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '/^set -euo pipefail/q; 2,$p' "$0"; exit 0 ;;
        *) echo "package.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[[ -x "$BIN" ]] || { echo "package.sh: $BIN is not an executable (cargo build --profile dist --locked first)" >&2; exit 1; }
for tool in dpkg-deb dpkg-shlibdeps gzip; do command -v "$tool" >/dev/null || { echo "package.sh: $tool is missing (dpkg-dev)" >&2; exit 1; }; done

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)-1
ARCH=$(dpkg --print-architecture)
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
install -D -m 0755 "$BIN" "$STAGE/usr/bin/edge-gateway"
strip --strip-unneeded "$STAGE/usr/bin/edge-gateway" 2>/dev/null || true
install -D -m 0644 packaging/edge-gateway.service "$STAGE/lib/systemd/system/edge-gateway.service"
install -D -m 0644 packaging/gateway.toml "$STAGE/etc/edge-gateway/gateway.toml"
install -D -m 0644 examples/acl.toml "$STAGE/etc/edge-gateway/acl.toml"
install -d -m 0755 "$STAGE/usr/share/man/man1" "$STAGE/usr/share/doc/edge-gateway"
gzip -9n <packaging/edge-gateway.1 >"$STAGE/usr/share/man/man1/edge-gateway.1.gz"
chmod 0644 "$STAGE/usr/share/man/man1/edge-gateway.1.gz"
cat >"$STAGE/usr/share/doc/edge-gateway/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: edge-gateway

Files: *
Copyright: 2026 the edge-gateway developers
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
printf 'edge-gateway (%s) unstable; urgency=medium\n\n  * Package built by scripts/package.sh.\n\n -- edge-gateway developers <dev@edge-gateway.example>  %s\n' \
    "$VERSION" "$(date -R -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")" \
    | gzip -9n >"$STAGE/usr/share/doc/edge-gateway/changelog.Debian.gz"
chmod 0644 "$STAGE/usr/share/doc/edge-gateway/"*

# Library dependencies as dpkg-shlibdeps computes them (it wants a debian/control to read).
SHLIB=$(mktemp -d)
mkdir -p "$SHLIB/debian"
printf 'Source: edge-gateway\n\nPackage: edge-gateway\nArchitecture: any\n' >"$SHLIB/debian/control"
DEPENDS=$(cd "$SHLIB" && dpkg-shlibdeps -O "$STAGE/usr/bin/edge-gateway" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
rm -rf "$SHLIB"

install -d -m 0755 "$STAGE/DEBIAN"
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
cat >"$STAGE/DEBIAN/control" <<EOF
Package: edge-gateway
Version: $VERSION
Section: net
Priority: optional
Architecture: $ARCH
Maintainer: edge-gateway developers <dev@edge-gateway.example>
Installed-Size: $SIZE
Depends: ${DEPENDS:+$DEPENDS, }adduser
Description: IoT edge gateway: MQTT in, durable store, forwarders to the cloud
 Accepts MQTT 3.1.1 and 5 from field devices (mTLS), stores every message
 durably before acknowledging it, and forwards it to an HTTP ingestion API,
 an upstream MQTT broker or NATS JetStream with an idempotency key per
 message. Also a local MQTT broker with persistent sessions. Runs as a
 systemd notify service with a watchdog.
EOF
printf '/etc/edge-gateway/acl.toml\n/etc/edge-gateway/gateway.toml\n' >"$STAGE/DEBIAN/conffiles"
cat >"$STAGE/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    if ! getent passwd edge-gateway >/dev/null; then
        adduser --system --group --home /var/lib/edge-gateway --no-create-home --quiet edge-gateway
    fi
    install -d -o edge-gateway -g edge-gateway -m 0750 /var/lib/edge-gateway
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null 2>&1 || true
    fi
    echo "edge-gateway: deploy the TLS files named in /etc/edge-gateway/gateway.toml, run" \
         "'edge-gateway check-config /etc/edge-gateway/gateway.toml', then" \
         "'systemctl enable --now edge-gateway'." >&2
fi
exit 0
EOF
cat >"$STAGE/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
    rm -rf /var/lib/edge-gateway
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
EOF
chmod 0755 "$STAGE/DEBIAN/postinst" "$STAGE/DEBIAN/postrm"
mkdir -p "$OUT"
DEB="$OUT/edge-gateway_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
