# shellcheck shell=bash
# bench/install.sh: the one way the benchmarks install a missing peer (sourced by bench/lib.sh
# and bench/ingest.sh, which define die and log).

# install_pkg PACKAGE: apt-get as root, else say how.
install_pkg() {
    [[ $(id -u) -eq 0 ]] || die "$1 is missing: run 'sudo apt-get install -y $1'"
    log "installing $1 with apt-get"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >&2
}

# find_mosquitto: the mosquitto broker's path (on PATH or in /usr/sbin), or nothing.
find_mosquitto() { command -v mosquitto || { [[ -x /usr/sbin/mosquitto ]] && echo /usr/sbin/mosquitto; } || true; }
