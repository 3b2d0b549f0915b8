#!/usr/bin/env bash
# make demo: the main job end to end on this machine. A local devpi-server
# with devpi-tokens and devpi-lockdown, behind nginx so that nothing can be
# read without credentials; a long-lived token made and handed to
# devpi-credd's daemon; then twine upload and pip install with no password
# or token in any config file, environment variable or command line: they
# ask the keyring, and devpi-credd answers with short-lived scoped tokens.
# Everything lives in a temporary directory (its own HOME) and is stopped
# and removed at the end, also on Ctrl-C.
#   scripts/demo.sh BIN    (DEVPI_CREDD_VENV points at the venvs)
set -euo pipefail
bin=$(realpath "$1")
venv=${DEVPI_CREDD_VENV:?set DEVPI_CREDD_VENV (make demo does)}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d -t devpi-credd-demo.XXXXXX)
pids=()
cleanup() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
export HOME=$work/home DEVPI_CLIENTDIR=$work/home/.devpi/client
export XDG_RUNTIME_DIR=$work/run XDG_CONFIG_HOME=$work/home/.config XDG_STATE_HOME=$work/home/.local/state
unset PYTHON_KEYRING_BACKEND PIP_INDEX_URL TWINE_USERNAME TWINE_PASSWORD
mkdir -p "$HOME"
mkdir -m 700 "$XDG_RUNTIME_DIR"
py=$venv/client/bin/python
devpi=$venv/client/bin/devpi

bold=$(tput bold 2>/dev/null || true) reset=$(tput sgr0 2>/dev/null || true)
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$reset"; }
show() { printf '%s$ %s%s\n' "$bold" "$*" "$reset"; "$@"; }
free_port() { "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wait_ready URL PID: until URL answers 200 (readiness, not a guess), or PID dies.
wait_ready() {
  "$py" - "$1" "$2" <<'PY'
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("%s: the process died during start-up" % url)
    try:
        if urllib.request.urlopen(url, timeout=2).status == 200:
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit("%s did not answer in time" % url)
PY
}

step "Starting devpi-server (devpi-tokens, devpi-lockdown) and nginx in front of it, on 127.0.0.1"
"$venv/server/bin/devpi-init" --serverdir "$work/server" --no-root-pypi >"$work/init.log" 2>&1
dport=$(free_port)
"$venv/server/bin/devpi-server" --serverdir "$work/server" --host 127.0.0.1 --port "$dport" >"$work/server.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$dport/+api" "$!"
nport=$(free_port)
mkdir -m 700 "$work/nginx"
user_line=""; [[ $(id -u) == 0 ]] && user_line="user root;"
sed -e "s|@USER@|$user_line|" -e "s|@DIR@|$work/nginx|g" -e "s|@PORT@|$nport|" \
  -e "s|@UPSTREAM@|http://127.0.0.1:$dport|g" -e "s|@EXCHANGE@|127.0.0.1:$(free_port)|" \
  -e "s|@TOKEN_USER@|$here/packaging/nginx/devpi-credd-token-user.conf|" -e "s|@TLS@||" "$here/e2e/nginx.conf.in" >"$work/nginx/nginx.conf"
nginx=$(command -v nginx || echo /usr/sbin/nginx)
"$nginx" -c "$work/nginx/nginx.conf" -p "$work/nginx" >"$work/nginx.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$nport/+api" "$!"
url=http://127.0.0.1:$nport
echo "devpi: $url (through nginx; devpi-server itself on port $dport)"

step "Creating user alice with index alice/dev (devpi-client, on the server directly)"
"$devpi" use "http://127.0.0.1:$dport" >/dev/null
"$devpi" user -c alice password=demo-password email=alice@example.invalid >/dev/null
"$devpi" login alice --password demo-password >/dev/null
"$devpi" index -c dev volatile=True >/dev/null
"$devpi" logoff >/dev/null
rm -rf "$DEVPI_CLIENTDIR"
echo "done"

step "Reading without credentials: nginx and devpi-lockdown answer 401"
printf '%s\n' "$("$py" -c 'import sys, urllib.request, urllib.error
try: urllib.request.urlopen(sys.argv[1])
except urllib.error.HTTPError as e: print(e.code, e.reason)' "$url/alice/dev/+simple/")"

step "Logging in with devpi-credd (password from stdin) and creating alice's long-lived token"
echo demo-password | show "$bin" login --url "$url" alice --password-stdin
show "$bin" token create -o "$work/root.token"
show "$bin" token inspect -f "$work/root.token"

step "A narrower token, offline: 10 minutes, upload only, alice/dev only"
show "$bin" token derive -f "$work/root.token" -e 10min -a upload -i alice/dev -o "$work/narrow.token"
show "$bin" token inspect -f "$work/narrow.token"

step "Handing the long-lived token to devpi-credd (checked, stored 0600, added to the config); removing every other copy"
show "$bin" token login -f "$work/root.token" --name demo
rm "$work/root.token" "$work/narrow.token"
show "$bin" logout
cat "$XDG_CONFIG_HOME/devpi-credd/config.toml"

step "Starting the daemon on a private Unix socket"
"$bin" serve >"$work/daemon.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do "$bin" status >/dev/null 2>&1 && break; sleep 0.05; done
show "$bin" status

step "Wiring the helper in: a 'keyring' on PATH for pip and uv; twine uses the keyring backend installed beside it"
mkdir -p "$work/bin"
export PATH="$work/bin:$(dirname "$bin"):$PATH"
show "$bin" keyring-link "$work/bin"

step "twine upload: no password anywhere; twine asks its keyring, devpi-credd answers"
wheel=$("$py" "$here/e2e/mkwheel.py" hello-credd 1.0 "$work/dist")
show "$venv/client/bin/twine" upload --non-interactive --disable-progress-bar --repository-url "$url/alice/dev/" "$wheel"

step "pip install from the read-protected index: pip gets a 401, runs 'keyring', devpi-credd answers"
show "$py" -m pip install --disable-pip-version-check --no-cache-dir --keyring-provider subprocess \
  --index-url "$url/alice/dev/+simple/" --target "$work/site" hello-credd
echo "installed: $(ls "$work/site" | grep -v dist-info)"

step "The audit log: every token minted, with its scope (never the token itself)"
"$py" - "$XDG_STATE_HOME/devpi-credd/audit.log" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    who = e["peer"].get("parent_exe", "?").rsplit("/", 1)[-1] + " via " + e["peer"].get("exe", "?").rsplit("/", 1)[-1]
    print("%-6s %-7s %-45s %-30s %s" % (e["event"], e.get("op", ""), e.get("url", ""), who, " ".join(e.get("caveats", []))))
PY

step "Done. Stopping the daemon, nginx and devpi-server; removing $work"
