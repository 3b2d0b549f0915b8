# Shared by the bench scripts: source it. It makes $work, a temporary
# directory removed on exit together with the processes in $pids.

work=$(mktemp -d /tmp/credd-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# mean_ms N CMD...: runs CMD N times (after one warm-up run), prints the
# mean wall milliseconds per run.
mean_ms() {
  local n=$1; shift
  "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; return 1; }
  local start end
  start=$(date +%s%N)
  for ((i = 0; i < n; i++)); do "$@" >/dev/null 2>&1; done
  end=$(date +%s%N)
  awk -v d=$((end - start)) -v n="$n" 'BEGIN { printf "%.2f", d / n / 1e6 }'
}

wait_socket() {
  for _ in $(seq 1 200); do [[ -S $1 ]] && return 0; sleep 0.05; done
  echo "no socket at $1" >&2; return 1
}

# start_daemon BIN LOAD [NAME [TOML]]: a daemon on $work/NAME/socket
# (default run) for server "bench" at http://127.0.0.1:3141/ with a root
# token minted by LOAD -mktoken (a made-up key: nothing verifies it here);
# TOML goes at the top of its config. Sets $daemon_pid.
start_daemon() {
  local name=${3:-run}
  mkdir -p -m 700 "$work/tokens"
  "$2" -mktoken "$work/tokens/bench.token"
  cat >"$work/$name.toml" <<TOML
${4:-}
socket = "$work/$name/socket"
audit_log = "$work/$name.audit.log"
[servers.bench]
url = "http://127.0.0.1:3141/"
token_file = "$work/tokens/bench.token"
TOML
  "$1" serve --config "$work/$name.toml" --log-level warn &
  daemon_pid=$!
  pids+=("$daemon_pid")
  wait_socket "$work/$name/socket"
}
