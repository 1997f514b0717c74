#!/usr/bin/env bash
# Creates a complete development PKI for one site with `edge-gateway certs ...`.
# Never commit what it writes: certs/dev/ and *.key are in .gitignore.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: certs/dev-pki.sh [--devices N] [--force] [DIR]

Creates a complete development PKI in DIR (default: certs/dev, under the current directory):
  ca.pem, ca.key                the site CA (ca.key signs everything; keep it off gateways)
  server.pem, server.key        the gateway's device listener (CN edge-gateway;
                                SAN DNS:localhost, IP:127.0.0.1)
  dev-001.pem, dev-001.key ...  N device certificates (identity = CN = dev-001, dev-002, ...)
  client.pem, client.key        the gateway's client certificate for the cloud (mTLS)
  crl.pem                       an empty CRL signed by the CA (certs/revoke-device.sh fills it)
  revoked/                      the revoked certificates the CRL is made from

Options:
  --devices N   number of device certificates (default: 3)
  --force       replace an existing CA in DIR: everything is re-issued and revoked/ is emptied
                (its certificates belong to the old CA)
  -h, --help    show this text

The edge-gateway binary is $EDGE_GATEWAY if set, else `cargo run --release --locked --` in
this repository. certs/README.md describes deploying, rotating and revoking these files.
USAGE
}

dir=certs/dev
devices=3
force=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --devices) devices="${2:?--devices needs a number}"; shift 2 ;;
        --devices=*) devices="${1#*=}"; shift ;;
        --force) force=(--force); shift ;;
        -*) echo "dev-pki.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) dir="$1"; shift ;;
    esac
done
if ! [[ "$devices" =~ ^[0-9]+$ ]]; then
    echo "dev-pki.sh: --devices: '$devices' is not a number" >&2
    exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${EDGE_GATEWAY:-}" ]]; then
    eg=("$EDGE_GATEWAY")
else
    eg=(cargo run --release --locked --manifest-path "$repo/Cargo.toml" --)
fi

# Without --force an existing ca.key makes `certs ca` fail, and with it this script, before
# anything is written.
"${eg[@]}" certs ca --dir "$dir" "${force[@]}"
mkdir -p "$dir/revoked"
if [[ ${#force[@]} -gt 0 ]]; then
    rm -f "$dir"/revoked/*.pem
fi
"${eg[@]}" certs server --ca-dir "$dir" --out "$dir/server"
for i in $(seq 1 "$devices"); do
    id="$(printf 'dev-%03d' "$i")"
    "${eg[@]}" certs device --ca-dir "$dir" --out "$dir/$id" --identity "$id"
done
"${eg[@]}" certs client --ca-dir "$dir" --out "$dir/client"
"${eg[@]}" certs crl --ca-dir "$dir" --out "$dir/crl.pem"

cat <<DONE

Dev PKI ready in $dir. For the device listener ([tls] in the config):
  cert = "$dir/server.pem"
  key = "$dir/server.key"
  ca = "$dir/ca.pem"
  crl = ["$dir/crl.pem"]
DONE
if [[ "$devices" -gt 0 ]]; then
    cat <<DONE
A device:
  mosquitto_pub -p 8883 --cafile $dir/ca.pem --cert $dir/dev-001.pem --key $dir/dev-001.key \\
      -i dev-001 -t devices/dev-001/temp -q 1 -m 21.5
DONE
fi
