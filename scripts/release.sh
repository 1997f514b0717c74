#!/usr/bin/env bash
# scripts/release.sh: the release artefacts of edge-gateway, checksummed and signed.
#
# usage: scripts/release.sh [--binary PATH] [--out DIR]
#   --binary  the edge-gateway binary (default: build it, cargo build --profile dist --locked:
#             the release build optimised as one program, Cargo.toml's [profile.dist])
#   --out     where the artefacts go (default target/release-artefacts/<version>)
#
# Writes the binary (stripped, as edge-gateway-<version>-<arch>-linux), the .deb
# (scripts/package.sh), SHA256SUMS over both, and SHA256SUMS.minisig: an Ed25519 signature in
# minisign's format (https://jedisct1.github.io/minisign/), so operators verify with the
# standard tool:
#     minisign -Vm SHA256SUMS -p edge-gateway.pub && sha256sum -c SHA256SUMS
# The binary is signed too (edge-gateway-<version>-<arch>-linux.minisig beside it): binary and
# signature are the bundle `edge-gateway update apply` takes. Its trusted comment is what
# `edge-gateway update describe` prints (version and store formats), so they are signed as well.
# The signing key is a minisign secret key without a password (`minisign -G -W`), from the file
# EDGE_GATEWAY_SIGNING_KEY_FILE or the contents of EDGE_GATEWAY_SIGNING_KEY (written to a 0600
# temporary file, removed after). It is never in the repository. Without a key nothing is
# released (exit 1). With EDGE_GATEWAY_SIGNING_PUBLIC_KEY_FILE the signature is verified too.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=
OUT=
while [[ $# -gt 0 ]]; do
    case "$1" in
        --binary) BIN=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '/^set -euo pipefail/q; 2,$p' "$0"; exit 0 ;;
        *) echo "release.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
command -v minisign >/dev/null || { echo "release.sh: minisign is missing (apt-get install minisign)" >&2; exit 1; }
KEY=${EDGE_GATEWAY_SIGNING_KEY_FILE:-}
if [[ -z "$KEY" && -n "${EDGE_GATEWAY_SIGNING_KEY:-}" ]]; then
    KEY=$(mktemp)
    trap 'rm -f "$KEY"' EXIT
    chmod 0600 "$KEY"
    printf '%s\n' "$EDGE_GATEWAY_SIGNING_KEY" >"$KEY"
fi
[[ -n "$KEY" && -r "$KEY" ]] || { echo "release.sh: no signing key (EDGE_GATEWAY_SIGNING_KEY_FILE or EDGE_GATEWAY_SIGNING_KEY): nothing released" >&2; exit 1; }

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
ARCH=$(dpkg --print-architecture)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -z "$BIN" ]]; then
    cargo build --profile dist --locked --bin edge-gateway >&2
    BIN=${CARGO_TARGET_DIR:-target}/dist/edge-gateway
fi
[[ -x "$BIN" ]] || { echo "release.sh: $BIN is not an executable" >&2; exit 1; }
OUT=${OUT:-target/release-artefacts/$VERSION}
mkdir -p "$OUT"
NAME="edge-gateway-$VERSION-$ARCH-linux"
install -m 0755 "$BIN" "$OUT/$NAME"
strip --strip-unneeded "$OUT/$NAME" 2>/dev/null || true
DEB=$(scripts/package.sh --binary "$BIN" --out "$OUT")
DESCRIBE="$("$OUT/$NAME" update describe) ($COMMIT)"
rm -f "$OUT/$NAME.minisig" "$OUT/SHA256SUMS.minisig"
minisign -S -s "$KEY" -m "$OUT/$NAME" -t "$DESCRIBE" >/dev/null
(cd "$OUT" && sha256sum "$NAME" "$NAME.minisig" "$(basename "$DEB")" >SHA256SUMS)
minisign -S -s "$KEY" -m "$OUT/SHA256SUMS" -t "$DESCRIBE" >/dev/null
if [[ -n "${EDGE_GATEWAY_SIGNING_PUBLIC_KEY_FILE:-}" ]]; then
    minisign -V -q -p "$EDGE_GATEWAY_SIGNING_PUBLIC_KEY_FILE" -m "$OUT/SHA256SUMS"
    minisign -V -q -p "$EDGE_GATEWAY_SIGNING_PUBLIC_KEY_FILE" -m "$OUT/$NAME"
fi
echo "$OUT"
