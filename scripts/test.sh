#!/usr/bin/env bash
# Run every test of edge-gateway on a fresh Debian machine with only the Rust toolchain:
# installs the peers the tests drive (mosquitto clients, promtool, faketime, openssl) when missing (not the
# mosquitto broker: its service would take port 1883 from the gateway's default config), then
# runs the whole workspace's tests with the committed Cargo.lock.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v faketime >/dev/null 2>&1 || need+=(faketime)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
    echo "test.sh: installing ${need[*]}" >&2
    if [ "$(id -u)" -ne 0 ]; then
        SUDO=sudo
    else
        SUDO=
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Fail, never skip, when a peer is still missing.
for bin in mosquitto_pub mosquitto_sub promtool faketime openssl; do
    command -v "$bin" >/dev/null 2>&1 || { echo "test.sh: $bin is required and could not be installed" >&2; exit 1; }
done

# Tests start many gateways at once: give them file descriptors.
ulimit -n 65536 2>/dev/null || true
exec cargo test --workspace --locked "$@"
