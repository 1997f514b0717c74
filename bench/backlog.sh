#!/usr/bin/env bash
# bench/backlog.sh: what a large backlog costs on each store engine: file size per million
# messages, time to ready after a SIGKILL, and the drain rate, redb and SQLite in one run.
# See docs/BENCHMARKS.md ("redb and SQLite").
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/backlog.sh [options]

For each --backend: start edge-gateway (pinned to cpu0) with its one sink unreachable, fill the
store with MESSAGES QoS1 messages from examples/loadgen (8 clients, pinned to cpu1), then
  1. size:   the store's files on disk (apparent size), per million messages;
  2. ready:  SIGKILL the gateway and time `run` until /readyz answers 200, RUNS times (median);
  3. drain:  restart with the sink replaced by a `discard` sink of the same name, and time until
             gateway_backlog_messages is 0: messages per second and server CPU per message.
Prints a markdown table on stdout; progress goes to stderr.

options:
  --backend B       redb, sqlite or both (default both)
  --messages N      backlog size (default 1000000)
  --runs N          SIGKILL/restart runs for the ready time (default 3)
  --payload BYTES   payload size (default 64)
  --data-root DIR   where the temp dirs go (default: $TMPDIR or /tmp); not tmpfs
  --skip-build      use the binaries already built in target/release
  -h, --help        this text

Listens only on loopback (127.0.0.2:18850 MQTT, :18851 HTTP).
EOF
}

SCRIPT=bench/backlog.sh
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

BACKENDS=(redb sqlite)
MESSAGES=1000000
RUNS=3
PAYLOAD=64
DATA_ROOT="${TMPDIR:-/tmp}"
BUILD=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --skip-build) BUILD=0; shift; continue ;;
        --backend|--messages|--runs|--payload|--data-root) [[ $# -ge 2 ]] || die "$1 needs a value" ;;
        *) echo "$SCRIPT: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    case "$1" in
        --backend) backends "$2" ;;
        --messages) positive "$1" "$2"; MESSAGES=$2 ;;
        --runs) positive "$1" "$2"; RUNS=$2 ;;
        --payload) positive "$1" "$2"; PAYLOAD=$2 ;;
        --data-root) DATA_ROOT=$2 ;;
    esac
    shift 2
done

release_binaries loadgen  # cd to the repository, build unless --skip-build
LOADGEN=$EXAMPLE_BIN
HOST=127.0.0.2
[[ $(nproc --all) -ge 2 ]] || die "needs 2 CPUs (server on cpu0, loadgen on cpu1)"
command -v taskset >/dev/null || die "taskset is missing (util-linux)"
command -v curl >/dev/null || die "curl is missing"
mkdir -p "$DATA_ROOT"
[[ $(stat -f -c %T "$DATA_ROOT") != tmpfs ]] || log "WARNING: $DATA_ROOT is tmpfs; fsync costs nothing there"
bench_workdir edge-gateway-backlog

# write_config DIR BACKEND SINK_KIND: one sink "cloud", unreachable (http to a closed port) or
# a discard sink; room for the whole backlog.
write_config() {
    local dir=$1 sink
    if [[ $3 == http ]]; then
        sink='kind = "http"
url = "http://127.0.0.1:9/ingest"
backoff_max_ms = 30000'
    else
        sink='kind = "discard"'
    fi
    printf '[[allow]]\nidentities = ["*"]\npublish = ["bench/#"]\n' >"$dir/acl.toml"
    cat >"$dir/gateway.toml" <<EOF
[gateway]
data_dir = "$dir/data"
[mqtt]
listen = "$HOST:18850"
max_inflight = 100
max_new_connections_per_source = 0
[auth]
plain = "anonymous"
acl_file = "$dir/acl.toml"
[http]
listen = "$HOST:18851"
[storage]
backend = "$2"
quota_messages = $((MESSAGES * 2))
quota_bytes = 17179869184
[[sinks]]
name = "cloud"
$sink
EOF
}

start() { taskset -c 0 "$GATEWAY" run --config "$1/gateway.toml" >>"$1/server.log" 2>&1 & SERVER_PID=$!; }
ready() { curl -sf "http://$HOST:18851/readyz" >/dev/null 2>&1; }
backlog() { curl -sf "http://$HOST:18851/metrics" | awk '$1 == "gateway_backlog_messages" { print $2 }'; }
now() { date +%s.%N; }

# until_ready DIR: seconds from now until /readyz is 200 (bounded: 600 s).
until_ready() {
    local t0
    t0=$(now)
    for _ in $(seq 60000); do
        ready && { awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; return 0; }
        kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$1/server.log" >&2; die "the gateway exited while starting"; }
        sleep 0.01
    done
    die "not ready after 600 s"
}

declare -A SIZE READY DRAIN DRAIN_CPU FILL
for b in "${BACKENDS[@]}"; do
    dir=$WORK/$b
    mkdir -p "$dir"
    write_config "$dir" "$b" http
    start "$dir"
    until_ready "$dir" >/dev/null
    log "$b: filling the store with $MESSAGES messages"
    line=$(taskset -c 1 "$LOADGEN" --addr "$HOST:18850" --clients 8 --messages $((MESSAGES / 8)) --payload "$PAYLOAD" \
        --inflight 100 --topic-prefix bench --timeout 900) || die "loadgen failed against $b"
    FILL[$b]=$(field "$line" msg_per_s)
    stored=$(backlog)
    [[ "$stored" == "$((MESSAGES / 8 * 8))" ]] || die "$b: backlog is $stored after the fill, expected $((MESSAGES / 8 * 8))"
    SIZE[$b]=$(du -c --apparent-size -B1 "$dir/data"/gateway."$b"* | tail -1 | cut -f1)
    log "$b: $stored stored, ${SIZE[$b]} bytes; SIGKILL and restart $RUNS times"
    times=()
    for _ in $(seq "$RUNS"); do
        kill -KILL "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
        start "$dir"
        times+=("$(until_ready "$dir")")
        log "  ready after ${times[-1]} s"
    done
    READY[$b]=$(printf '%s\n' "${times[@]}" | median)
    stop_server
    write_config "$dir" "$b" discard
    start "$dir"
    until_ready "$dir" >/dev/null
    t0=$(now); c0=$(server_cpu_ticks); left=$(backlog)
    for _ in $(seq 60000); do
        [[ "$(backlog)" == 0 ]] && break
        sleep 0.05
    done
    t1=$(now); c1=$(server_cpu_ticks)
    [[ "$(backlog)" == 0 ]] || die "$b: not drained after 3000 s"
    # From the first reading after ready: the forwarder starts draining while the gateway starts
    # (a backlog small enough to be gone by then has no rate to report).
    DRAIN[$b]=$(awk -v n="$left" -v a="$t0" -v b="$t1" 'BEGIN { if (n > 0) printf "%d", n / (b - a); else print "n/a" }')
    DRAIN_CPU[$b]=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$left" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "n/a" }')
    log "$b: drained at ${DRAIN[$b]} msg/s"
    stop_server
    rm -rf "$dir"
done

rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || rev="$rev (dirty)"
echo "### Backlog benchmark, $(date -u +%Y-%m-%d)"
echo
echo "commit $rev; $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc --all) CPUs; $MESSAGES messages of" \
    "$PAYLOAD B payload; ready time median of $RUNS SIGKILLs; data dir on $(stat -f -c %T "$WORK")."
echo
echo "| backend | fill msg/s (8 clients) | store MB per 1M messages | ready after SIGKILL s | drain msg/s | drain server CPU µs/msg |"
echo "|---|---:|---:|---:|---:|---:|"
for b in "${BACKENDS[@]}"; do
    mb=$(awk -v s="${SIZE[$b]}" -v n="$MESSAGES" 'BEGIN { printf "%.0f", s / 1048576 * 1e6 / n }')
    echo "| $b | ${FILL[$b]} | $mb | ${READY[$b]} | ${DRAIN[$b]} | ${DRAIN_CPU[$b]} |"
done
