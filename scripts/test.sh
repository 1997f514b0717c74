#!/usr/bin/env bash
# Run every test of edge-gateway on a fresh Debian machine with only the Rust toolchain:
# installs the peers the tests drive (mosquitto clients, the mosquitto broker the routing tests
# compare with, mosquitto_passwd, nats-server for the JetStream sink, systemd-analyze for the
# unit file, lintian, dpkg-dev and minisign for the Debian package and signed releases,
# promtool, faketime, curl,
# openssl, strace, qemu and dmsetup (the power-cut harness boots a guest; its kernel and busybox packages are
# fetched by the harness with `apt-get download`, so the package lists must be there), a Python venv with an OTLP receiver's packages and paho-mqtt for the chaos
# scripts) when missing, then runs the whole workspace's tests with the committed Cargo.lock.
# mosquitto_passwd comes with the broker's package: it is installed without starting its
# service (which would take port 1883 from the gateway's default config).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
{ command -v mosquitto_passwd && { command -v mosquitto || [ -x /usr/sbin/mosquitto ]; }; } >/dev/null 2>&1 || need+=(mosquitto)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v lintian >/dev/null 2>&1 || need+=(lintian)
command -v minisign >/dev/null 2>&1 || need+=(minisign)
command -v dpkg-shlibdeps >/dev/null 2>&1 || need+=(dpkg-dev)
{ command -v nats-server || [ -x /usr/sbin/nats-server ]; } >/dev/null 2>&1 || need+=(nats-server)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v faketime >/dev/null 2>&1 || need+=(faketime)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v strace >/dev/null 2>&1 || need+=(strace)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
{ command -v mkfs.ext4 || [ -x /sbin/mkfs.ext4 ]; } >/dev/null 2>&1 || need+=(e2fsprogs)
{ command -v dmsetup || [ -x /sbin/dmsetup ]; } >/dev/null 2>&1 || need+=(dmsetup)
# The harness downloads linux-image-amd64's kernel and busybox-static: the lists must know them.
lists_ok=1
apt-cache show linux-image-amd64 busybox-static >/dev/null 2>&1 || lists_ok=
if [ ${#need[@]} -gt 0 ] || [ -z "$lists_ok" ]; then
    echo "test.sh: installing ${need[*]:-nothing (updating the package lists)}" >&2
    if [ "$(id -u)" -ne 0 ]; then
        SUDO=sudo
    else
        SUDO=
    fi
    $SUDO apt-get update -qq
    # No package may start a service here (policy-rc.d exit 101: "action forbidden").
    no_start=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod 755 /usr/sbin/policy-rc.d
        no_start=1
    fi
    [ ${#need[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    [ -z "$no_start" ] || $SUDO rm -f /usr/sbin/policy-rc.d
fi
# Fail, never skip, when a peer is still missing.
for bin in mosquitto_pub mosquitto_sub mosquitto_passwd promtool faketime openssl strace curl stdbuf systemd-analyze lintian dpkg-shlibdeps minisign qemu-system-x86_64; do
    command -v "$bin" >/dev/null 2>&1 || { echo "test.sh: $bin is required and could not be installed" >&2; exit 1; }
done
{ command -v nats-server || [ -x /usr/sbin/nats-server ]; } >/dev/null 2>&1 || { echo "test.sh: nats-server is required and could not be installed" >&2; exit 1; }

# The OTLP receiver the tracing tests start (tests/peers/otlp_receiver.py) needs grpcio and
# opentelemetry-proto from PyPI, the chaos scripts paho-mqtt and (with --sink nats) nats-py, the
# archive tests pyarrow (an independent Parquet reader) and moto (an S3 server): a venv under
# target/ keeps them away from the system Python.
VENV=target/test-venv
if ! "$VENV/bin/python" -c 'import grpc, opentelemetry.proto, paho.mqtt, nats, pyarrow, moto, boto3' >/dev/null 2>&1; then
    echo "test.sh: installing opentelemetry-proto, grpcio, paho-mqtt, nats-py, pyarrow and moto into $VENV" >&2
    mkdir -p target
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'opentelemetry-proto==1.45.2' 'grpcio==1.85.3' 'paho-mqtt==2.2.0' 'nats-py==2.16.0' \
        'pyarrow==26.0.1' 'moto[server]==5.2.5'
fi
"$VENV/bin/python" -c 'import grpc, opentelemetry.proto, paho.mqtt, nats, pyarrow, moto, boto3' || { echo "test.sh: the test venv's Python packages could not be installed" >&2; exit 1; }
export EDGE_GATEWAY_TEST_PYTHON=$PWD/$VENV/bin/python

# Tests start many gateways at once: give them file descriptors.
ulimit -n 65536 2>/dev/null || true
exec cargo test --workspace --locked "$@"
