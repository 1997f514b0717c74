#!/usr/bin/env bash
# Rotates the gateway's server certificate: issues a new certificate and key under temporary
# names next to the live files, checks them, and renames them over the live ones. The gateway's
# cert-rotation actor sees the renames, validates the whole set and swaps it in for new
# handshakes; sessions already connected are not touched.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: certs/rotate-server.sh [--dir DIR] [--ca-dir DIR] [--name NAME] [-- SERVER-OPTIONS...]

Issues a new server certificate and key for the gateway's device listener and renames them
over DIR/NAME.pem and DIR/NAME.key (the files tls.cert and tls.key point to).

Options:
  --dir DIR      directory of the live files (default: certs/dev, under the current directory)
  --ca-dir DIR   directory of ca.pem and ca.key (default: the --dir directory)
  --name NAME    file name stem of the live files (default: server)
  -- ...         options for `edge-gateway certs server` (--cn, --dns, --ip, --days, ...).
                 Without them the new certificate keeps the live one's CN and DNS/IP names
                 (read with openssl; the CLI defaults when openssl or the live file is missing).
  -h, --help     show this text

As tls.renew_command (e.g. ["certs/rotate-server.sh", "--dir", "certs/dev"]): the gateway sets
EDGE_GATEWAY_CERT to the label of the expiring certificate; this script renews "server" only
and fails for any other label (a CA or a cloud certificate needs its own procedure).

The edge-gateway binary is $EDGE_GATEWAY if set, else `cargo run --release --locked --` in
this repository.
USAGE
}

dir=certs/dev
ca_dir=
name=server
server_opts=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --dir) dir="${2:?--dir needs a directory}"; shift 2 ;;
        --ca-dir) ca_dir="${2:?--ca-dir needs a directory}"; shift 2 ;;
        --name) name="${2:?--name needs a file name stem}"; shift 2 ;;
        --) shift; server_opts=("$@"); break ;;
        *) echo "rotate-server.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
ca_dir="${ca_dir:-$dir}"
if [[ -n "${EDGE_GATEWAY_CERT:-}" && "$EDGE_GATEWAY_CERT" != server ]]; then
    echo "rotate-server.sh: asked to renew '$EDGE_GATEWAY_CERT'; this script renews only the server certificate" >&2
    exit 1
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${EDGE_GATEWAY:-}" ]]; then
    eg=("$EDGE_GATEWAY")
else
    eg=(cargo run --release --locked --manifest-path "$repo/Cargo.toml" --)
fi

live_cert="$dir/$name.pem"
live_key="$dir/$name.key"
# Temporary names in the same directory (so that the final mv is a rename(2) on one file
# system), hidden, and removed if anything below fails.
next="$dir/.$name.next"
trap 'rm -f "$next.pem" "$next.key"' EXIT

# Keep the live certificate's names unless told otherwise: a renewal that silently dropped a
# DNS name would lock out every device that dials it.
if [[ ${#server_opts[@]} -eq 0 && -f "$live_cert" ]] && command -v openssl >/dev/null; then
    cn="$(openssl x509 -in "$live_cert" -noout -subject -nameopt multiline | sed -n 's/^ *commonName *= *//p' || true)"
    if [[ -n "$cn" ]]; then
        server_opts+=(--cn "$cn")
    fi
    sans="$(openssl x509 -in "$live_cert" -noout -ext subjectAltName 2>/dev/null | tail -n +2 | tr ',' '\n' | sed 's/^ *//' || true)"
    while IFS= read -r san; do
        case "$san" in
            DNS:*) server_opts+=(--dns "${san#DNS:}") ;;
            "IP Address:"*) server_opts+=(--ip "${san#IP Address:}") ;;
        esac
    done <<<"$sans"
fi

"${eg[@]}" certs server --ca-dir "$ca_dir" --out "$next" "${server_opts[@]}"

# Check the new pair before it goes live (the gateway checks again and refuses a bad set).
if command -v openssl >/dev/null; then
    openssl verify -CAfile "$ca_dir/ca.pem" "$next.pem" >/dev/null
    if [[ "$(openssl x509 -in "$next.pem" -noout -pubkey)" != "$(openssl pkey -in "$next.key" -pubout)" ]]; then
        echo "rotate-server.sh: $next.key does not match $next.pem" >&2
        exit 1
    fi
fi

# Two renames cannot be one atomic step, so for a moment the key is new and the certificate
# old. That is harmless: the gateway reloads tls.reload_debounce_ms (500 ms by default) after
# the first file event, by which time both renames are done; and if it ever
# validated in between, the mismatched pair would be refused (the old set stays) and the
# second rename would trigger the reload that succeeds. The key goes first, the certificate
# last, as `edge-gateway certs` itself does.
mv -f -- "$next.key" "$live_key"
mv -f -- "$next.pem" "$live_cert"
echo "rotated $live_cert and $live_key; the gateway swaps them in for new handshakes"
