#!/usr/bin/env bash
# debian-docs.sh VERSION DIR: the copyright file (machine-readable) and the
# changelog a .deb carries (changelog.gz: a native package), dated
# SOURCE_DATE_EPOCH.
set -euo pipefail
version=$1 dir=$2
top=$(cd "$(dirname "$0")/../.." && pwd)
{
  echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
  echo "Upstream-Name: devpi-credd"
  echo "Source: https://github.com/devpi-credd/devpi-credd"
  echo
  echo "Files: *"
  echo "Copyright: 2026 the devpi-credd authors"
  echo "License: MIT"
  sed -e 's/^$/./' -e 's/^/ /' "$top/LICENSE" | tail -n +2
} >"$dir/copyright"
date=$(date -u -R -d "@${SOURCE_DATE_EPOCH:?}")
printf 'devpi-credd (%s) unstable; urgency=medium\n\n  * Release %s, built from the devpi-credd repository.\n\n -- devpi-credd authors <devpi-credd@users.noreply.github.com>  %s\n' \
  "$version" "$version" "$date" | gzip -9n >"$dir/changelog.gz"
