#!/usr/bin/env bash
# Load on the daemon's socket, beside a bare Go HTTP server on a socket
# (the ceiling): 64 concurrent keep-alive clients for 10 s each.
#   bench/daemon.sh BIN
set -euo pipefail
bin=$(realpath "$1")
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$here/bench/lib.sh"
go build -o "$work/load" "$here/bench/load"
start_daemon "$bin" "$work/load"
daemon=$daemon_pid
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
