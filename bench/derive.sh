#!/usr/bin/env bash
# Side-by-side: one offline token derive (and inspect) as a whole process,
# devpi-credd against devpi-client's token-derive (the Python path).
#   bench/derive.sh BIN        (DEVPI_CREDD_VENV points at the venvs)
# Prints the mean wall time per run of each.
set -euo pipefail
bin=$(realpath "$1")
venv=${DEVPI_CREDD_VENV:?set DEVPI_CREDD_VENV (make bench does)}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
export HOME=$work DEVPI_CLIENTDIR=$work/devpi-client

# A root token to derive from: only its format matters offline, so
# pymacaroons mints one with a made-up key, as devpi-tokens' server would.
"$venv/client/bin/python" - "$work/root.token" <<'PY'
import sys, pymacaroons
m = pymacaroons.Macaroon(identifier="bench-abcd2345", key="bench key", version=pymacaroons.MACAROON_V2)
m.add_first_party_caveat("expires=4102444800")
open(sys.argv[1], "w").write("devpi-" + m.serialize() + "\n")
PY
chmod 600 "$work/root.token"


printf '%-44s %10s\n' "command (whole process, mean of runs)" "ms/run"
printf '%-44s %10s\n' "devpi-credd token derive -e 1h -i bench/dev" "$(mean_ms 200 "$bin" token derive -f "$work/root.token" -e 1h -i bench/dev)"
printf '%-44s %10s\n' "devpi token-derive -e 1h -i bench/dev" "$(mean_ms 10 "$venv/client/bin/devpi" token-derive -f "$work/root.token" -e 1h -i bench/dev)"
printf '%-44s %10s\n' "devpi-credd token inspect" "$(mean_ms 200 "$bin" token inspect -f "$work/root.token")"
printf '%-44s %10s\n' "devpi token-inspect" "$(mean_ms 10 "$venv/client/bin/devpi" token-inspect -f "$work/root.token")"
printf '%-44s %10s\n' "ceiling: /bin/true" "$(mean_ms 200 /bin/true)"
