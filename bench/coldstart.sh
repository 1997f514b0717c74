#!/usr/bin/env bash
# bench/coldstart.sh: time to ready on an empty data dir, and with a large backlog in the store.
# See docs/BENCHMARKS.md for what it measures and how to read it.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: bench/coldstart.sh [options]

1. Starts edge-gateway (release build, pinned to cpu0) on an empty data dir and times start ->
   /readyz 200, RUNS times.
2. Fills one store with MESSAGES durable QoS1 messages (examples/tlsload ingest, 8 clients, the
   only sink pointing at a closed port so nothing leaves), stops the gateway (SIGTERM), then
   RUNS times starts it on that store and times start -> /readyz 200, checking the backlog gauge
   to prove the messages are all there.
Prints medians as markdown; progress on stderr.

options:
  --runs N         runs per row (default 5)
  --messages N     backlog size (default 1000000)
  --data-root DIR  where the temp dirs go (default: $TMPDIR or /tmp); use the disk to measure
  --skip-build     use the binaries already in target/release
  -h, --help       this text

Needs: cargo, taskset, curl, 2 CPUs. Listens on 127.0.0.1:18870-18871.
USAGE
}

RUNS=5
MESSAGES=1000000
DATA_ROOT="${TMPDIR:-/tmp}"
BUILD=1
SCRIPT=bench/coldstart.sh
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --skip-build) BUILD=0; shift; continue ;;
        --runs|--messages|--data-root) [[ $# -ge 2 ]] || die "$1 needs a value" ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    case "$1" in
        --runs) positive "$1" "$2"; RUNS=$2 ;;
        --messages) positive "$1" "$2"; MESSAGES=$2 ;;
        --data-root) DATA_ROOT=$2 ;;
    esac
    shift 2
done

cd "$(dirname "$0")/.."
command -v taskset >/dev/null || die "taskset is required"
command -v curl >/dev/null || die "curl is required"
if [[ $BUILD == 1 ]]; then
    log "building (release)"
    cargo build --release --locked --bin edge-gateway --example tlsload >&2
fi
GATEWAY=target/release/edge-gateway
TLSLOAD=target/release/examples/tlsload
[[ -x $GATEWAY && -x $TLSLOAD ]] || die "missing $GATEWAY or $TLSLOAD (build first)"

bench_workdir edge-gateway-coldstart

now_ms() { date +%s%3N; }

write_config() {
    local dir=$1
    {
        echo '[gateway]'
        echo "data_dir = \"$dir/data\""
        echo '[mqtt]'
        echo 'listen = "127.0.0.1:18870"'
        echo 'max_new_connections_per_source = 0'
        echo '[auth]'
        echo 'plain = "anonymous"'
        echo '[http]'
        echo 'listen = "127.0.0.1:18871"'
        echo '[storage]'
        echo "quota_messages = $((MESSAGES + 1000))"
        echo 'quota_bytes = 4294967296'
        echo '[[sinks]]'
        echo 'name = "cloud"'
        echo 'kind = "http"'
        echo 'url = "http://127.0.0.1:18879/ingest"'
    } >"$dir/gateway.toml"
}

# start_timed DIR: start the gateway; LAST_MS = milliseconds until /readyz answers 200. Not in
# a subshell: SERVER_PID must reach stop_server (and a gateway already running on the ports
# would answer /readyz for the new one: refuse to start then).
LAST_MS=0
start_timed() {
    if curl -s -o /dev/null http://127.0.0.1:18871/readyz; then
        die "something already answers on 127.0.0.1:18871; stop it first"
    fi
    local t0
    t0=$(now_ms)
    taskset -c 0 "$GATEWAY" run --config "$1/gateway.toml" >>"$1/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 6000); do
        if curl -sf http://127.0.0.1:18871/readyz >/dev/null 2>&1; then
            LAST_MS=$(( $(now_ms) - t0 ))
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$1/server.log" >&2; die "gateway exited during startup"; }
        sleep 0.01
    done
    die "not ready after 60 s"
}

backlog_now() { curl -s http://127.0.0.1:18871/metrics | awk '/^gateway_backlog_messages /{print $2}'; }

declare -a EMPTY FULL
for run in $(seq "$RUNS"); do
    dir="$WORK/empty$run"; mkdir -p "$dir"; write_config "$dir"
    start_timed "$dir"; EMPTY+=("$LAST_MS"); log "empty data dir, run $run: ready in $LAST_MS ms"
    stop_server 600
done

dir="$WORK/full"; mkdir -p "$dir"; write_config "$dir"
start_timed "$dir"
per_client=$(( (MESSAGES + 7) / 8 ))
log "filling the store with $((per_client * 8)) messages"
taskset -c 1 "$TLSLOAD" ingest --addr 127.0.0.1:18870 --clients 8 --messages "$per_client" >&2
backlog=$(backlog_now)
log "backlog before stop: $backlog"
stop_server 600
for run in $(seq "$RUNS"); do
    start_timed "$dir"; FULL+=("$LAST_MS")
    seen=$(backlog_now)
    log "backlog $seen, run $run: ready in $LAST_MS ms"
    [[ "$seen" == "$backlog" ]] || die "backlog after restart is $seen, expected $backlog"
    stop_server 600
done
size=$(du -h --apparent-size "$dir/data/gateway.redb" | cut -f1)
echo "| start (median of $RUNS) | time to /readyz 200 |"
echo "|---|---|"
echo "| empty data dir | $(printf '%s\n' "${EMPTY[@]}" | median) ms (runs: ${EMPTY[*]}) |"
echo "| $backlog messages queued ($size store) | $(printf '%s\n' "${FULL[@]}" | median) ms (runs: ${FULL[*]}) |"
