#!/usr/bin/env bash
# bench/fleet.sh: a fleet of gateways draining into one upstream engine. See docs/SCALING.md.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/fleet.sh [options]

Starts N edge-gateway processes on loopback (each its own data dir and gateway id, all sinks
pointing at one upstream that is not running yet), fills each store with MESSAGES QoS 1
messages from examples/loadgen (so every gateway holds a backlog, as after an outage), then
starts the upstream and times until every gateway's backlog is 0 (each gateway's own drain
time too). Upstreams, one after the other:
  nats:  nats-server -js; sinks kind "nats", subject_prefix "fleet", one stream FLEET;
  mqtt:  mosquitto 2 (in memory); sinks kind "mqtt", topic_prefix "fleet/gw-<i>/".
Prints a markdown table on stdout; progress goes to stderr. Everything shares the machine's
cores (no pinning): the figures are a fleet on one 2-core box, not per-core rates.

options:
  --gateways N      gateways (default 10)
  --messages N      backlog per gateway (default 20000)
  --sink S          nats, mqtt or both (default both)
  --payload BYTES   payload size (default 64)
  --data-root DIR   where the temp dirs go (default: $TMPDIR or /tmp); not tmpfs
  --skip-build      use the binaries already built in target/release
  -h, --help        this text

Listens only on loopback (127.0.0.3).
EOF
}

SCRIPT=bench/fleet.sh
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

GATEWAYS=10
MESSAGES=20000
SINKS=(nats mqtt)
PAYLOAD=64
DATA_ROOT="${TMPDIR:-/tmp}"
BUILD=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --skip-build) BUILD=0; shift; continue ;;
        --gateways|--messages|--sink|--payload|--data-root) [[ $# -ge 2 ]] || die "$1 needs a value" ;;
        *) echo "$SCRIPT: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    case "$1" in
        --gateways) positive "$1" "$2"; GATEWAYS=$2 ;;
        --messages) positive "$1" "$2"; MESSAGES=$2 ;;
        --sink) case "$2" in nats|mqtt) SINKS=("$2") ;; both) SINKS=(nats mqtt) ;; *) die "--sink is nats, mqtt or both" ;; esac ;;
        --payload) positive "$1" "$2"; PAYLOAD=$2 ;;
        --data-root) DATA_ROOT=$2 ;;
    esac
    shift 2
done
(( GATEWAYS <= 50 )) || die "--gateways: at most 50"

release_binaries loadgen
LOADGEN=$EXAMPLE_BIN
HOST=127.0.0.3
UPSTREAM_PORT=19400
nats_bin() { command -v nats-server || { [[ -x /usr/sbin/nats-server ]] && echo /usr/sbin/nats-server; } || true; }
NATS=""
if [[ " ${SINKS[*]} " == *" nats "* ]]; then
    NATS=$(nats_bin)
    [[ -n "$NATS" ]] || { install_pkg nats-server; NATS=$(nats_bin); }
fi
[[ " ${SINKS[*]} " != *" mqtt "* ]] || mosquitto_bin
command -v curl >/dev/null || die "curl is missing"
mkdir -p "$DATA_ROOT"
bench_workdir edge-gateway-fleet
PIDS=()
UPSTREAM_PID=""
cleanup_fleet() {
    for p in "${PIDS[@]}" $UPSTREAM_PID; do kill -KILL "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}" $UPSTREAM_PID; do wait "$p" 2>/dev/null || true; done
    PIDS=()
    UPSTREAM_PID=""
}
trap 'cleanup_fleet; stop_server; rm -rf "$WORK"' EXIT

mqtt_port() { echo $((19000 + 2 * $1)); }
http_port() { echo $((19001 + 2 * $1)); }
backlog() { curl -sf "http://$HOST:$(http_port "$1")/metrics" | awk '$1 == "gateway_backlog_messages" { print $2 }'; }
now() { date +%s.%N; }

# start_gateway I SINK: gateway I with its data dir, its sink towards the upstream port.
start_gateway() {
    local i=$1 dir=$WORK/$2/gw-$1 sink
    mkdir -p "$dir"
    if [[ $2 == nats ]]; then
        sink="kind = \"nats\"
url = \"nats://$HOST:$UPSTREAM_PORT\"
subject_prefix = \"fleet\"
stream = \"FLEET\""
    else
        sink="kind = \"mqtt\"
url = \"mqtt://$HOST:$UPSTREAM_PORT\"
topic_prefix = \"fleet/gw-$i/\""
    fi
    printf '[[allow]]\nidentities = ["*"]\npublish = ["bench/#"]\n' >"$dir/acl.toml"
    cat >"$dir/gateway.toml" <<EOF
[gateway]
data_dir = "$dir/data"
id = "gw-$i"
[mqtt]
listen = "$HOST:$(mqtt_port "$i")"
max_inflight = 100
max_new_connections_per_source = 0
[auth]
plain = "anonymous"
acl_file = "$dir/acl.toml"
[http]
listen = "$HOST:$(http_port "$i")"
[storage]
quota_messages = $((MESSAGES * 2))
[[sinks]]
name = "up"
$sink
timeout_ms = 10000
backoff_max_ms = 1000
EOF
    "$GATEWAY" run --config "$dir/gateway.toml" >>"$dir/server.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 300); do curl -sf "http://$HOST:$(http_port "$i")/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done
    tail -n 20 "$dir/server.log" >&2
    die "gateway $i not ready"
}

start_upstream() {
    local dir=$WORK/$1/upstream
    mkdir -p "$dir"
    if [[ $1 == nats ]]; then
        [[ -n "$NATS" ]] || die "nats-server still not found after installing it"
        "$NATS" -a "$HOST" -p "$UPSTREAM_PORT" -js -sd "$dir/js" >"$dir/server.log" 2>&1 &
    else
        printf 'listener %s %s\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nmax_inflight_messages 0\n' "$UPSTREAM_PORT" "$HOST" >"$dir/mosquitto.conf"
        "$MOSQUITTO" -c "$dir/mosquitto.conf" >"$dir/server.log" 2>&1 &
    fi
    UPSTREAM_PID=$!
    for _ in $(seq 300); do tcp_open "$HOST" "$UPSTREAM_PORT" 2>/dev/null && return 0; sleep 0.05; done
    die "$1 did not listen"
}

declare -A TOTAL_S RATE MEDIAN_S FILL
for sink in "${SINKS[@]}"; do
    log "$sink: starting $GATEWAYS gateways (upstream not running yet)"
    for i in $(seq 0 $((GATEWAYS - 1))); do start_gateway "$i" "$sink"; done
    fill_rates=()
    for i in $(seq 0 $((GATEWAYS - 1))); do
        line=$("$LOADGEN" --addr "$HOST:$(mqtt_port "$i")" --clients 4 --messages $((MESSAGES / 4)) --payload "$PAYLOAD" \
            --inflight 100 --topic-prefix bench --timeout 600) || die "loadgen failed against gateway $i"
        fill_rates+=("$(field "$line" msg_per_s)")
        [[ "$(backlog "$i")" == "$((MESSAGES / 4 * 4))" ]] || die "gateway $i holds $(backlog "$i") after the fill"
    done
    FILL[$sink]=$(printf '%s\n' "${fill_rates[@]}" | median)
    log "$sink: $GATEWAYS x $((MESSAGES / 4 * 4)) messages stored; starting the upstream"
    declare -A done_at=()
    t0=$(now)
    start_upstream "$sink"
    for _ in $(seq 12000); do
        left=0
        for i in $(seq 0 $((GATEWAYS - 1))); do
            [[ -n "${done_at[$i]:-}" ]] && continue
            if [[ "$(backlog "$i")" == "0" ]]; then done_at[$i]=$(now); else left=$((left + 1)); fi
        done
        (( left == 0 )) && break
        sleep 0.05
    done
    (( ${#done_at[@]} == GATEWAYS )) || die "$sink: not drained within 600 s"
    t_end=$(printf '%s\n' "${done_at[@]}" | sort -g | tail -1)
    TOTAL_S[$sink]=$(awk -v a="$t0" -v b="$t_end" 'BEGIN { printf "%.2f", b - a }')
    RATE[$sink]=$(awk -v n=$((GATEWAYS * (MESSAGES / 4 * 4))) -v s="${TOTAL_S[$sink]}" 'BEGIN { printf "%.0f", n / s }')
    MEDIAN_S[$sink]=$(for t in "${done_at[@]}"; do awk -v a="$t0" -v b="$t" 'BEGIN { printf "%.2f\n", b - a }'; done | median)
    log "$sink: drained in ${TOTAL_S[$sink]} s (${RATE[$sink]} msg/s over the fleet)"
    cleanup_fleet
    unset done_at
done

echo
echo "| upstream | gateways | backlog per gateway | fill (median loadgen msg/s per gateway) | fleet drained in | fleet drain msg/s | per gateway: median time to empty | per gateway msg/s (median) |"
echo "|---|---|---|---|---|---|---|---|"
for sink in "${SINKS[@]}"; do
    per=$(awk -v n=$((MESSAGES / 4 * 4)) -v s="${MEDIAN_S[$sink]}" 'BEGIN { printf "%.0f", n / s }')
    echo "| $sink | $GATEWAYS | $((MESSAGES / 4 * 4)) | ${FILL[$sink]} | ${TOTAL_S[$sink]} s | ${RATE[$sink]} | ${MEDIAN_S[$sink]} s | $per |"
done
