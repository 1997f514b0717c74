#!/usr/bin/env bash
# Revokes device certificates: keeps a copy of every revoked certificate in DIR/revoked/ and
# regenerates the CRL from all of them, so that no earlier revocation is ever lost.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: certs/revoke-device.sh [--dir DIR] [--ca-dir DIR] [--crl FILE] [--next-update-days N]
                              [CERT.pem | IDENTITY]...

Adds device certificates to the site's CRL. Each CERT.pem (or DIR/IDENTITY.pem) is copied into
DIR/revoked/, and the CRL is signed anew from every certificate in DIR/revoked/ and renamed
over FILE, where the gateway's tls.crl points; the gateway swaps it in for new handshakes.
Without certificates the CRL is only re-signed (a fresh nextUpdate).

Options:
  --dir DIR               directory of the device certificates and of revoked/ (default: certs/dev, under the current directory)
  --ca-dir DIR            directory of ca.pem and ca.key (default: the --dir directory)
  --crl FILE              the CRL to write (default: DIR/crl.pem)
  --next-update-days N    the CRL's nextUpdate, in days from now (default: 30)
  -h, --help              show this text

To take a revocation back, delete its file from DIR/revoked/ and run this script without
certificates. New handshakes with a revoked certificate are refused, and a device already
connected with one is disconnected at its next publish.

The edge-gateway binary is $EDGE_GATEWAY if set, else `cargo run --release --locked --` in
this repository.
USAGE
}

dir=certs/dev
ca_dir=
crl=
next_update_days=30
certs=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --dir) dir="${2:?--dir needs a directory}"; shift 2 ;;
        --ca-dir) ca_dir="${2:?--ca-dir needs a directory}"; shift 2 ;;
        --crl) crl="${2:?--crl needs a file}"; shift 2 ;;
        --next-update-days) next_update_days="${2:?--next-update-days needs a number}"; shift 2 ;;
        -*) echo "revoke-device.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) certs+=("$1"); shift ;;
    esac
done
ca_dir="${ca_dir:-$dir}"
crl="${crl:-$dir/crl.pem}"
revoked_dir="$dir/revoked"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${EDGE_GATEWAY:-}" ]]; then
    eg=("$EDGE_GATEWAY")
else
    eg=(cargo run --release --locked --manifest-path "$repo/Cargo.toml" --)
fi

# Name each new revocation after its certificate and a hash of its content: re-issued
# certificates of one identity get separate entries, and revoking the same file twice is a no-op.
new_sources=()
new_names=()
for c in ${certs[@]+"${certs[@]}"}; do
    if [[ ! -f "$c" && "$c" != *.pem ]]; then
        c="$dir/$c.pem"
    fi
    if [[ ! -f "$c" ]]; then
        echo "revoke-device.sh: $c: no such certificate file" >&2
        exit 1
    fi
    hash="$(sha256sum <"$c" | cut -c1-16)"
    new_sources+=("$c")
    new_names+=("$revoked_dir/$(basename "$c" .pem)-$hash.pem")
done

# The CRL is made from the revoked/ list plus the new certificates; the new ones are filed into
# revoked/ only once the CRL is written, so a refused certificate (say, of another CA) never
# lands in the list to break every later run.
revoke=()
shopt -s nullglob
for f in "$revoked_dir"/*.pem ${new_sources[@]+"${new_sources[@]}"}; do
    revoke+=(--revoke "$f")
done
"${eg[@]}" certs crl --ca-dir "$ca_dir" --out "$crl" --next-update-days "$next_update_days" ${revoke[@]+"${revoke[@]}"}

mkdir -p "$revoked_dir"
for i in "${!new_sources[@]}"; do
    cp -- "${new_sources[$i]}" "${new_names[$i]}"
done
if [[ ${#new_sources[@]} -gt 0 ]]; then
    echo "revoked ${new_sources[*]}; new handshakes with them fail (reason cert_revoked)," \
        "sessions already connected end at their next publish"
fi
