#!/usr/bin/env bash
# Load on the daemon's socket, beside a bare Go HTTP server on a socket
# (the ceiling): 64 concurrent keep-alive clients for 10 s each.
#   bench/daemon.sh BIN
set -euo pipefail
bin=$(realpath "$1")
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/credd-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/load" "$here/bench/load"
mkdir -m 700 "$work/run" "$work/tokens"
"$work/load" -mktoken "$work/tokens/bench.token"
cat >"$work/config.toml" <<TOML
socket = "$work/run/socket"
audit_log = "$work/audit.log"
[servers.bench]
url = "http://127.0.0.1:3141/"
token_file = "$work/tokens/bench.token"
TOML

wait_socket() {
  for _ in $(seq 1 200); do [[ -S $1 ]] && return 0; sleep 0.05; done
  echo "no socket at $1" >&2; return 1
}

"$bin" serve --config "$work/config.toml" --log-level warn &
pids+=($!)
daemon=$!
wait_socket "$work/run/socket"
sleep 1 # let start-up garbage settle before reading idle RSS
echo "== devpi-credd serve: POST /v1/credentials (upload scope, audit line each)"
"$work/load" -socket "$work/run/socket" -pid "$daemon" -c 64 -d 10s
echo "-- the same at the target load of 20,000/s"
"$work/load" -socket "$work/run/socket" -pid "$daemon" -c 64 -d 10s -rate 20000
echo "audit lines written: $(wc -l <"$work/audit.log")"

"$work/load" -ceiling "$work/run/ceiling" &
pids+=($!)
wait_socket "$work/run/ceiling"
echo
echo "== ceiling: bare Go net/http on a Unix socket, fixed body"
"$work/load" -socket "$work/run/ceiling" -pid "$!" -c 64 -d 10s
"$work/load" -socket "$work/run/ceiling" -c 64 -d 10s -rate 20000
