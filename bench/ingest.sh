#!/usr/bin/env bash
# bench/ingest.sh: MQTT QoS1 ingest benchmark. edge-gateway (redb and/or SQLite store) with and
# without group commit against mosquitto 2 (persistence off), 8 and 64 clients, median of N
# runs, markdown on stdout.
# See docs/BENCHMARKS.md for what it measures and how to read it.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/ingest.sh [options]

Runs examples/loadgen (pinned to cpu1) against, in turn, edge-gateway with group commit on each
--backend, edge-gateway without group commit (on the first backend), and mosquitto 2 with
`persistence false` (each pinned to cpu0), with 8 and 64 clients, each row RUNS times with a fresh server (and a fresh data dir),
and prints the medians as a markdown table on stdout. Progress goes to stderr.

options:
  --backend B         redb, sqlite or both: the store engine(s) to measure (default redb)
  --runs N            runs per row; the median is reported (default 3)
  --messages-8 N      messages per client with 8 clients (default 2000)
  --messages-64 N     messages per client with 64 clients (default 500)
  --payload BYTES     payload size (default 64)
  --inflight N        unacknowledged publishes per client (default 100)
  --timeout SECS      bound on one loadgen run (default 120)
  --data-root DIR     where the per-run temp dirs go (default: $TMPDIR or /tmp); put it on the
                      disk you want to measure, not on tmpfs
  --profile NAME      release (default) or dist: the cargo profile to build and measure; dist
                      is what scripts/release.sh and the .deb ship
  --skip-build        use the binaries already built in target/<profile>
  --baseline BIN      also measure another edge-gateway binary (an older build) with group
                      commit, in the same run, and print this build / baseline
  --open-loop         also measure latency at a given load: loadgen --rate (open loop, latency
                      from each message's scheduled send time), 8 clients, against the gateway
                      (group commit, each backend) and mosquitto, PUBACK p50/p99/p999; then the
                      disk alone (examples/diskprobe: fdatasync times on --data-root), and the
                      gateway (first backend) once more with its data dir on tmpfs (/dev/shm),
                      where fsync is free: the part of its latency that is not the disk's
  --rate MSG_PER_S    the open-loop rate (implies --open-loop); default: half of the gateway's
                      median 8-client group-commit msg/s measured in this run
  --open-secs SECS    length of one open-loop run (default 10)
  --rates R1,R2,...   only this: CPU by load. Open loop at each rate (8 clients, --open-secs
                      each) against the gateway (first backend, group commit; and --baseline)
                      and mosquitto: PUBACK p50/p99, server CPU per message, and the gateway's
                      commits (fsyncs) per message; no closed-loop rows
  --schemas           payload checks: every row publishes a ~200-byte JSON telemetry reading
                      (loadgen --json) and one more row runs the gateway (first backend, group
                      commit) with examples/schemas bound to the benchmark's topics; prints
                      checked / unchecked (the no-group-commit row is left out)
  -h, --help          this text

Needs: cargo, taskset, curl, 2 CPUs, mosquitto (installed with apt-get when missing and root).
Listens only on loopback: 127.0.0.x:18830 (MQTT), :18831 (HTTP) for the gateway, :18840 for
mosquitto, with a different 127.0.0.x per run so no port waits out TIME_WAIT.
EOF
}

RUNS=3
MESSAGES_8=2000
MESSAGES_64=500
PAYLOAD=64
INFLIGHT=100
TIMEOUT=120
DATA_ROOT="${TMPDIR:-/tmp}"
BUILD=1
BUILD_PROFILE=release
BASELINE=""
OPEN_LOOP=0
RATE=""
OPEN_SECS=10
SCHEMAS=0
RATES=()
BACKENDS=(redb)

die() { echo "bench/ingest.sh: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }
positive() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || { echo "bench/ingest.sh: $1 needs a positive integer, got '$2'" >&2; exit 2; }; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --skip-build) BUILD=0; shift; continue ;;
        --open-loop) OPEN_LOOP=1; shift; continue ;;
        --schemas) SCHEMAS=1; shift; continue ;;
        --runs|--messages-8|--messages-64|--payload|--inflight|--timeout|--data-root|--baseline|--rate|--rates|--open-secs|--backend|--profile)
            [[ $# -ge 2 ]] || { echo "bench/ingest.sh: $1 needs a value" >&2; exit 2; } ;;
        *) echo "bench/ingest.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    case "$1" in
        --runs) positive "$1" "$2"; RUNS=$2 ;;
        --messages-8) positive "$1" "$2"; MESSAGES_8=$2 ;;
        --messages-64) positive "$1" "$2"; MESSAGES_64=$2 ;;
        --payload) positive "$1" "$2"; PAYLOAD=$2 ;;
        --inflight) positive "$1" "$2"; INFLIGHT=$2 ;;
        --timeout) positive "$1" "$2"; TIMEOUT=$2 ;;
        --data-root) DATA_ROOT=$2 ;;
        --baseline) BASELINE=$(realpath "$2") ;;
        --rate) positive "$1" "$2"; RATE=$2; OPEN_LOOP=1 ;;
        --open-secs) positive "$1" "$2"; OPEN_SECS=$2 ;;
        --profile)
            case "$2" in
                release|dist) BUILD_PROFILE=$2 ;;
                *) echo "bench/ingest.sh: --profile is release or dist, got '$2'" >&2; exit 2 ;;
            esac ;;
        --rates)
            IFS=, read -r -a RATES <<<"$2"
            for r in "${RATES[@]}"; do positive "$1" "$r"; done ;;
        --backend)
            case "$2" in
                redb|sqlite) BACKENDS=("$2") ;;
                both) BACKENDS=(redb sqlite) ;;
                *) echo "bench/ingest.sh: --backend is redb, sqlite or both, got '$2'" >&2; exit 2 ;;
            esac ;;
    esac
    shift 2
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
GATEWAY=$TARGET_DIR/$BUILD_PROFILE/edge-gateway
LOADGEN=$TARGET_DIR/$BUILD_PROFILE/examples/loadgen
DISKPROBE=$TARGET_DIR/$BUILD_PROFILE/examples/diskprobe
CLK_TCK=$(getconf CLK_TCK)

# --- prerequisites ------------------------------------------------------------------------

# shellcheck source=bench/install.sh
source "$ROOT/bench/install.sh"  # install_pkg, find_mosquitto

command -v taskset >/dev/null || install_pkg util-linux
command -v curl >/dev/null || install_pkg curl
MOSQUITTO=$(find_mosquitto)
[[ -n "$MOSQUITTO" ]] || { install_pkg mosquitto; MOSQUITTO=$(find_mosquitto); }
[[ -n "$MOSQUITTO" ]] || die "mosquitto still not found after installing it"
[[ $(nproc --all) -ge 2 ]] || die "needs 2 CPUs (server on cpu0, loadgen on cpu1)"
mkdir -p "$DATA_ROOT"
[[ $(stat -f -c %T "$DATA_ROOT") != tmpfs ]] || log "WARNING: $DATA_ROOT is tmpfs; fsync costs nothing there"

if [[ $BUILD -eq 1 ]]; then
    log "building (profile $BUILD_PROFILE)"
    cargo build --profile "$BUILD_PROFILE" --locked --bin edge-gateway --example loadgen --example diskprobe >&2
fi
[[ -x "$GATEWAY" && -x "$LOADGEN" ]] || die "missing $GATEWAY or $LOADGEN (build first)"
[[ $OPEN_LOOP -eq 0 || -x "$DISKPROBE" ]] || die "missing $DISKPROBE (build first)"
[[ -z "$BASELINE" || -x "$BASELINE" ]] || die "--baseline $BASELINE is not an executable"

# --- server lifecycle -----------------------------------------------------------------------

WORK=$(mktemp -d "$DATA_ROOT/edge-gateway-bench.XXXXXX")
# The open loop's row without the disk: the gateway's data dir on tmpfs.
TMPFS_WORK=""
if [[ $OPEN_LOOP -eq 1 ]]; then
    [[ $(stat -f -c %T /dev/shm 2>/dev/null) == tmpfs ]] || die "--open-loop needs /dev/shm on tmpfs (its row without the disk)"
    TMPFS_WORK=$(mktemp -d /dev/shm/edge-gateway-bench.XXXXXX)
fi
SERVER_PID=""
SERVER_LOG=""

stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 100); do  # 10 s for a graceful stop
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

cleanup() { stop_server; rm -rf "$WORK" ${TMPFS_WORK:+"$TMPFS_WORK"}; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

server_died() {
    echo "bench/ingest.sh: $1; last lines of $SERVER_LOG:" >&2
    tail -n 30 "$SERVER_LOG" >&2 || true
    exit 1
}

# wait_ready CHECK-COMMAND...: polls for 30 s while the server is alive.
wait_ready() {
    for _ in $(seq 300); do
        "$@" >/dev/null 2>&1 && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || server_died "server exited during startup"
        sleep 0.1
    done
    server_died "server not ready after 30 s"
}

tcp_open() { : 3<>"/dev/tcp/$1/$2"; }

# start_gateway DIR HOST GROUP_COMMIT BACKEND [BINARY] [SCHEMAS_DIR]
start_gateway() {
    local dir=$1 host=$2 bin=${5:-$GATEWAY} schemas=${6:-}
    cat >"$dir/gateway.toml" <<EOF
[gateway]
data_dir = "$dir/data"
[mqtt]
listen = "$host:18830"
max_inflight = $INFLIGHT
max_new_connections_per_source = 0
[auth]
plain = "anonymous"
acl_file = "$dir/acl.toml"
[http]
listen = "$host:18831"
[storage]
group_commit = $3
backend = "$4"
[schemas]
dir = "$schemas"
[[sinks]]
name = "null"
kind = "discard"
EOF
    printf '[[allow]]\nidentities = ["*"]\npublish = ["bench/#"]\n' >"$dir/acl.toml"
    SERVER_LOG=$dir/server.log
    taskset -c 0 "$bin" run --config "$dir/gateway.toml" >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    wait_ready curl -sf "http://$host:18831/readyz"
}

# start_mosquitto DIR HOST
start_mosquitto() {
    local dir=$1 host=$2
    cat >"$dir/mosquitto.conf" <<EOF
listener 18840 $host
allow_anonymous true
persistence false
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
EOF
    SERVER_LOG=$dir/server.log
    taskset -c 0 "$MOSQUITTO" -c "$dir/mosquitto.conf" >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    wait_ready tcp_open "$host" 18840
}

# bench_registry DIR: examples/schemas with one more binding, the benchmark's topics to the
# latest telemetry version (every payload is checked; a failure would be forwarded, tagged).
bench_registry() {
    cp -r "$ROOT/examples/schemas" "$1"
    printf '\n[[binding]]\ntopics = ["bench/#"]\nsubject = "telemetry"\non_invalid = "tag"\n' >>"$1/bindings.toml"
}

# checked_every_payload HOST N: the gateway counted N valid schema checks and no invalid one
# (else the row would measure something else than checking valid telemetry).
checked_every_payload() {
    local scrape valid invalid
    scrape=$(curl -sf "http://$1:18831/metrics") || server_died "no metrics from the schemas row"
    valid=$(awk '/^gateway_schema_validations_total/ && /result="valid"/ { s += $NF } END { print s + 0 }' <<<"$scrape")
    invalid=$(awk '/^gateway_schema_validations_total/ && /result="invalid"/ { s += $NF } END { print s + 0 }' <<<"$scrape")
    [[ "$valid" == "$2" && "$invalid" == 0 ]] || server_died "schemas row: $valid valid and $invalid invalid checks, expected $2 valid"
}

# CPU seconds (user + system) the server has used so far.
server_cpu_ticks() { sed 's/.*) //' "/proc/$SERVER_PID/stat" | awk '{ print $12 + $13 }'; }

# The gateway's write transactions (each one fsync) so far; "null" for mosquitto.
server_commits() {
    [[ $1 != mosquitto ]] || { echo null; return; }
    curl -sf "http://$2:18831/metrics" | awk '$1 == "gateway_storage_commits_total" { print $2 }'
}

# --- one run, one row -------------------------------------------------------------------------

RUN=0

# run_once SERVER CLIENTS MESSAGES [RATE]: sets RESULT to loadgen's JSON line plus "server_cpu_s"
# (open loop at RATE msg/s when given).
# Not called in $(...): the server must be started by this shell, so the EXIT trap can stop it.
run_once() {
    local server=$1 clients=$2 messages=$3 host port dir before after line
    RUN=$((RUN + 1))
    host=127.0.0.$((10 + RUN % 240))
    dir=$WORK/run-$RUN
    [[ $server != tmpfs ]] || dir=$TMPFS_WORK/run-$RUN
    mkdir -p "$dir"
    case "$server" in
        redb|sqlite) start_gateway "$dir" "$host" true "$server"; port=18830 ;;
        tmpfs) start_gateway "$dir" "$host" true "${BACKENDS[0]}"; port=18830 ;;
        nogc) start_gateway "$dir" "$host" false "${BACKENDS[0]}"; port=18830 ;;
        base) start_gateway "$dir" "$host" true redb "$BASELINE"; port=18830 ;;
        schemas) bench_registry "$dir/schemas"; start_gateway "$dir" "$host" true "${BACKENDS[0]}" "$GATEWAY" "$dir/schemas"; port=18830 ;;
        mosquitto) start_mosquitto "$dir" "$host"; port=18840 ;;
    esac
    before=$(server_cpu_ticks)
    commits_before=$(server_commits "$server" "$host")
    line=$(taskset -c 1 "$LOADGEN" --addr "$host:$port" --clients "$clients" --messages "$messages" \
        --payload "$PAYLOAD" --inflight "$INFLIGHT" --topic-prefix bench --timeout "$TIMEOUT" ${4:+--rate "$4"} \
        $([[ $SCHEMAS -eq 0 ]] || echo --json)) \
        || server_died "loadgen failed against $server ($clients clients)"
    after=$(server_cpu_ticks)
    commits_after=$(server_commits "$server" "$host")
    [[ $server != schemas ]] || checked_every_payload "$host" "$((clients * messages))"
    stop_server
    rm -rf "$dir"
    local commits=null
    [[ $commits_before == null ]] || commits=$((commits_after - commits_before))
    RESULT="${line%\}},\"server_cpu_s\":$(awk -v t=$((after - before)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'),\"commits\":$commits}"
}

field() { sed -E "s/.*\"$2\":([-0-9.eE+]+|null).*/\1/" <<<"$1"; }

# median FIELD JSON-LINE...: the median of FIELD over the lines
median() {
    local name=$1 l
    shift
    for l in "$@"; do field "$l" "$name"; done | sort -g | awk '{ v[NR] = $1 }
        END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

declare -A MPS P50 P99 P999 CPU TOTAL COMMITS

# measure SERVER CLIENTS MESSAGES [RATE]: RUNS runs (open loop at RATE msg/s when given), medians
# into the arrays under SERVER,CLIENTS (SERVER,open with a RATE)
measure() {
    local key="$1,${4:+open}" lines=() i
    [[ -n "${4:-}" ]] || key="$1,$2"
    for i in $(seq "$RUNS"); do
        log "$1, $2 clients x $3 messages${4:+, open loop at $4 msg/s}, run $i/$RUNS"
        run_once "$1" "$2" "$3" "${4:-}"
        log "  $RESULT"
        lines+=("$RESULT")
    done
    MPS[$key]=$(median msg_per_s "${lines[@]}")
    P50[$key]=$(median puback_p50_ms "${lines[@]}")
    P99[$key]=$(median puback_p99_ms "${lines[@]}")
    P999[$key]=$(median puback_p999_ms "${lines[@]}")
    CPU[$key]=$(median server_cpu_s "${lines[@]}")
    [[ $1 == mosquitto ]] || COMMITS[$key]=$(median commits "${lines[@]}")
    TOTAL[$key]=$(field "${lines[0]}" messages)
}

# --- the matrix and the report ------------------------------------------------------------------

GC=${BACKENDS[0]}  # the gateway row the other ratios refer to
SERVERS=("${BACKENDS[@]}")
[[ -z "$BASELINE" ]] || SERVERS+=(base)
[[ $SCHEMAS -eq 0 ]] || SERVERS+=(schemas)
# --schemas answers another question (checks on / off): it leaves out the slow no-group-commit row.
[[ $SCHEMAS -eq 1 ]] || SERVERS+=(nogc)
SERVERS+=(mosquitto)
declare -A LABEL=([redb]="edge-gateway, redb, group commit" [sqlite]="edge-gateway, SQLite, group commit" \
    [nogc]="edge-gateway, $GC, no group commit" [schemas]="edge-gateway, $GC, group commit, schema checks" \
    [tmpfs]="edge-gateway, $GC, group commit, data dir on tmpfs (fsync free)" \
    [mosquitto]="mosquitto 2, persistence false" [base]="baseline $(basename "${BASELINE:-none}"), redb, group commit")
declare -A MESSAGES=([8]=$MESSAGES_8 [64]=$MESSAGES_64)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
per_msg_us() { awk -v s="$1" -v n="$2" 'BEGIN { printf "%.1f", s * 1e6 / n }'; }
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || rev="$rev (dirty)"

# --- CPU by load (--rates): the sweep alone ---------------------------------------------------

if [[ ${#RATES[@]} -gt 0 ]]; then
    SWEEP=("$GC")
    [[ -z "$BASELINE" ]] || SWEEP+=(base)
    SWEEP+=(mosquitto)
    declare -A ROW CPUS
    for rate in "${RATES[@]}"; do
        for server in "${SWEEP[@]}"; do
            measure "$server" 8 $(( (rate * OPEN_SECS + 7) / 8 )) "$rate"
            k="$server,open"
            cpu=$(per_msg_us "${CPU[$k]}" "${TOTAL[$k]}")
            per_msg=n/a
            [[ $server == mosquitto ]] || per_msg=$(awk -v c="${COMMITS[$k]}" -v n="${TOTAL[$k]}" 'BEGIN { printf "%.2f", c / n }')
            ROW[$rate,$server]="| $rate | ${LABEL[$server]} | ${MPS[$k]} | ${P50[$k]} | ${P99[$k]} | $cpu | $per_msg |"
            CPUS[$rate,$server]=$cpu
        done
    done
    echo "### CPU by load, $(date -u +%Y-%m-%d)"
    echo
    echo "commit $rev, cargo profile $BUILD_PROFILE; $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc --all) CPUs;" \
        "$($MOSQUITTO -h 2>/dev/null | head -1 || true); open loop, 8 clients, $OPEN_SECS s per run, payload $PAYLOAD B, median of $RUNS runs; data dir on $(stat -f -c %T "$WORK")."
    echo
    echo "| rate msg/s | server | achieved msg/s | PUBACK p50 ms | PUBACK p99 ms | server CPU µs/msg | commits per message | CPU / mosquitto's |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|"
    for rate in "${RATES[@]}"; do
        for server in "${SWEEP[@]}"; do
            echo "${ROW[$rate,$server]} $(ratio "${CPUS[$rate,$server]}" "${CPUS[$rate,mosquitto]}") |"
        done
    done
    exit 0
fi

for server in "${SERVERS[@]}"; do
    for clients in 8 64; do
        measure "$server" "$clients" "${MESSAGES[$clients]}"
    done
done

echo "### Ingest benchmark, $(date -u +%Y-%m-%d)"
echo
echo "commit $rev, cargo profile $BUILD_PROFILE; $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc --all) CPUs;" \
    "$($MOSQUITTO -h 2>/dev/null | head -1 || true);" \
    "payload $([[ $SCHEMAS -eq 0 ]] && echo "$PAYLOAD B" || echo "a JSON telemetry reading (~200 B)"), inflight $INFLIGHT per client, median of $RUNS runs; data dir on $(stat -f -c %T "$WORK")."
echo
echo "| server | clients | messages | msg/s | PUBACK p50 ms | PUBACK p99 ms | server CPU s | server CPU µs/msg |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for server in "${SERVERS[@]}"; do
    for clients in 8 64; do
        k="$server,$clients"
        echo "| ${LABEL[$server]} | $clients | ${TOTAL[$k]} | ${MPS[$k]} | ${P50[$k]} | ${P99[$k]} |" \
            "${CPU[$k]} | $(per_msg_us "${CPU[$k]}" "${TOTAL[$k]}") |"
    done
done
echo
echo "| ratio of median msg/s | 8 clients | 64 clients |"
echo "|---|---:|---:|"
[[ $SCHEMAS -eq 1 ]] || echo "| $GC: group commit / no group commit | $(ratio "${MPS[$GC,8]}" "${MPS[nogc,8]}") | $(ratio "${MPS[$GC,64]}" "${MPS[nogc,64]}") |"
[[ -z "$BASELINE" ]] || echo "| this build / baseline (redb, group commit) | $(ratio "${MPS[redb,8]}" "${MPS[base,8]}") | $(ratio "${MPS[redb,64]}" "${MPS[base,64]}") |"
[[ $SCHEMAS -eq 0 ]] || echo "| schema checks on / off ($GC, group commit) | $(ratio "${MPS[schemas,8]}" "${MPS[$GC,8]}") | $(ratio "${MPS[schemas,64]}" "${MPS[$GC,64]}") |"
[[ ${#BACKENDS[@]} -lt 2 ]] || echo "| SQLite / redb (group commit) | $(ratio "${MPS[sqlite,8]}" "${MPS[redb,8]}") | $(ratio "${MPS[sqlite,64]}" "${MPS[redb,64]}") |"
for b in "${BACKENDS[@]}"; do
    echo "| gateway ($b, group commit) / mosquitto | $(ratio "${MPS[$b,8]}" "${MPS[mosquitto,8]}") | $(ratio "${MPS[$b,64]}" "${MPS[mosquitto,64]}") |"
done

# --- latency at a given load (open loop) ---------------------------------------------------------

if [[ $OPEN_LOOP -eq 1 ]]; then
    rate=${RATE:-$(awk -v m="${MPS[$GC,8]}" 'BEGIN { printf "%d", m / 2 }')}
    per_client=$(( (rate * OPEN_SECS + 7) / 8 ))
    for b in "${BACKENDS[@]}"; do measure "$b" 8 "$per_client" "$rate"; done
    measure tmpfs 8 "$per_client" "$rate"
    measure mosquitto 8 "$per_client" "$rate"
    # The disk alone, as the gateway's store sees it: what a durable PUBACK cannot beat.
    disk=()
    for i in $(seq "$RUNS"); do
        log "disk alone: diskprobe --secs $OPEN_SECS, run $i/$RUNS"
        disk+=("$(taskset -c 0 "$DISKPROBE" --dir "$WORK" --secs "$OPEN_SECS")") || die "diskprobe failed on $WORK"
        log "  ${disk[-1]}"
    done
    echo
    echo "Latency at a given load: open loop at $rate msg/s (half of the gateway's ($GC) 8-client maximum above unless --rate was given), 8 clients, $OPEN_SECS s per run, median of $RUNS runs; latency from each message's scheduled send time to its PUBACK."
    echo
    echo "| server | rate msg/s | messages | achieved msg/s | PUBACK p50 ms | PUBACK p99 ms | PUBACK p999 ms | server CPU µs/msg |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for server in "${BACKENDS[@]}" tmpfs mosquitto; do
        k="$server,open"
        echo "| ${LABEL[$server]} | $rate | ${TOTAL[$k]} | ${MPS[$k]} | ${P50[$k]} | ${P99[$k]} | ${P999[$k]} | $(per_msg_us "${CPU[$k]}" "${TOTAL[$k]}") |"
    done
    echo
    echo "| gateway / mosquitto | p50 | p99 | p999 |"
    echo "|---|---:|---:|---:|"
    for b in "${BACKENDS[@]}"; do
        echo "| latency ratio, $b | $(ratio "${P50[$b,open]}" "${P50[mosquitto,open]}") | $(ratio "${P99[$b,open]}" "${P99[mosquitto,open]}") | $(ratio "${P999[$b,open]}" "${P999[mosquitto,open]}") |"
    done
    echo "| latency ratio, $GC on tmpfs (without the disk) | $(ratio "${P50[tmpfs,open]}" "${P50[mosquitto,open]}") | $(ratio "${P99[tmpfs,open]}" "${P99[mosquitto,open]}") | $(ratio "${P999[tmpfs,open]}" "${P999[mosquitto,open]}") |"
    echo
    echo "The disk alone in the same run (examples/diskprobe: a 4 KB overwrite and its fdatasync every 1 ms, $OPEN_SECS s, median of $RUNS runs): the floor under a durable PUBACK, which mosquitto (in memory) does not pay."
    echo
    echo "| fdatasync | p50 ms | p99 ms | p999 ms | max ms | over 10 ms |"
    echo "|---|---:|---:|---:|---:|---:|"
    echo "| $(median fsyncs "${disk[@]}") calls | $(median p50_ms "${disk[@]}") | $(median p99_ms "${disk[@]}") | $(median p999_ms "${disk[@]}") | $(median max_ms "${disk[@]}") | $(median over_10ms "${disk[@]}") |"
fi
