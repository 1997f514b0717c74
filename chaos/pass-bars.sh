#!/usr/bin/env bash
# The pass-bar runs of docs/RELIABILITY.md, one after the other, against the release binary.
# Each run's verdict table goes to OUT/<name>.txt and its JSON to OUT/<name>.json; the summary
# at the end lists the exit code per run (0 pass, 1 a bar failed), and the script exits 1 when
# any run failed. About 80 minutes on 2 cores (the two power-cut runs, 100 cuts each in a qemu
# guest, take about 22 minutes each); every run is bounded. The power-cut negative control
# (`power-cut --no-fsync`, which must FAIL) is not part of it: docs/RELIABILITY.md.
#
# usage: chaos/pass-bars.sh [OUT_DIR]     (default: target/chaos-pass-bars)
#        PYTHON=target/test-venv/bin/python chaos/pass-bars.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/chaos-pass-bars}
py=${PYTHON:-target/test-venv/bin/python}
mkdir -p "$out"
[ -x target/release/edge-gateway ] || { echo "pass-bars.sh: build first: cargo build --release --locked" >&2; exit 2; }

run() {
    local name=$1
    shift
    echo "== $name: $*" >&2
    "$py" "chaos/$1" "${@:2}" --json-out "$out/$name.json" >"$out/$name.txt" 2>&1
    local code=$?
    tail -n 12 "$out/$name.txt" >&2
    echo "$name exit $code" >>"$out/summary.txt"
    [ "$code" -eq 0 ] || failed=$((failed + 1))
}

failed=0

: >"$out/summary.txt"
run kill-process kill-process --kills 50 --duration 300 --rate 1000 --devices 8
run kill-actors kill-actors --kills 500 --kill-rate 2 --duration 320 --rate 1000 --devices 8
run kill-actors-production-policy kill-actors --supervision supervision.toml --kills 30 --kill-rate 2 --p99-bar-ms 2000 --duration 30 --rate 1000 --devices 8
run cloud-outage cloud-outage --outage 600 --duration 630 --rate 2000 --devices 8 --drain-timeout 300
run disk-faults-eio disk-faults --fault eio --faults 3 --fault-secs 5 --duration 40 --rate 1000 --devices 8
run disk-faults-enospc disk-faults --fault enospc --faults 3 --fault-secs 5 --duration 40 --rate 1000 --devices 8
run disk-faults-full disk-faults --fault full --cloud-down --faults 2 --fault-secs 8 --fs-mb 16 --duration 40 --rate 1000 --devices 8
run corrupt-store-header corrupt-store --damage header --duration 10 --rate 1000 --devices 8
run corrupt-store-random corrupt-store --damage random --blocks 8 --duration 10 --rate 1000 --devices 8
run corrupt-store-truncate corrupt-store --damage truncate --duration 10 --rate 1000 --devices 8
run churn churn --devices 200 --cycles 10 --storms 3 --rate 2000 --duration 90
run kill-process-nats kill-process --sink nats --kills 20 --duration 60 --rate 1000 --devices 8
run cloud-outage-nats cloud-outage --sink nats --outage 120 --duration 140 --rate 2000 --devices 8 --drain-timeout 300
run cloud-outage-nats-hang cloud-outage --sink nats --mode hang --outage 30 --duration 45 --rate 1000 --devices 8
run kill-process-mqtt kill-process --sink mqtt --kills 20 --duration 60 --rate 1000 --devices 8
run kill-process-subscribers kill-process --subscribers 4 --kills 20 --duration 60 --rate 1000 --devices 8
run kill-process-subscribers-qos2 kill-process --subscribers 4 --qos 2 --kills 20 --duration 60 --rate 200 --devices 8
run cloud-outage-mqtt cloud-outage --sink mqtt --outage 120 --duration 140 --rate 2000 --devices 8 --drain-timeout 300
run cloud-outage-mqtt-hang cloud-outage --sink mqtt --mode hang --outage 30 --duration 45 --rate 1000 --devices 8
run power-cut power-cut --cuts 100 --seed 11 --rate 300 --devices 4
run power-cut-sqlite power-cut --backend sqlite --cuts 100 --seed 11 --rate 300 --devices 4
cat "$out/summary.txt"
if [ "$failed" -ne 0 ]; then
    echo "pass-bars.sh: $failed run(s) failed a bar" >&2
    exit 1
fi
