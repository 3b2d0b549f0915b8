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
echo "audit lines written: $(wc -l <"$work/run.audit.log")"

# With allow_uids set, other uids reach the daemon on its shared socket
# (0666); the owner's own stays private. The owner's load on its socket,
# without and then with another uid (65534) flooding the shared one with
# held connections and refused requests (e2e/attacker flood).
if [[ $(id -u) == 0 ]]; then
  go build -o "$work/attacker" "$here/e2e/attacker"
  chmod 0711 "$work"
  start_daemon "$bin" "$work/load" owner "allow_uids = [4242]
shared_socket = \"$work/shared/socket\""
  owner=$daemon_pid
  echo
  echo "== allow_uids set: the owner's load, no flood"
  "$work/load" -socket "$work/owner/socket" -pid "$owner" -c 64 -d 10s
  "$work/load" -socket "$work/owner/socket" -c 64 -d 10s -rate 20000
  echo "-- the same while uid 65534 floods the shared socket"
  flood() { setpriv --reuid 65534 --regid 65534 --clear-groups "$work/attacker" flood "$work/shared/socket" "$1"; }
  flood 11s >"$work/flood1" & f=$!
  "$work/load" -socket "$work/owner/socket" -pid "$owner" -c 64 -d 10s
  wait $f; echo "   the flood: $(cat "$work/flood1")"
  flood 11s >"$work/flood2" & f=$!
  "$work/load" -socket "$work/owner/socket" -c 64 -d 10s -rate 20000
  wait $f; echo "   the flood: $(cat "$work/flood2")"
  echo "   daemon: $("$bin" status --socket "$work/owner/socket" | grep -E 'tokens|connections' | tr -s ' ' | paste -sd';')"
  echo "   audit lines for uid 65534: $(grep -c '"uid":65534' "$work/owner.audit.log" || true) (refusal lines and summaries)"
else
  echo "(the flood from another uid needs root: skipped)"
fi

"$work/load" -ceiling "$work/run/ceiling" &
pids+=($!)
wait_socket "$work/run/ceiling"
echo
echo "== ceiling: bare Go net/http on a Unix socket, fixed body"
"$work/load" -socket "$work/run/ceiling" -pid "$!" -c 64 -d 10s
"$work/load" -socket "$work/run/ceiling" -c 64 -d 10s -rate 20000
