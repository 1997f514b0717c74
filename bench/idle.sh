#!/usr/bin/env bash
# bench/idle.sh: memory and accept rate for idle MQTT connections, edge-gateway against
# mosquitto 2 in the same run. See docs/BENCHMARKS.md ("Idle connections").
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/idle.sh [options]

For edge-gateway and mosquitto 2 in turn (each pinned to cpu0, fresh data dir): start it, read
its idle RSS, open CONNECTIONS idle MQTT 3.1.1 connections one after another from examples/idle
(pinned to cpu1; CONNECT, CONNACK, then nothing), read its RSS again, close them. With
--no-pin, servers and client run on any CPU, as they would when deployed. RUNS rounds
of both; prints medians as a markdown table on stdout (progress on stderr): idle RSS, RSS per
connection, connections accepted per second, the median time from the client's TCP connect to
its CONNACK (the client's per-connection medians, then the median over the runs: the rate
without the host's stalls, which move the accept rate 10-15 % from run to run here), server CPU
(user + system) per connection while they were opened.

options:
  --connections N   idle connections to open (default 10000)
  --runs N          runs per server (default 3)
  --data-root DIR   where the temp dirs go (default: $TMPDIR or /tmp)
  --profile NAME    release (default) or dist: the cargo profile to build and measure; dist
                    is what scripts/release.sh and the .deb ship (the idle RSS target's)
  --threads         also print each server thread's user and system CPU per connection
                    (medians over the runs; threads of one name are added up)
  --floor           also measure examples/connect_floor in every run: a bare tokio server that
                    only answers CONNECTs (one current-thread runtime, one task per
                    connection), the floor under any tokio-based gateway's cost per CONNECT
  --no-pin          pin nothing: each server (all its threads) and the client may use every
                    CPU (the gateway's actor runtime then runs beside its I/O thread, not on
                    the same CPU; mosquitto has one thread)
  --skip-build      use the binaries already built in target/<profile>
  -h, --help        this text

Needs ulimit -n above CONNECTIONS (raised here when allowed) and mosquitto (installed with
apt-get when missing and root). Loopback only: 127.0.0.4:18860 (gateway MQTT), :18861 (gateway
HTTP), :18862 (mosquitto), :18863 (the floor).
EOF
}

SCRIPT=bench/idle.sh
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

CONNECTIONS=10000
RUNS=3
DATA_ROOT="${TMPDIR:-/tmp}"
BUILD=1
SERVERS=(gateway mosquitto)
THREADS=0
SERVER_CPUS=0   # taskset lists; start_mosquitto (bench/lib.sh) reads SERVER_CPUS too
CLIENT_CPUS=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --skip-build) BUILD=0; shift; continue ;;
        --floor) SERVERS+=(floor); shift; continue ;;
        --threads) THREADS=1; shift; continue ;;
        --no-pin) SERVER_CPUS=0-$(( $(nproc --all) - 1 )); CLIENT_CPUS=$SERVER_CPUS; shift; continue ;;
        --connections|--runs|--data-root|--profile) [[ $# -ge 2 ]] || die "$1 needs a value" ;;
        *) echo "$SCRIPT: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    case "$1" in
        --connections) positive "$1" "$2"; CONNECTIONS=$2 ;;
        --runs) positive "$1" "$2"; RUNS=$2 ;;
        --data-root) DATA_ROOT=$2 ;;
        --profile) case "$2" in release|dist) BUILD_PROFILE=$2 ;; *) die "--profile is release or dist, got '$2'" ;; esac ;;
    esac
    shift 2
done

if [[ " ${SERVERS[*]} " == *" floor "* ]]; then
    release_binaries idle connect_floor  # cd to the repository, build unless --skip-build
else
    release_binaries idle
fi
IDLE=$EXAMPLE_BIN
FLOOR=$EXAMPLES/connect_floor
HOST=127.0.0.4
mosquitto_bin
[[ $(nproc --all) -ge 2 ]] || die "needs 2 CPUs (server on cpu0, client on cpu1)"
ulimit -n $((CONNECTIONS * 2 + 1024)) 2>/dev/null || [[ $(ulimit -n) -gt $((CONNECTIONS + 100)) ]] \
    || die "ulimit -n is $(ulimit -n): raise it above $CONNECTIONS"
bench_workdir edge-gateway-idle

rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$SERVER_PID/status"; }

# thread_ticks: "NAME USER SYSTEM" (clock ticks) per thread name of the server, threads of one
# name added up (spaces in a name become _).
thread_ticks() {
    local t
    for t in /proc/"$SERVER_PID"/task/*; do
        printf '%s %s\n' "$(tr ' ' _ <"$t/comm")" "$(sed 's/.*) //' "$t/stat" | awk '{ print $12, $13 }')"
    done | awk '{ u[$1] += $2; s[$1] += $3 } END { for (n in u) print n, u[n], s[n] }' | sort
}

# start SERVER DIR: the server, ready; sets PORT.
start() {
    local dir=$2
    if [[ $1 == gateway ]]; then
        idle_gateway_config "$dir" "$HOST"
        taskset -c "$SERVER_CPUS" "$GATEWAY" run --config "$dir/gateway.toml" >"$dir/server.log" 2>&1 &
        SERVER_PID=$!
        PORT=18860
        wait_ready edge-gateway "$dir/server.log" curl -sf "http://$HOST:18861/readyz"
    elif [[ $1 == floor ]]; then
        taskset -c "$SERVER_CPUS" "$FLOOR" --listen "$HOST:18863" >"$dir/server.log" 2>&1 &
        SERVER_PID=$!
        PORT=18863
        wait_ready connect_floor "$dir/server.log" grep -q '^listening on' "$dir/server.log"
    else
        PORT=18862
        start_mosquitto "$dir" "$HOST" "$PORT" "max_connections -1"
    fi
}

# One run of SERVER: idle RSS, RSS per connection, accept rate, server CPU per connection.
declare -A IDLES PERS RATES CONNECTS CPUS
measure() {
    local server=$1 run=$2 dir=$WORK/$1-$2
    mkdir -p "$dir"
    start "$server" "$dir"
    sleep 1
    local before after ticks
    before=$(rss_kb)
    ticks=$(server_cpu_ticks)
    [[ $THREADS -eq 1 ]] && thread_ticks >"$dir/threads.before"
    open_idle "$dir" "$CLIENT_CPUS" "$CONNECTIONS"
    ticks=$(( $(server_cpu_ticks) - ticks ))
    if [[ $THREADS -eq 1 ]]; then
        thread_ticks >"$dir/threads.after"
        # A thread started meanwhile counts from zero.
        join -a 2 -e 0 -o 0,1.2,1.3,2.2,2.3 "$dir/threads.before" "$dir/threads.after" \
            | awk -v s="$server" -v hz="$CLK_TCK" -v n="$CONNECTIONS" \
                '{ printf "%s %s %.1f %.1f\n", s, $1, ($4 - $2) * 1e6 / hz / n, ($5 - $3) * 1e6 / hz / n }' >>"$WORK/threads"
    fi
    sleep 2
    after=$(rss_kb)
    close_idle
    local line rate connect cpu
    line=$(cat "$dir/idle.json")
    rate=$(field "$line" per_s)
    connect=$(field "$line" connect_us_p50)
    cpu=$(awk -v t="$ticks" -v hz="$CLK_TCK" -v n="$CONNECTIONS" 'BEGIN { printf "%.0f", t * 1e6 / hz / n }')
    IDLES[$server]+="$before " PERS[$server]+="$(awk -v a="$after" -v b="$before" -v n="$CONNECTIONS" 'BEGIN { printf "%.2f", (a - b) / n }') "
    RATES[$server]+="$rate " CONNECTS[$server]+="$connect " CPUS[$server]+="$cpu "
    log "$server run $run: idle RSS $before kB, with $CONNECTIONS connections $after kB, $rate connections/s, median connect $connect us, $cpu us of CPU per connection"
    stop_server
}

# Servers take turns in every run, so a drift of the host's speed reaches both alike.
for run in $(seq "$RUNS"); do
    for server in "${SERVERS[@]}"; do measure "$server" "$run"; done
done
declare -A IDLE_KB PER_CONN_KB RATE CONNECT_US CPU_US
for server in "${SERVERS[@]}"; do
    IDLE_KB[$server]=$(printf '%s\n' ${IDLES[$server]} | median)
    PER_CONN_KB[$server]=$(printf '%s\n' ${PERS[$server]} | median)
    RATE[$server]=$(printf '%s\n' ${RATES[$server]} | median)
    CONNECT_US[$server]=$(printf '%s\n' ${CONNECTS[$server]} | median)
    CPU_US[$server]=$(printf '%s\n' ${CPUS[$server]} | median)
done

rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || rev="$rev (dirty)"
echo "### Idle connections, $(date -u +%Y-%m-%d)"
echo
echo "commit $rev, cargo profile $BUILD_PROFILE; $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc --all) CPUs;" \
    "$($MOSQUITTO -h 2>/dev/null | head -1 || true); $CONNECTIONS MQTT 3.1.1 connections opened one after another; server on CPUs $SERVER_CPUS, client on CPUs $CLIENT_CPUS; median of $RUNS runs."
echo
echo "| server | idle RSS MB | RSS per idle connection KB | connections accepted per s | median connect us | server CPU per connection us |"
echo "|---|---:|---:|---:|---:|---:|"
for server in "${SERVERS[@]}"; do
    echo "| $server | $(awk -v k="${IDLE_KB[$server]}" 'BEGIN { printf "%.1f", k / 1024 }') | ${PER_CONN_KB[$server]} | ${RATE[$server]} | ${CONNECT_US[$server]} | ${CPU_US[$server]} |"
done
echo
echo "gateway / mosquitto: RSS per connection $(awk -v a="${PER_CONN_KB[gateway]}" -v b="${PER_CONN_KB[mosquitto]}" 'BEGIN { printf "%.1f", a / b }')x," \
    "accept rate $(awk -v a="${RATE[gateway]}" -v b="${RATE[mosquitto]}" 'BEGIN { printf "%.2f", a / b }')x" \
    "($(awk -v a="${CONNECT_US[gateway]}" -v b="${CONNECT_US[mosquitto]}" 'BEGIN { printf "%.2f", b / a }')x at the median connect)," \
    "CPU per connection $(awk -v a="${CPU_US[gateway]}" -v b="${CPU_US[mosquitto]}" 'BEGIN { printf "%.2f", a / b }')x."
if [[ -n "${RATE[floor]:-}" ]]; then
    echo
    echo "floor / mosquitto: accept rate $(awk -v a="${RATE[floor]}" -v b="${RATE[mosquitto]}" 'BEGIN { printf "%.2f", a / b }')x," \
        "CPU per connection $(awk -v a="${CPU_US[floor]}" -v b="${CPU_US[mosquitto]}" 'BEGIN { printf "%.2f", a / b }')x;" \
        "gateway / floor: accept rate $(awk -v a="${RATE[gateway]}" -v b="${RATE[floor]}" 'BEGIN { printf "%.2f", a / b }')x."
fi
if [[ $THREADS -eq 1 ]]; then
    echo
    echo "| server | thread | user CPU per connection us | system CPU per connection us |"
    echo "|---|---|---:|---:|"
    for server in "${SERVERS[@]}"; do
        for thread in $(awk -v s="$server" '$1 == s { print $2 }' "$WORK/threads" | sort -u); do
            user=$(awk -v s="$server" -v t="$thread" '$1 == s && $2 == t { print $3 }' "$WORK/threads" | median)
            sys=$(awk -v s="$server" -v t="$thread" '$1 == s && $2 == t { print $4 }' "$WORK/threads" | median)
            # Threads that did nothing while the connections were opened are left out.
            awk -v u="$user" -v y="$sys" 'BEGIN { exit !(u + y > 0) }' && echo "| $server | $thread | $user | $sys |"
        done
    done
fi
