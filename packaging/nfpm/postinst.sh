#!/bin/sh
# After install (.deb: postinst; .rpm: %post): the devpi-credd system user
# that devpi-credd-system.service runs as (system mode, docs/service.md),
# from the package's sysusers entry where systemd-sysusers is there, else
# with useradd as that entry says. Nothing is started or enabled: root sets
# system mode up first (devpi-credd setup-system). The user stays when the
# package goes, as Debian's packages leave theirs: files it owns may remain.
set -e
if command -v systemd-sysusers >/dev/null 2>&1; then
  systemd-sysusers devpi-credd.conf
elif ! getent passwd devpi-credd >/dev/null; then
  useradd --system --user-group --home-dir /var/lib/devpi-credd --no-create-home \
    --shell /usr/sbin/nologin --comment "devpi-credd token daemon" devpi-credd
fi
exit 0
