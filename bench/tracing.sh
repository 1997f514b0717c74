#!/usr/bin/env bash
# bench/tracing.sh: does tracing slow ingest when the OTLP collector is down?
# See docs/BENCHMARKS.md for what it measures and how to read it.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/tracing.sh [options]

Durable QoS1 ingest (examples/tlsload ingest: 8 clients over plain TCP, load generator pinned to
cpu1) against a fresh edge-gateway (release build, pinned to cpu0, discard sink), RUNS times in
each of two configurations, alternating:
  off   no [tracing] endpoint (no spans at all)
  down  tracing.otlp_endpoint = a loopback port nobody listens on, sample_ratio = 1.0: every
        message creates its receive, commit and forward spans and every export fails (worst case)
  ratio tracing on, collector down, the default sample_ratio = 0.01
Prints medians as markdown and the ratio down/off; progress on stderr.

options:
  --runs N         runs per configuration (default 5)
  --messages N     messages per client (default 25000)
  --clients N      clients (default 8)
  --data-root DIR  where the temp dirs go (default: $TMPDIR or /tmp); use the disk to measure
  --skip-build     use the binaries already in target/release
  -h, --help       this text

Needs: cargo, taskset, curl, 2 CPUs. Listens only on 127.0.0.1:18860-18861 (and refuses 18869).
EOF
}

RUNS=5
MESSAGES=25000
CLIENTS=8
DATA_ROOT="${TMPDIR:-/tmp}"
BUILD=1
SCRIPT=bench/tracing.sh
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --skip-build) BUILD=0; shift; continue ;;
        --runs|--messages|--clients|--data-root) [[ $# -ge 2 ]] || die "$1 needs a value" ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    case "$1" in
        --runs) positive "$1" "$2"; RUNS=$2 ;;
        --messages) positive "$1" "$2"; MESSAGES=$2 ;;
        --clients) positive "$1" "$2"; CLIENTS=$2 ;;
        --data-root) DATA_ROOT=$2 ;;
    esac
    shift 2
done

cd "$(dirname "$0")/.."
command -v taskset >/dev/null || die "taskset is required"
command -v curl >/dev/null || die "curl is required"
[[ $(nproc) -ge 2 ]] || die "needs 2 CPUs (server on cpu0, load on cpu1)"
if [[ $BUILD == 1 ]]; then
    log "building (release)"
    cargo build --release --locked --bin edge-gateway --example tlsload >&2
fi
GATEWAY=target/release/edge-gateway
TLSLOAD=target/release/examples/tlsload
[[ -x $GATEWAY && -x $TLSLOAD ]] || die "missing $GATEWAY or $TLSLOAD (build first)"

bench_workdir edge-gateway-tracebench

# start_gateway DIR off|down
start_gateway() {
    local dir=$1 tracing=""
    [[ $2 == down ]] && tracing=$'[tracing]\notlp_endpoint = "http://127.0.0.1:18869"\nsample_ratio = 1.0'
    [[ $2 == ratio ]] && tracing=$'[tracing]\notlp_endpoint = "http://127.0.0.1:18869"\nsample_ratio = 0.01'
    mkdir -p "$dir"
    cat >"$dir/gateway.toml" <<EOF
[gateway]
data_dir = "$dir/data"
[mqtt]
listen = "127.0.0.1:18860"
max_new_connections_per_source = 0
[auth]
plain = "anonymous"
[http]
listen = "127.0.0.1:18861"
$tracing
[[sinks]]
name = "null"
kind = "discard"
EOF
    taskset -c 0 "$GATEWAY" run --config "$dir/gateway.toml" >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    wait_ready gateway "$dir/server.log" curl -sf http://127.0.0.1:18861/readyz
}


declare -a OFF DOWN RATIO DROPPED
for run in $(seq "$RUNS"); do
    for mode in off down ratio; do
        start_gateway "$WORK/run$run-$mode" "$mode"
        out=$(taskset -c 1 "$TLSLOAD" ingest --addr 127.0.0.1:18860 --clients "$CLIENTS" --messages "$MESSAGES")
        rate=$(field "$out" msg_per_s)
        if [[ $mode == off ]]; then OFF+=("$rate"); elif [[ $mode == ratio ]]; then RATIO+=("$rate"); else
            DOWN+=("$rate")
            DROPPED+=("$(curl -s http://127.0.0.1:18861/metrics | awk '/^gateway_trace_spans_dropped_total /{print $2}')")
        fi
        log "run $run $mode: $out"
        stop_server
    done
done
m_off=$(printf '%s\n' "${OFF[@]}" | median)
m_down=$(printf '%s\n' "${DOWN[@]}" | median)
m_ratio=$(printf '%s\n' "${RATIO[@]}" | median)
echo "| configuration ($RUNS runs, $CLIENTS clients x $MESSAGES QoS1, median) | msg/s |"
echo "|---|---|"
echo "| tracing off | ${m_off} (runs: ${OFF[*]}) |"
echo "| tracing on, ratio 1.0, collector down | ${m_down} (runs: ${DOWN[*]}; spans dropped at the end of each run: ${DROPPED[*]}) |"
echo "| tracing on, default ratio 0.01, collector down | ${m_ratio} (runs: ${RATIO[*]}) |"
echo "| ratio 1.0 down / off | $(awk -v a="$m_down" -v b="$m_off" 'BEGIN {printf "%.3f", a/b}') |"
echo "| ratio 0.01 down / off | $(awk -v a="$m_ratio" -v b="$m_off" 'BEGIN {printf "%.3f", a/b}') |"
