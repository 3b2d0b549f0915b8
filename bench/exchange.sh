#!/usr/bin/env bash
# Trusted publishing's exchange under load (bench/exchange): exchanges/s
# and p99 against devpi-credd serve, beside a bare Go HTTP server on TCP
# (the ceiling) and one that only verifies each token's signature (the
# floor of verifying), on the same requests.
#   bench/exchange.sh BIN
set -euo pipefail
bin=$(realpath "$1")
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$here/bench/lib.sh"
go build -o "$work/exchange" "$here/bench/exchange"
"$work/exchange" -bin "$bin" -c 64 -d 10s -n 30000 -rate 500
