#!/usr/bin/env bash
# The keyring lookup end to end, as pip, uv and pdm run it for every
# lookup: process start, socket round trip, mint. In one hyperfine run:
# the floor (a trivial Go binary), the minimal client (dial, one HTTP
# request, read the JSON: bench/minclient), devpi-credd-keyring (what
# keyring-link links), devpi-credd itself started as keyring; then the
# Python keyring CLI doing the same job through our backend.
#   bench/keyring.sh BINDIR    (devpi-credd and devpi-credd-keyring; DEVPI_CREDD_VENV points at the venvs)
set -euo pipefail
bindir=$(realpath "$1")
venv=${DEVPI_CREDD_VENV:?set DEVPI_CREDD_VENV (make bench does)}
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$here/bench/lib.sh"
command -v hyperfine >/dev/null || { echo "hyperfine is missing (make deps installs it)" >&2; exit 1; }
for b in load trivial minclient; do go build -o "$work/$b" "$here/bench/$b"; done
start_daemon "$bindir/devpi-credd" "$work/load"
mkdir "$work/lean" "$work/full"
ln -s "$bindir/devpi-credd-keyring" "$work/lean/keyring"
ln -s "$bindir/devpi-credd" "$work/full/keyring"
export DEVPI_CREDD_SOCKET=$work/run/socket DEVPI_CREDD_BIN=$bindir/devpi-credd
unset PYTHON_KEYRING_BACKEND
# Services that need no devpi-server: an upload URL (twine, uv publish)
# and a bare host (pip's second lookup). A read of an index would look up
# its bases on the server, once a minute.
svc=http://127.0.0.1:3141/bench/dev/
host=127.0.0.1:3141

hyperfine -N --warmup 30 --runs 500 --export-json "$work/go.json" --style basic \
  -n floor "$work/trivial" \
  -n minimal-client "$work/minclient $DEVPI_CREDD_SOCKET $svc" \
  -n keyring-link "$work/lean/keyring get $svc bench" \
  -n keyring-link-json "$work/lean/keyring --mode=creds --output=json get $host" \
  -n devpi-credd-as-keyring "$work/full/keyring get $svc bench" >/dev/null
hyperfine -N --warmup 3 --runs 20 --export-json "$work/py.json" --style basic \
  -n python-keyring "$venv/client/bin/keyring get $svc bench" >/dev/null
python3 - "$work/go.json" "$work/py.json" <<'PY'
import json, sys
rows = {}
for path in sys.argv[1:]:
    for r in json.load(open(path))["results"]:
        rows[r["command"]] = r
print(f'{"command (whole process)":<58} {"mean ms":>8} {"p50 ms":>8} {"stddev":>7}')
for name, what in [("floor", "floor: a trivial Go binary"),
                   ("minimal-client", "minimal client: dial, one request, read JSON"),
                   ("keyring-link", "keyring get URL USER (devpi-credd-keyring; pip<26.2, uv)"),
                   ("keyring-link-json", "keyring --mode=creds --output=json get HOST (pip>=26.2)"),
                   ("devpi-credd-as-keyring", "devpi-credd itself started as keyring"),
                   ("python-keyring", "Python keyring CLI with our backend")]:
    r = rows[name]
    print(f'{what:<58} {r["mean"]*1e3:8.2f} {r["median"]*1e3:8.2f} {r["stddev"]*1e3:7.2f}')
m = rows["minimal-client"]["mean"]
print(f'keyring link / minimal client: {rows["keyring-link"]["mean"]/m:.2f}x (goal: at most 1.25x); '
      f'json: {rows["keyring-link-json"]["mean"]/m:.2f}x; devpi-credd as keyring: {rows["devpi-credd-as-keyring"]["mean"]/m:.2f}x')
PY
