#!/usr/bin/env bash
# bench/tls.sh: the mTLS reconnect storm and durable QoS1 ingest over mTLS vs plain TCP.
# See docs/BENCHMARKS.md for what it measures and how to read it.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/tls.sh [options]

Makes a dev PKI with DEVICES device certificates (examples/tlsload pki), then RUNS times, each
against a fresh edge-gateway (release build, pinned to cpu0, fresh data dir, discard sink):
  storm       every device connects at once over mTLS (handshake + CONNECT/CONNACK);
              reports the time until the last CONNACK and the handshake rate
  ingest/tcp  8 clients x MESSAGES QoS1 over plain TCP (durable: group commit, fsync)
  ingest/tls  the same over mTLS
The load generator (examples/tlsload, one thread) is pinned to cpu1. Medians on stdout as
markdown; progress on stderr.

options:
  --runs N         runs per row; the median is reported (default 3)
  --devices N      devices in the storm (default 5000)
  --messages N     messages per ingest client (default 5000)
  --clients N      ingest clients (default 8)
  --data-root DIR  where the temp dirs go (default: $TMPDIR or /tmp); use the disk to measure
  --skip-build     use the binaries already in target/release
  -h, --help       this text

The storm also runs against mosquitto 2 (mTLS, require_certificate, same PKI, pinned to cpu0)
in the same run, as the peer figure. Needs: cargo, taskset, curl, mosquitto, 2 CPUs. Listens
only on 127.0.0.1:18850-18853.
EOF
}

RUNS=3
DEVICES=5000
MESSAGES=5000
CLIENTS=8
DATA_ROOT="${TMPDIR:-/tmp}"
BUILD=1
SCRIPT=bench/tls.sh
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --skip-build) BUILD=0; shift; continue ;;
        --runs|--devices|--messages|--clients|--data-root) [[ $# -ge 2 ]] || die "$1 needs a value" ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    case "$1" in
        --runs) positive "$1" "$2"; RUNS=$2 ;;
        --devices) positive "$1" "$2"; DEVICES=$2 ;;
        --messages) positive "$1" "$2"; MESSAGES=$2 ;;
        --clients) positive "$1" "$2"; CLIENTS=$2 ;;
        --data-root) DATA_ROOT=$2 ;;
    esac
    shift 2
done

cd "$(dirname "$0")/.."
command -v taskset >/dev/null || die "taskset is required"
command -v curl >/dev/null || die "curl is required"
command -v mosquitto >/dev/null || die "mosquitto is required (apt-get install mosquitto; stop its service)"
[[ $(nproc) -ge 2 ]] || die "needs 2 CPUs (server on cpu0, load on cpu1)"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[[ $(ulimit -n) == unlimited || $(ulimit -n) -gt $((DEVICES + 200)) ]] || die "open-file limit $(ulimit -n) is too low for $DEVICES devices"
if [[ $BUILD == 1 ]]; then
    log "building (release)"
    cargo build --release --locked --bin edge-gateway --example tlsload >&2
fi
GATEWAY=target/release/edge-gateway
TLSLOAD=target/release/examples/tlsload
[[ -x $GATEWAY && -x $TLSLOAD ]] || die "missing $GATEWAY or $TLSLOAD (build first)"

bench_workdir edge-gateway-tlsbench

# start_gateway DIR tcp|tls: plain TCP (anonymous, lab) or mTLS only.
start_gateway() {
    local dir=$1 plain=false tls=true
    [[ $2 == tcp ]] && { plain=true; tls=false; }
    mkdir -p "$dir"
    cat >"$dir/gateway.toml" <<EOF
[gateway]
data_dir = "$dir/data"
[mqtt]
plain = $plain
listen = "127.0.0.1:18850"
connect_timeout_secs = 120
max_connections = $((DEVICES + 1000))
max_new_connections_per_source = 0
[auth]
plain = "anonymous"
[tls]
enabled = $tls
listen = "127.0.0.1:18852"
cert = "$WORK/pki/server.pem"
key = "$WORK/pki/server.key"
ca = "$WORK/pki/ca.pem"
handshake_timeout_secs = 120
[http]
listen = "127.0.0.1:18851"
[[sinks]]
name = "null"
kind = "discard"
EOF
    taskset -c 0 "$GATEWAY" run --config "$dir/gateway.toml" >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    wait_ready gateway "$dir/server.log" curl -sf http://127.0.0.1:18851/readyz
}

# start_mosquitto DIR: the peer for the storm, mTLS with the same PKI (in memory, no ACL).
start_mosquitto() {
    local dir=$1
    mkdir -p "$dir"
    cat >"$dir/mosquitto.conf" <<EOF
user root
persistence false
log_dest stderr
log_type error
max_connections -1
listener 18853 127.0.0.1
cafile $WORK/pki/ca.pem
certfile $WORK/pki/server.pem
keyfile $WORK/pki/server.key
require_certificate true
use_identity_as_username true
EOF
    taskset -c 0 mosquitto -c "$dir/mosquitto.conf" >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    wait_ready mosquitto "$dir/server.log" bash -c ': 3<>/dev/tcp/127.0.0.1/18853'
}


log "issuing $DEVICES device certificates"
PKI_JSON=$(taskset -c 1 "$TLSLOAD" pki --dir "$WORK/pki" --count "$DEVICES")
log "pki: $PKI_JSON"

declare -a STORM_S STORM_RATE MOSQ_S MOSQ_N TCP TLS
for run in $(seq "$RUNS"); do
    start_gateway "$WORK/run$run-storm" tls
    out=$(taskset -c 1 "$TLSLOAD" storm --addr 127.0.0.1:18852 --dir "$WORK/pki" --count "$DEVICES" --timeout 120)
    log "run $run storm: $out"
    STORM_S+=("$(field "$out" all_connected_s)"); STORM_RATE+=("$(field "$out" handshakes_per_s)")
    stop_server
    start_mosquitto "$WORK/run$run-mosquitto"
    # The peer may not finish (mosquitto listens with a backlog of 100: SYNs of a storm are
    # dropped and retried with exponential backoff); its row then shows how many connected.
    out=$(taskset -c 1 "$TLSLOAD" storm --addr 127.0.0.1:18853 --dir "$WORK/pki" --count "$DEVICES" --timeout 120 || true)
    log "run $run storm/mosquitto: $out"
    MOSQ_S+=("$(field "$out" all_connected_s)"); MOSQ_N+=("$(field "$out" connected)")
    stop_server
    for mode in tcp tls; do
        start_gateway "$WORK/run$run-$mode" "$mode"
        if [[ $mode == tcp ]]; then
            out=$(taskset -c 1 "$TLSLOAD" ingest --addr 127.0.0.1:18850 --clients "$CLIENTS" --messages "$MESSAGES")
            TCP+=("$(field "$out" msg_per_s)")
        else
            out=$(taskset -c 1 "$TLSLOAD" ingest --addr 127.0.0.1:18852 --dir "$WORK/pki" --clients "$CLIENTS" --messages "$MESSAGES")
            TLS+=("$(field "$out" msg_per_s)")
        fi
        log "run $run ingest/$mode: $out"
        stop_server
    done
done

m_storm=$(printf '%s\n' "${STORM_S[@]}" | median)
m_rate=$(printf '%s\n' "${STORM_RATE[@]}" | median)
m_mosq=$(printf '%s\n' "${MOSQ_S[@]}" | median)
m_tcp=$(printf '%s\n' "${TCP[@]}" | median)
m_tls=$(printf '%s\n' "${TLS[@]}" | median)
echo "| measure ($RUNS runs, median) | value |"
echo "|---|---|"
echo "| storm: $DEVICES mTLS devices at once, time to last CONNACK | ${m_storm} s (runs: ${STORM_S[*]}) |"
echo "| storm: handshakes + CONNECTs per second | ${m_rate} /s (runs: ${STORM_RATE[*]}) |"
echo "| storm, peer: mosquitto 2 (mTLS, require_certificate), time to last CONNACK (or to the 120 s bound) | ${m_mosq} s (runs: ${MOSQ_S[*]}; connected: ${MOSQ_N[*]} of $DEVICES) |"
echo "| storm: edge-gateway / mosquitto time | $(awk -v a="$m_storm" -v b="$m_mosq" 'BEGIN {printf "%.2f", a/b}') |"
echo "| durable ingest, $CLIENTS clients, plain TCP | ${m_tcp} msg/s (runs: ${TCP[*]}) |"
echo "| durable ingest, $CLIENTS clients, mTLS | ${m_tls} msg/s (runs: ${TLS[*]}) |"
echo "| mTLS / plain TCP | $(awk -v a="$m_tls" -v b="$m_tcp" 'BEGIN {printf "%.2f", a/b}') |"
