#!/usr/bin/env bash
# bench/routing.sh: local routing (publish to subscribers), edge-gateway against mosquitto 2 in
# the same run: fan-in, fan-out and publisher/subscriber pairs. See docs/BENCHMARKS.md
# ("Local routing").
set -euo pipefail

usage() {
    cat <<'EOF2'
usage: bench/routing.sh [options]

For edge-gateway (redb store, group commit, a discarding sink) and mosquitto 2 (persistence
false), each pinned to cpu0 with a fresh data dir per run: examples/fanout (pinned to cpu1) in
three modes, QoS 1 (or --qos 2) publishes and subscriptions: fan-in (CLIENTS publishers, 1 subscriber),
fan-out (1 publisher, CLIENTS subscribers), pairs (CLIENTS publisher/subscriber pairs). RUNS
runs each; medians as a markdown table on stdout (progress on stderr): deliveries per second
and publish-to-delivery latency p50 / p99. The publishers send as fast as their PUBACKs allow
(100 in flight each): the latencies are those of a saturated broker, queues included.
With --open-loop, a second table: latency at a given load, per mode both servers offered the
same rate on a fixed schedule (half of the slower server's deliveries/s above, DURATION s per
run), latency from each message's scheduled send time to its delivery.

options:
  --clients N       publishers (fan-in), subscribers (fan-out) or pairs (default 8)
  --messages N      messages per publisher (default 5000, the fan-out publisher 20000)
  --runs N          runs per row (default 3)
  --open-loop       also the latency-at-a-given-load table
  --qos 1|2         QoS of the publishes and subscriptions (default 1)
  --persistent      subscribers in lasting sessions (clean session 0): the gateway queues
                    their QoS 1/2 deliveries in its store, mosquitto in memory
  --backlog         (implies --persistent) the subscribers are away while the messages are
                    published and come back after: deliveries/s is then the drain of their
                    queues, from the reconnect
  --idle-sessions N before every run, N more clients open persistent sessions (examples/idle,
                    MQTT 3.1.1, clean session 0) and stay connected and silent through it, as
                    the devices of a site that keep their sessions and only publish; their
                    entries have no subscription (default 0; at most 9,000 here)
  --duration SECS   seconds per open-loop run (default 10)
  --data-root DIR   where the temp dirs go (default: $TMPDIR or /tmp)
  --skip-build      use the binaries already built in target/release
  -h, --help        this text

Loopback only: 127.0.0.5:18870 (gateway MQTT), :18871 (gateway HTTP), :18872 (mosquitto).
EOF2
}

SCRIPT=bench/routing.sh
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

CLIENTS=8
MESSAGES=5000
FANOUT_MESSAGES=20000
RUNS=3
DATA_ROOT="${TMPDIR:-/tmp}"
BUILD=1
OPEN_LOOP=0
DURATION=10
QOS=1
PERSISTENT=()
SESSIONS=""
IDLE_SESSIONS=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --skip-build) BUILD=0; shift; continue ;;
        --open-loop) OPEN_LOOP=1; shift; continue ;;
        --persistent) PERSISTENT=(--persistent); SESSIONS=", persistent subscribers"; shift; continue ;;
        --backlog) PERSISTENT=(--backlog); SESSIONS=", persistent subscribers away while publishing (drain)"; shift; continue ;;
        --clients|--messages|--runs|--duration|--data-root|--qos|--idle-sessions) [[ $# -ge 2 ]] || die "$1 needs a value" ;;
        *) echo "$SCRIPT: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    case "$1" in
        --clients) positive "$1" "$2"; CLIENTS=$2 ;;
        --messages) positive "$1" "$2"; MESSAGES=$2; FANOUT_MESSAGES=$2 ;;
        --runs) positive "$1" "$2"; RUNS=$2 ;;
        --duration) positive "$1" "$2"; DURATION=$2 ;;
        --data-root) DATA_ROOT=$2 ;;
        --qos) [[ $2 == 1 || $2 == 2 ]] || die "--qos: 1 or 2"; QOS=$2 ;;
        --idle-sessions) [[ $2 =~ ^[0-9]+$ && $2 -le 9000 ]] || die "--idle-sessions: 0 to 9000"; IDLE_SESSIONS=$2 ;;
    esac
    shift 2
done

[[ $OPEN_LOOP == 0 || ${PERSISTENT[0]:-} != --backlog ]] || die "--open-loop measures latency while publishing; --backlog measures the drain after it"
release_binaries fanout idle  # cd to the repository, build unless --skip-build
FANOUT=$EXAMPLE_BIN
IDLE=$EXAMPLES/idle
HOST=127.0.0.5
mosquitto_bin
[[ $(nproc --all) -ge 2 ]] || die "needs 2 CPUs (server on cpu0, clients on cpu1)"
ulimit -n $((IDLE_SESSIONS * 2 + 1024)) 2>/dev/null || [[ $(ulimit -n) -gt $((IDLE_SESSIONS + 200)) ]] \
    || die "ulimit -n is $(ulimit -n): raise it above $IDLE_SESSIONS"
bench_workdir edge-gateway-routing
((IDLE_SESSIONS == 0)) || SESSIONS="$SESSIONS, $IDLE_SESSIONS idle persistent sessions beside them"

# hold_idle DIR: IDLE_SESSIONS idle persistent sessions on the server at PORT, held until
# release_idle; nothing when there are none.
hold_idle() {
    ((IDLE_SESSIONS > 0)) || return 0
    open_idle "$1" 1 "$IDLE_SESSIONS" --clean false
    # Their device entries are written after the CONNACKs (the session rows before them).
    sleep 3
}
release_idle() {
    [[ -z $IDLE_PID ]] || close_idle
}


# start SERVER DIR: the server, ready; sets PORT.
start() {
    local dir=$2
    if [[ $1 == gateway ]]; then
        printf '[[allow]]\nidentities = ["*"]\npublish = ["bench/#"]\nsubscribe = ["bench/#"]\n' >"$dir/acl.toml"
        cat >"$dir/gateway.toml" <<EOF2
[gateway]
data_dir = "$dir/data"
[mqtt]
listen = "$HOST:18870"
max_new_connections_per_source = 0
max_inflight = 100
[auth]
plain = "anonymous"
acl_file = "$dir/acl.toml"
[http]
listen = "$HOST:18871"
[broker]
max_queued = 1000000
session_max_queued = 10000000
[[sinks]]
name = "null"
kind = "discard"
EOF2
        taskset -c 0 "$GATEWAY" run --config "$dir/gateway.toml" >"$dir/server.log" 2>&1 &
        SERVER_PID=$!
        PORT=18870
        wait_ready edge-gateway "$dir/server.log" curl -sf "http://$HOST:18871/readyz"
    else
        PORT=18872
        # QoS 2: mosquitto 2.0.11 at its default of 20 in flight stops sending a subscriber's
        # queued messages once 20 exchanges were pipelined (rumqttc answers PUBRECs ahead of
        # PUBCOMPs); 100, as the gateway's max_inflight here, does not stall.
        local inflight=()
        [[ $QOS != 2 ]] || inflight=("max_inflight_messages 100")
        start_mosquitto "$dir" "$HOST" "$PORT" "max_queued_messages 1000000" "set_tcp_nodelay true" "${inflight[@]}"
    fi
}

jfield() { sed -E "s/.*\"$2\":([0-9.]+).*/\1/" <<<"$1"; }

# measure KEY MODE MESSAGES [fanout options]: RUNS runs against each server; medians into
# MPS, P50 and P99 under KEY,SERVER.
declare -A MPS P50 P99
measure() {
    local key=$1 mode=$2 messages=$3
    shift 3
    for server in gateway mosquitto; do
        mps=() p50=() p99=()
        for run in $(seq "$RUNS"); do
            dir=$WORK/$mode-$server-$run
            mkdir -p "$dir"
            start "$server" "$dir"
            hold_idle "$dir"
            line=$(taskset -c 1 "$FANOUT" --mode "$mode" --addr "$HOST:$PORT" --clients "$CLIENTS" --messages "$messages" --timeout 180 --qos "$QOS" "${PERSISTENT[@]}" "$@") \
                || { tail -n 20 "$dir/server.log" >&2; die "$mode against $server failed"; }
            release_idle
            stop_server
            log "$key, $server, run $run: $line"
            mps+=("$(jfield "$line" msg_per_s)") p50+=("$(jfield "$line" latency_p50_ms)") p99+=("$(jfield "$line" latency_p99_ms)")
            rm -rf "$dir"
        done
        MPS[$key,$server]=$(printf '%s\n' "${mps[@]}" | median)
        P50[$key,$server]=$(printf '%s\n' "${p50[@]}" | median)
        P99[$key,$server]=$(printf '%s\n' "${p99[@]}" | median)
    done
}

# publishers MODE / deliveries MODE: publishers in MODE, deliveries per message published.
publishers() { [[ $1 == fan-out ]] && echo 1 || echo "$CLIENTS"; }
deliveries() { [[ $1 == fan-out ]] && echo "$CLIENTS" || echo 1; }

MODES=(fan-in fan-out pairs)
declare -A RATE
for mode in "${MODES[@]}"; do
    messages=$MESSAGES
    [[ $mode != fan-out ]] || messages=$FANOUT_MESSAGES
    measure "$mode" "$mode" "$messages"
done
if ((OPEN_LOOP)); then
    for mode in "${MODES[@]}"; do
        # Half of the slower server's deliveries/s, as messages published a second.
        slower=$(awk -v a="${MPS[$mode,gateway]}" -v b="${MPS[$mode,mosquitto]}" 'BEGIN { print (a < b ? a : b) }')
        rate=$(awk -v s="$slower" -v d="$(deliveries "$mode")" 'BEGIN { printf "%d", s / 2 / d }')
        ((rate > 0)) || die "$mode: no rate to offer"
        RATE[$mode]=$rate
        per=$(awk -v r="$rate" -v p="$(publishers "$mode")" -v s="$DURATION" 'BEGIN { printf "%d", r / p * s }')
        measure "$mode-open" "$mode" "$((per > 0 ? per : 1))" --rate "$rate"
    done
fi

rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || rev="$rev (dirty)"
echo "### Local routing, $(date -u +%Y-%m-%d)"
echo
echo "commit $rev; $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc --all) CPUs;" \
    "$($MOSQUITTO -h 2>/dev/null | head -1 || true); QoS $QOS$SESSIONS, $CLIENTS clients, 64-byte payloads; median of $RUNS runs."
echo
echo "| mode | server | deliveries/s | latency p50 ms | latency p99 ms | gateway / mosquitto (deliveries/s) |"
echo "|---|---|---:|---:|---:|---:|"
for mode in "${MODES[@]}"; do
    for server in gateway mosquitto; do
        ratio=""
        [[ $server != gateway ]] || ratio=$(awk -v a="${MPS[$mode,gateway]}" -v b="${MPS[$mode,mosquitto]}" 'BEGIN { printf "%.2f", a / b }')
        echo "| $mode | $server | ${MPS[$mode,$server]} | ${P50[$mode,$server]} | ${P99[$mode,$server]} | $ratio |"
    done
done
((OPEN_LOOP)) || exit 0
echo
echo "Latency at a given load: open loop, both servers offered the same rate (half of the slower one's deliveries/s above), $DURATION s per run, median of $RUNS runs; latency from each message's scheduled send time to its delivery."
echo
echo "| mode | server | offered deliveries/s | deliveries/s | latency p50 ms | latency p99 ms | gateway / mosquitto (p99) |"
echo "|---|---|---:|---:|---:|---:|---:|"
for mode in "${MODES[@]}"; do
    offered=$((${RATE[$mode]} * $(deliveries "$mode")))
    for server in gateway mosquitto; do
        ratio=""
        [[ $server != gateway ]] || ratio=$(awk -v a="${P99[$mode-open,gateway]}" -v b="${P99[$mode-open,mosquitto]}" 'BEGIN { printf "%.2f", a / b }')
        echo "| $mode | $server | $offered | ${MPS[$mode-open,$server]} | ${P50[$mode-open,$server]} | ${P99[$mode-open,$server]} | $ratio |"
    done
done
