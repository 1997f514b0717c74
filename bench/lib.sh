# shellcheck shell=bash
# bench/lib.sh: helpers shared by bench/tls.sh, bench/tracing.sh, bench/coldstart.sh,
# bench/routing.sh, bench/backlog.sh, bench/idle.sh, bench/connect_instructions.sh,
# bench/fleet.sh and bench/archive.sh (sourced, not run). Set SCRIPT (for messages) and
# DATA_ROOT before using them.

die() { echo "$SCRIPT: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }
positive() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive integer, got '$2'"; }
# field JSON NAME: a number from a one-line JSON object.
field() { sed -E "s/.*\"$2\":([0-9.]+).*/\1/" <<<"$1"; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
CLK_TCK=$(getconf CLK_TCK)
# server_cpu_ticks: user + system CPU of the server this shell started, in CLK_TCK ticks.
server_cpu_ticks() { sed 's/.*) //' "/proc/$SERVER_PID/stat" | awk '{ print $12 + $13 }'; }

SERVER_PID=""
# shellcheck disable=SC2120  # callers may pass TENTHS
# stop_server [TENTHS]: SIGTERM the server this shell started, wait up to TENTHS/10 s for a
# graceful stop (default 10 s), then SIGKILL.
stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq "${1:-100}"); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# wait_ready WHAT LOG CHECK...: poll CHECK (a command) every 0.1 s for 30 s while the server
# this shell started is alive; on failure show the end of LOG.
wait_ready() {
    local what=$1 log=$2
    shift 2
    for _ in $(seq 300); do
        "$@" >/dev/null 2>&1 && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$log" >&2; die "$what exited during startup"; }
        sleep 0.1
    done
    die "$what not ready after 30 s"
}

# bench_workdir NAME: WORK = a fresh dir under DATA_ROOT; on exit (also Ctrl-C) the server is
# stopped and WORK removed.
bench_workdir() {
    WORK=$(mktemp -d "$DATA_ROOT/$1.XXXXXX")
    trap 'stop_server; rm -rf "$WORK"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# The cargo profile release_binaries builds and runs: release, or dist (what scripts/release.sh
# ships); a script's --profile option sets it after sourcing this file.
BUILD_PROFILE=release

# release_binaries EXAMPLE [MORE...]: cd to the repository; set ROOT, GATEWAY, EXAMPLE_BIN (the
# edge-gateway and examples/EXAMPLE of cargo profile BUILD_PROFILE, honouring CARGO_TARGET_DIR)
# and EXAMPLES (that folder), building them and the MORE examples first unless BUILD=0.
release_binaries() {
    ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    cd "$ROOT"
    local target=${CARGO_TARGET_DIR:-$ROOT/target} profile=$BUILD_PROFILE example
    GATEWAY=$target/$profile/edge-gateway
    EXAMPLES=$target/$profile/examples
    EXAMPLE_BIN=$EXAMPLES/$1
    if [[ ${BUILD:-1} -eq 1 ]]; then
        log "building (profile $profile)"
        cargo build --profile "$profile" --locked --bin edge-gateway "${@/#/--example=}" >&2
    fi
    [[ -x "$GATEWAY" ]] || die "missing $GATEWAY (build first)"
    for example in "$@"; do
        [[ -x "$EXAMPLES/$example" ]] || die "missing $EXAMPLES/$example (build first)"
    done
}

# shellcheck source=bench/install.sh
source "$(dirname "${BASH_SOURCE[0]}")/install.sh"  # install_pkg, find_mosquitto

# mosquitto_bin: MOSQUITTO = the mosquitto broker (on PATH or in /usr/sbin), installed with
# apt-get when missing (as root; otherwise it says how), or die.
mosquitto_bin() {
    MOSQUITTO=$(find_mosquitto)
    [[ -n "$MOSQUITTO" ]] || { install_pkg mosquitto; MOSQUITTO=$(find_mosquitto); }
    [[ -n "$MOSQUITTO" ]] || die "mosquitto still not found after installing it"
}

tcp_open() { : 3<>"/dev/tcp/$1/$2"; }

# open_idle DIR CPUS N [IDLE_OPTION...]: examples/idle ($IDLE), on CPUS, opens N connections to
# HOST:PORT one after another and holds them until close_idle (its stdin is a fifo that fd 7
# keeps open); returns once they are open (its JSON line in DIR/idle.json), or dies.
IDLE_PID=""
open_idle() {
    local dir=$1 cpus=$2 n=$3
    shift 3
    mkfifo "$dir/hold"
    taskset -c "$cpus" "$IDLE" --addr "$HOST:$PORT" --connections "$n" "$@" <"$dir/hold" >"$dir/idle.json" &
    IDLE_PID=$!
    exec 7>"$dir/hold"
    for _ in $(seq 6000); do [[ -s "$dir/idle.json" ]] && break; kill -0 "$IDLE_PID" 2>/dev/null || break; sleep 0.1; done
    [[ -s "$dir/idle.json" ]] || die "the idle client did not open its connections (see $dir)"
}

# close_idle: the client of open_idle closes its connections and ends.
close_idle() {
    echo >&7; exec 7>&-
    wait "$IDLE_PID" || die "the idle client failed"
    IDLE_PID=""
}

# start_mosquitto DIR HOST PORT [CONF_LINE...]: mosquitto 2 (anonymous, in memory, plus the
# given config lines) pinned to cpu0 (or the CPUs in SERVER_CPUS), logging to DIR/server.log;
# returns once it listens.
start_mosquitto() {
    local dir=$1 host=$2 port=$3
    shift 3
    printf 'listener %s %s\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\n' "$port" "$host" >"$dir/mosquitto.conf"
    [[ $# -eq 0 ]] || printf '%s\n' "$@" >>"$dir/mosquitto.conf"
    taskset -c "${SERVER_CPUS:-0}" "$MOSQUITTO" -c "$dir/mosquitto.conf" >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    wait_ready mosquitto "$dir/server.log" tcp_open "$host" "$port"
}

# idle_gateway_config DIR HOST: DIR/gateway.toml (and its DIR/acl.toml) of the idle-connection
# benchmarks: MQTT on HOST:18860 with no connection limits, anonymous, HTTP on HOST:18861, a
# discard sink, data in DIR/data.
idle_gateway_config() {
    local dir=$1 host=$2
    printf '[[allow]]\nidentities = ["*"]\npublish = ["bench/#"]\n' >"$dir/acl.toml"
    cat >"$dir/gateway.toml" <<EOF
[gateway]
data_dir = "$dir/data"
[mqtt]
listen = "$host:18860"
max_connections = 0
max_new_connections_per_source = 0
[auth]
plain = "anonymous"
acl_file = "$dir/acl.toml"
[http]
listen = "$host:18861"
[[sinks]]
name = "null"
kind = "discard"
EOF
}

# backends VALUE: BACKENDS from a --backend value (redb, sqlite or both).
backends() {
    case "$1" in
        redb|sqlite) BACKENDS=("$1") ;;
        both) BACKENDS=(redb sqlite) ;;
        *) echo "$SCRIPT: --backend is redb, sqlite or both, got '$1'" >&2; exit 2 ;;
    esac
}
