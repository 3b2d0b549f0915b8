#!/usr/bin/env bash
# Prints the version a build carries: X.Y.Z on a commit tagged vX.Y.Z,
# else VERSION's X.Y.Z as a development release, X.Y.Z.devN with N the
# number of commits: valid for PEP 440 (wheels), Debian and RPM alike, and
# the same from every clone of one commit.
set -euo pipefail
cd "$(dirname "$0")/.."
if tag=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null); then
  echo "${tag#v}"
else
  echo "$(tr -d ' \n' <VERSION).dev$(git rev-list --count HEAD)"
fi
