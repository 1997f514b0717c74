#!/usr/bin/env bash
# bench/connect_instructions.sh: user-space instructions per idle MQTT CONNECT, counted by
# valgrind's callgrind, for edge-gateway, mosquitto 2 and examples/connect_floor. See
# docs/BENCHMARKS.md ("Idle connections", eleventh step).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/connect_instructions.sh [options]

For edge-gateway, mosquitto 2 and examples/connect_floor in turn: start it under callgrind
(valgrind), zero its counters, open CONNECTIONS idle MQTT 3.1.1 connections one after another
from examples/idle (CONNECT, CONNACK, then nothing), dump the counters while the connections are
held, close them. Prints a markdown table on stdout (progress on stderr): instructions per
CONNECT on the server's busiest thread (the gateway's MQTT I/O thread) and on all its threads.

A count, not a time: the same build gives the same figure within ~1 %, whatever the host is
doing, so a change to the CONNECT path can be measured where the accept rate of bench/idle.sh
varies by 15 % from run to run. Kernel time (system calls, page faults) is not counted.
Under callgrind a CONNECT takes ~30 times as long, so each one is alone in the I/O thread's
2 ms batch of letters to the actor runtime (src/ingress/outbox.rs): at full speed ~16 CONNECTs
share a batch, so the gateway's all-threads figure over-counts that part.

options:
  --connections N   idle connections to open (default 2000)
  --data-root DIR   where the temp dirs go (default: $TMPDIR or /tmp)
  --profile NAME    release (default) or dist: the cargo profile to build and measure
  --skip-build      use the binaries already built in target/<profile>
  -h, --help        this text

Needs valgrind and mosquitto (installed with apt-get when missing and root). Loopback only:
127.0.0.4:18860 (gateway MQTT), :18861 (gateway HTTP), :18862 (mosquitto), :18863 (the floor).
EOF
}

SCRIPT=bench/connect_instructions.sh
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

CONNECTIONS=2000
DATA_ROOT="${TMPDIR:-/tmp}"
BUILD=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --skip-build) BUILD=0; shift; continue ;;
        --connections|--data-root|--profile) [[ $# -ge 2 ]] || die "$1 needs a value" ;;
        *) echo "$SCRIPT: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    case "$1" in
        --connections) positive "$1" "$2"; CONNECTIONS=$2 ;;
        --data-root) DATA_ROOT=$2 ;;
        --profile) case "$2" in release|dist) BUILD_PROFILE=$2 ;; *) die "--profile is release or dist, got '$2'" ;; esac ;;
    esac
    shift 2
done

release_binaries idle connect_floor  # cd to the repository, build unless --skip-build
IDLE=$EXAMPLE_BIN
FLOOR=$EXAMPLES/connect_floor
HOST=127.0.0.4
mosquitto_bin
command -v callgrind_control >/dev/null || install_pkg valgrind
command -v callgrind_control >/dev/null || die "valgrind still not found after installing it"
ulimit -n $((CONNECTIONS + 1024)) 2>/dev/null || [[ $(ulimit -n) -gt $((CONNECTIONS + 100)) ]] \
    || die "ulimit -n is $(ulimit -n): raise it above $CONNECTIONS"
bench_workdir edge-gateway-connect-instructions

# start SERVER DIR: the server under callgrind, ready; sets PORT.
start() {
    local dir=$2 out=$2/callgrind.out.%p
    local cg=(valgrind --tool=callgrind --separate-threads=yes "--callgrind-out-file=$out")
    if [[ $1 == gateway ]]; then
        idle_gateway_config "$dir" "$HOST"
        "${cg[@]}" "$GATEWAY" run --config "$dir/gateway.toml" >"$dir/server.log" 2>&1 &
        SERVER_PID=$!
        PORT=18860
        wait_ready edge-gateway "$dir/server.log" curl -sf -m 2 "http://$HOST:18861/readyz"
    elif [[ $1 == floor ]]; then
        "${cg[@]}" "$FLOOR" --listen "$HOST:18863" >"$dir/server.log" 2>&1 &
        SERVER_PID=$!
        PORT=18863
        wait_ready connect_floor "$dir/server.log" grep -q '^listening on' "$dir/server.log"
    else
        # `user` as started: mosquitto stays the user that started it, whom callgrind_control talks to.
        printf 'listener 18862 %s\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\nmax_connections -1\nuser %s\n' \
            "$HOST" "$(id -un)" >"$dir/mosquitto.conf"
        "${cg[@]}" "$MOSQUITTO" -c "$dir/mosquitto.conf" >"$dir/server.log" 2>&1 &
        SERVER_PID=$!
        PORT=18862
        wait_ready mosquitto "$dir/server.log" tcp_open "$HOST" "$PORT"
    fi
}

# measure SERVER: BUSIEST[SERVER] and ALL[SERVER], instructions per CONNECT.
declare -A BUSIEST ALL
measure() {
    local server=$1 dir=$WORK/$1
    mkdir -p "$dir"
    start "$server" "$dir"
    sleep 2
    timeout 60 callgrind_control --zero "$SERVER_PID" >/dev/null 2>&1 || die "$server: callgrind_control did not answer"
    open_idle "$dir" "0-$(( $(nproc --all) - 1 ))" "$CONNECTIONS"
    timeout 60 callgrind_control --dump "$SERVER_PID" >/dev/null 2>&1 || die "$server: callgrind_control did not answer"
    close_idle
    stop_server 600
    # The dump is part 1 of each thread's file: callgrind.out.PID.1-THREAD.
    local parts=("$dir"/callgrind.out.*.1-*)
    [[ -e "${parts[0]}" ]] || die "$server: callgrind wrote no dump (see $dir/server.log)"
    local counts
    counts=$(grep -h '^summary:' "${parts[@]}" | awk -v n="$CONNECTIONS" \
        '{ all += $2; if ($2 > max) max = $2 } END { printf "%.0f %.0f", max / n, all / n }')
    BUSIEST[$server]=${counts% *} ALL[$server]=${counts#* }
}

for server in gateway mosquitto floor; do
    log "$server: $CONNECTIONS idle connects under callgrind"
    measure "$server"
    log "$server: ${BUSIEST[$server]} instructions per CONNECT on its busiest thread, ${ALL[$server]} on all"
done

rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || rev="$rev (dirty)"
echo "### Instructions per idle CONNECT, $(date -u +%Y-%m-%d)"
echo
echo "commit $rev, cargo profile $BUILD_PROFILE; $(valgrind --version); $($MOSQUITTO -h 2>/dev/null | head -1 || true);" \
    "$CONNECTIONS MQTT 3.1.1 connections opened one after another; user-space instructions (callgrind Ir) while they were opened."
echo
echo "| server | busiest thread | all threads |"
echo "|---|---:|---:|"
for server in gateway mosquitto floor; do
    echo "| $server | ${BUSIEST[$server]} | ${ALL[$server]} |"
done
echo
echo "gateway / mosquitto: $(awk -v a="${BUSIEST[gateway]}" -v b="${BUSIEST[mosquitto]}" 'BEGIN { printf "%.2f", a / b }')x on the busiest thread," \
    "$(awk -v a="${ALL[gateway]}" -v b="${ALL[mosquitto]}" 'BEGIN { printf "%.2f", a / b }')x on all."
