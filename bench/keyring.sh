#!/usr/bin/env bash
# The keyring helper end to end, as pip and uv run it: process start,
# socket round trip, mint. Beside the floor (starting a trivial Go binary)
# and the Python keyring CLI doing the same job through our backend.
#   bench/keyring.sh BIN    (DEVPI_CREDD_VENV points at the venvs)
set -euo pipefail
bin=$(realpath "$1")
venv=${DEVPI_CREDD_VENV:?set DEVPI_CREDD_VENV (make bench does)}
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$here/bench/lib.sh"
go build -o "$work/load" "$here/bench/load"
go build -o "$work/trivial" "$here/bench/trivial"
start_daemon "$bin" "$work/load"
mkdir "$work/link"
ln -s "$bin" "$work/link/keyring"
export DEVPI_CREDD_SOCKET=$work/run/socket DEVPI_CREDD_BIN=$bin
unset PYTHON_KEYRING_BACKEND
# Services that need no devpi-server: an upload URL (twine, uv publish)
# and a bare host (pip's second lookup). A read of an index would look up
# its bases on the server, once a minute.
svc=http://127.0.0.1:3141/bench/dev/
host=127.0.0.1:3141

printf '%-58s %10s\n' "command (whole process, mean of runs)" "ms/run"
floor=$(mean_ms 300 "$work/trivial")
printf '%-58s %10s\n' "floor: a trivial Go binary" "$floor"
link=$(mean_ms 300 "$work/link/keyring" get "$svc" bench)
printf '%-58s %10s\n' "keyring get URL USER (the devpi-credd link, pip <26.2, uv)" "$link"
printf '%-58s %10s\n' "keyring --mode=creds --output=json get URL (pip >= 26.2)" "$(mean_ms 300 "$work/link/keyring" --mode=creds --output=json get "$host")"
printf '%-58s %10s\n' "Python keyring CLI get URL USER (our backend, import path)" "$(mean_ms 20 "$venv/client/bin/keyring" get "$svc" bench)"
awk -v l="$link" -v f="$floor" 'BEGIN { printf "link / floor: %.2fx\n", l / f }'
