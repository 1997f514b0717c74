#!/usr/bin/env bash
# bench/archive.sh: does the archive keep up with ingest, what does it cost on disk, how fast is
# a query? See docs/BENCHMARKS.md ("Archive") for how to read it.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/archive.sh [options]

1. Durable QoS1 ingest (examples/loadgen --json: ~200-byte JSON telemetry, 8 clients, pinned to
   cpu1) into a fresh edge-gateway (release, pinned to cpu0) with a JSON-lines file sink, RUNS
   times with the archive off and on (one class for every topic), alternating. Reports msg/s
   (median), on/off (of the medians, and run by run), the server's CPU per message (user +
   system, from /proc) off and on and their difference (what archiving costs), the archive's
   lag when the load ends and how long it then takes to have every message in a closed Parquet
   file, and bytes per message: Parquet (zstd) against the file sink's JSON lines for the same
   messages.
2. One day of archive files (examples/archive_day: 24 hourly files, --per-hour messages each);
   `edge-gateway archive query` for one hour and for the whole day, median of 5 (wall time, the
   query's JSON lines to /dev/null).

options:
  --runs N         ingest runs per configuration (default 3)
  --messages N     messages per client (default 100000)
  --per-hour N     messages per hour of the query day (default 100000)
  --data-root DIR  where the temp dirs go (default: $TMPDIR or /tmp); use the disk to measure
  --skip-build     use the binaries already in target/release
  -h, --help       this text

Needs: cargo, taskset, curl, 2 CPUs. Listens only on 127.0.0.1:18870-18871.
EOF
}

RUNS=3
MESSAGES=100000
PER_HOUR=100000
DATA_ROOT="${TMPDIR:-/tmp}"
BUILD=1
SCRIPT=bench/archive.sh
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --skip-build) BUILD=0; shift; continue ;;
        --runs|--messages|--per-hour|--data-root) [[ $# -ge 2 ]] || die "$1 needs a value" ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    case "$1" in
        --runs) positive "$1" "$2"; RUNS=$2 ;;
        --messages) positive "$1" "$2"; MESSAGES=$2 ;;
        --per-hour) positive "$1" "$2"; PER_HOUR=$2 ;;
        --data-root) DATA_ROOT=$2 ;;
    esac
    shift 2
done

command -v taskset >/dev/null || die "taskset is required"
command -v curl >/dev/null || die "curl is required"
[[ $(nproc) -ge 2 ]] || die "needs 2 CPUs (server on cpu0, load on cpu1)"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if [[ $BUILD == 1 ]]; then
    log "building (release)"
    cargo build --release --locked --bin edge-gateway --example loadgen --example archive_day >&2
fi
GATEWAY=target/release/edge-gateway
LOADGEN=target/release/examples/loadgen
DAYGEN=target/release/examples/archive_day
[[ -x $GATEWAY && -x $LOADGEN && -x $DAYGEN ]] || die "missing release binaries (build first)"
bench_workdir edge-gateway-archivebench

# write_config DIR off|on
write_config() {
    local dir=$1 archive=""
    [[ $2 == on ]] && archive=$'[archive]\nenabled = true\nmax_file_age_secs = 5\n[[archive.classes]]\nname = "all"\ntopics = ["#"]\nmin_keep_days = 1'
    mkdir -p "$dir"
    cat >"$dir/gateway.toml" <<EOF
[gateway]
data_dir = "$dir/data"
[mqtt]
listen = "127.0.0.1:18870"
max_new_connections_per_source = 0
[auth]
plain = "anonymous"
acl_file = "$dir/acl.toml"
[http]
listen = "127.0.0.1:18871"
[[sinks]]
name = "jsonl"
kind = "file"
path = "$dir/data/sink.jsonl"
$archive
EOF
    printf '[[allow]]\nidentities = ["*"]\npublish = ["bench/#"]\n' >"$dir/acl.toml"
}

metric() { curl -s http://127.0.0.1:18871/metrics | awk -v m="$1" '$1 == m {print $2}'; }

declare -a OFF ON PAIR CPU_OFF CPU_ON EXTRA LAG CATCHUP PARQUET JSONL
total=$((MESSAGES * 8))
for run in $(seq "$RUNS"); do
    for mode in off on; do
        dir="$WORK/run$run-$mode"
        write_config "$dir" "$mode"
        taskset -c 0 "$GATEWAY" run --config "$dir/gateway.toml" >"$dir/server.log" 2>&1 &
        SERVER_PID=$!
        wait_ready gateway "$dir/server.log" curl -sf http://127.0.0.1:18871/readyz
        c0=$(server_cpu_ticks)
        out=$(taskset -c 1 "$LOADGEN" --addr 127.0.0.1:18870 --clients 8 --messages "$MESSAGES" --json --timeout 300)
        c1=$(server_cpu_ticks)
        rate=$(field "$out" msg_per_s)
        cpu=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$total" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
        if [[ $mode == off ]]; then
            OFF+=("$rate")
            CPU_OFF+=("$cpu")
        else
            ON+=("$rate")
            CPU_ON+=("$cpu")
            PAIR+=("$(awk -v a="$rate" -v b="${OFF[-1]}" 'BEGIN {printf "%.3f", a/b}')")
            EXTRA+=("$(awk -v a="$cpu" -v b="${CPU_OFF[-1]}" 'BEGIN {printf "%.2f", a-b}')")
            LAG+=("$(metric gateway_archive_lag_messages)")
            start=$(date +%s.%N)
            for _ in $(seq 1200); do
                [[ $(metric 'gateway_archive_messages_total{class="all"}') == "$total" ]] && break
                sleep 0.1
            done
            [[ $(metric 'gateway_archive_messages_total{class="all"}') == "$total" ]] || die "the archive did not catch up within 120 s"
            CATCHUP+=("$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')")
            parquet=$(find "$dir/data/archive" -name '*.parquet' -printf '%s\n' | awk '{s += $1} END {print s}')
            PARQUET+=("$(awk -v b="$parquet" -v n="$total" 'BEGIN {printf "%.1f", b / n}')")
        fi
        for _ in $(seq 600); do [[ $(metric gateway_backlog_messages) == 0 ]] && break; sleep 0.1; done
        if [[ $mode == off ]]; then
            JSONL+=("$(awk -v b="$(stat -c %s "$dir/data/sink.jsonl")" -v n="$total" 'BEGIN {printf "%.1f", b / n}')")
        fi
        log "run $run $mode: $out"
        stop_server
        rm -rf "$dir/data"
    done
done
m_off=$(printf '%s\n' "${OFF[@]}" | median)
m_on=$(printf '%s\n' "${ON[@]}" | median)
echo "| ingest ($RUNS runs, 8 clients x $MESSAGES QoS1, ~200-byte JSON, JSON-lines file sink; median) | value |"
echo "|---|---|"
echo "| archive off, msg/s | ${m_off} (runs: ${OFF[*]}) |"
echo "| archive on, msg/s | ${m_on} (runs: ${ON[*]}) |"
echo "| on / off | $(awk -v a="$m_on" -v b="$m_off" 'BEGIN {printf "%.3f", a/b}') |"
echo "| on / off by run (each on run against the off run just before it), median | $(printf '%s\n' "${PAIR[@]}" | median) (runs: ${PAIR[*]}) |"
echo "| server CPU per message, archive off, us | $(printf '%s\n' "${CPU_OFF[@]}" | median) (runs: ${CPU_OFF[*]}) |"
echo "| server CPU per message, archive on, us | $(printf '%s\n' "${CPU_ON[@]}" | median) (runs: ${CPU_ON[*]}) |"
echo "| the archive's CPU per message (on - off, by run), us | $(printf '%s\n' "${EXTRA[@]}" | median) (runs: ${EXTRA[*]}) |"
echo "| archive lag when the load ended, messages | $(printf '%s\n' "${LAG[@]}" | median) (runs: ${LAG[*]}) |"
echo "| then every message in a closed file after, s | $(printf '%s\n' "${CATCHUP[@]}" | median) (runs: ${CATCHUP[*]}; max_file_age_secs = 5) |"
echo "| bytes per message, Parquet (zstd) | $(printf '%s\n' "${PARQUET[@]}" | median) (runs: ${PARQUET[*]}) |"
echo "| bytes per message, JSON lines (file sink) | $(printf '%s\n' "${JSONL[@]}" | median) (runs: ${JSONL[*]}) |"

day="$WORK/day"
mkdir -p "$day"
printf '[gateway]\ndata_dir = "%s"\n[auth]\nplain = "anonymous"\n[[sinks]]\nname = "null"\nkind = "discard"\n[archive]\nenabled = true\ndir = "%s/archive"\n[[archive.classes]]\nname = "day"\ntopics = ["#"]\nmin_keep_days = 1\n' "$day" "$day" >"$day/gateway.toml"
log "writing a day of archive files ($PER_HOUR messages per hour)"
"$DAYGEN" --dir "$day/archive" --per-hour "$PER_HOUR" >&2
day_bytes=$(find "$day/archive" -name '*.parquet' -printf '%s\n' | awk '{s += $1} END {print s}')
time_query() {  # time_query FROM TO: median wall seconds of 5 queries (stderr of the last in query.err)
    for _ in 1 2 3 4 5; do
        s=$(date +%s.%N)
        "$GATEWAY" archive query --config "$day/gateway.toml" --from "$1" --to "$2" >/dev/null 2>"$day/query.err" ||
            die "archive query failed: $(cat "$day/query.err")"
        awk -v s="$s" -v e="$(date +%s.%N)" 'BEGIN {printf "%.3f\n", e - s}'
    done | median
}
hour=$(time_query 2026-01-01T12:00:00Z 2026-01-01T13:00:00Z)
hour_stats=$(cat "$day/query.err")
whole=$(time_query 2026-01-01 2026-01-02)
[[ -n $hour && -n $whole ]] || die "a query failed: $(cat "$day/query.err")"
echo
echo "| query ($PER_HOUR messages per hour, 24 files, $day_bytes bytes; median of 5) | s |"
echo "|---|---|"
echo "| one hour (12:00-13:00) | $hour ($hour_stats) |"
echo "| the whole day | $whole ($(cat "$day/query.err")) |"
