#!/usr/bin/env bash
# make demo: a local devpi-server with devpi-tokens on 127.0.0.1, then
# devpi-credd's token commands and a twine upload with a derived token.
# Everything lives in a temporary directory (its own HOME) and is stopped
# and removed at the end, also on Ctrl-C.
#   scripts/demo.sh BIN    (DEVPI_CREDD_VENV points at the venvs)
set -euo pipefail
bin=$(realpath "$1")
venv=${DEVPI_CREDD_VENV:?set DEVPI_CREDD_VENV (make demo does)}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d -t devpi-credd-demo.XXXXXX)
server_pid= daemon_pid=
cleanup() {
  for pid in $daemon_pid $server_pid; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
export HOME=$work/home DEVPI_CLIENTDIR=$work/home/.devpi/client PYTHON_KEYRING_BACKEND=keyring.backends.null.Keyring
export XDG_RUNTIME_DIR=$work/run XDG_CONFIG_HOME=$work/home/.config XDG_STATE_HOME=$work/home/.local/state
mkdir -p "$HOME"
mkdir -m 700 "$XDG_RUNTIME_DIR"
py=$venv/client/bin/python

bold=$(tput bold 2>/dev/null || true) reset=$(tput sgr0 2>/dev/null || true)
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$reset"; }
show() { printf '%s$ %s%s\n' "$bold" "$*" "$reset"; "$@"; }

step "Starting devpi-server with devpi-tokens on 127.0.0.1 (in $work)"
"$venv/server/bin/devpi-init" --serverdir "$work/server" --no-root-pypi >"$work/init.log" 2>&1
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
"$venv/server/bin/devpi-server" --serverdir "$work/server" --host 127.0.0.1 --port "$port" >"$work/server.log" 2>&1 &
server_pid=$!
# Wait for readiness: /+api answers 200, or the server died.
"$py" - "$url/+api" "$server_pid" <<'PY'
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("devpi-server exited during start-up; see its log")
    try:
        if urllib.request.urlopen(url, timeout=2).status == 200:
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit("devpi-server did not answer in time")
PY
echo "devpi-server is up at $url"

step "Creating user alice with indexes alice/dev and alice/prod (devpi-client)"
"$venv/client/bin/devpi" use "$url" >/dev/null
"$venv/client/bin/devpi" user -c alice password=demo-password email=alice@example.invalid >/dev/null
"$venv/client/bin/devpi" login alice --password demo-password >/dev/null
"$venv/client/bin/devpi" index -c dev volatile=True >/dev/null
"$venv/client/bin/devpi" index -c prod volatile=True >/dev/null
"$venv/client/bin/devpi" logoff >/dev/null
echo "done"

step "Logging in to devpi-server with devpi-credd (password from stdin, never a flag)"
echo demo-password | show "$bin" login --url "$url" alice --password-stdin

step "Creating alice's long-lived token (one year by default), written with mode 0600"
show "$bin" token create -o "$work/root.token"
ls -l "$work/root.token"

step "Inspecting it offline"
show "$bin" token inspect -f "$work/root.token"

step "Deriving a token offline: 10 minutes, upload only, alice/dev only, project hello-credd only"
show "$bin" token derive -f "$work/root.token" -e 10min -a upload -i alice/dev -p hello-credd -o "$work/upload.token"
show "$bin" token inspect -f "$work/upload.token"

step "twine upload to alice/dev with the derived token (from the environment, not argv)"
wheel=$("$py" "$here/e2e/mkwheel.py" hello-credd 1.0 "$work/dist")
TWINE_USERNAME=alice TWINE_PASSWORD=$(cat "$work/upload.token") \
  show "$venv/client/bin/twine" upload --non-interactive --disable-progress-bar --repository-url "$url/alice/dev/" "$wheel"

step "The same token is refused for alice/prod: the server checks every restriction"
if TWINE_USERNAME=alice TWINE_PASSWORD=$(cat "$work/upload.token") \
  "$venv/client/bin/twine" upload --non-interactive --disable-progress-bar --repository-url "$url/alice/prod/" "$wheel" >"$work/refused.log" 2>&1; then
  echo "unexpected: the upload to alice/prod succeeded" >&2
  exit 1
fi
grep -m1 -o '403 Forbidden.*' "$work/refused.log" || tail -3 "$work/refused.log"

step "alice's tokens on the server (derived tokens are not listed: only the daemon can keep that record)"
show "$bin" token list

step "Handing the long-lived token to devpi-credd: checked against the server, stored 0600, added to the config"
show "$bin" token login -f "$work/root.token" --name demo
rm "$work/root.token" "$work/upload.token"
cat "$XDG_CONFIG_HOME/devpi-credd/config.toml"

step "Starting the daemon (devpi-credd serve) on a private Unix socket"
"$bin" serve >"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 100); do "$bin" status >/dev/null 2>&1 && break; sleep 0.05; done
show "$bin" status

step "Asking the daemon for an upload token for alice/dev: 5 minutes, upload only, that index only"
show "$bin" get --json "$url/alice/dev/"

step "twine upload with a token straight from the daemon; no long-lived token outside its store"
wheel2=$("$py" "$here/e2e/mkwheel.py" hello-credd 1.1 "$work/dist")
TWINE_USERNAME=alice TWINE_PASSWORD=$("$bin" get "$url/alice/dev/") \
  show "$venv/client/bin/twine" upload --non-interactive --disable-progress-bar --repository-url "$url/alice/dev/" "$wheel2"

step "A read token for alice/dev: pip installs hello-credd with it"
read_token=$("$bin" get "$url/alice/dev/+simple/")
PIP_INDEX_URL="http://alice:$read_token@127.0.0.1:$port/alice/dev/+simple/" \
  "$py" -m pip install --disable-pip-version-check --no-cache-dir --quiet --target "$work/site" hello-credd==1.1
echo "installed: $(ls "$work/site" | grep -v dist-info)"

step "The audit log: one line per token minted (never the token itself)"
cat "$XDG_STATE_HOME/devpi-credd/audit.log"

step "Done. Stopping the daemon and devpi-server, removing $work"
