"""keyring backend that answers with short-lived devpi tokens minted by the
devpi-credd daemon, for the services devpi-credd knows, and with nothing for
all others, so that other backends keep answering for theirs.

The protocol lives in devpi-credd itself: this backend runs
``devpi-credd keyring --mode creds --output json get SERVICE [USERNAME]``
and reads its answer (exit 0: JSON; exit 1: nothing for this service).
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time

from keyring.backend import KeyringBackend
from keyring.compat import properties
from keyring.credentials import SimpleCredential

__version__ = "0.1.0"

# Bounded: a lookup never hangs the tool that asked. devpi-credd bounds
# each of its calls to the daemon itself (15 s), so a lookup that prompts
# for nothing ends well within that; an upload with approval on waits for
# the person to type a one-time code on the terminal (2 minutes at most,
# between two calls), which this must not cut short.
TIMEOUT = 160

# twine asks get_credential, then get_password, for one upload: the second
# answer comes from the first for up to this long, and never within the
# last seconds of the token's life, so one upload costs one token and one
# one-time code. A get_credential that found nothing answers the
# get_password after it too: the person is not asked for a code twice.
REUSE_SECONDS = 30
REUSE_MARGIN = 5


def _scheme(service):
    """("scheme://", rest) when service starts with a scheme, else
    ("", service): a "://" inside a password is not a scheme."""
    head, sep, rest = service.partition("://")
    if sep and head[:1].isalpha() and all(c.isalnum() or c in "+-." for c in head):
        return head + sep, rest
    return "", service


def _strip_userinfo(service):
    """service without "user:password@", read as HTTP clients read it: the
    authority ends at the first '/', '?' or '#', the host follows its last
    '@'. None when an '@' follows the host, or the text has a backslash or
    white space: then which host a client would reach is unclear, and
    devpi-credd refuses such a service anyway."""
    if "\\" in service or any(c <= " " or c == "\x7f" for c in service):
        return None
    prefix, rest = _scheme(service)
    end = min([i for i in (rest.find(c) for c in "/?#") if i >= 0] or [len(rest)])
    if "@" in rest[end:]:
        return None
    auth = rest[:end]
    return prefix + auth[auth.rfind("@") + 1:] + rest[end:]


def _redact(service):
    """A service as it may appear in a message: nothing up to its last '@'
    (whatever may be a password), no query, at most 256 characters."""
    prefix, rest = _scheme(service)
    service = prefix + rest[rest.rfind("@") + 1:]
    for mark in "?#":
        if mark in service:
            service = service.split(mark, 1)[0] + "?..."
    return service if len(service) <= 256 else service[:256] + "..."


def _program():
    """The devpi-credd to run: $DEVPI_CREDD_BIN; else the one installed
    with this module (the devpi-credd wheel puts it in the scripts folder,
    or in bin/ beside the module for pip install --target); else the one on
    PATH."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidates = [
        os.environ.get("DEVPI_CREDD_BIN"),
        os.path.join(sysconfig.get_path("scripts"), "devpi-credd"),
        os.path.join(here, "bin", "devpi-credd"),
        shutil.which("devpi-credd"),
    ]
    if os.environ.get("DEVPI_CREDD_BIN"):
        candidates = candidates[:1]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _command(program):
    """The command line that asks for credentials: devpi-credd-keyring
    (the lean helper, which starts several times faster) when it is
    installed beside program, else program's keyring command."""
    ext = ".exe" if program.lower().endswith(".exe") else ""
    lean = os.path.join(os.path.dirname(program), "devpi-credd-keyring" + ext)
    if os.path.isfile(lean) and os.access(lean, os.X_OK):
        return [lean]
    return [program, "keyring"]


class DevpiCreddKeyring(KeyringBackend):
    """Short-lived devpi tokens from the devpi-credd daemon."""

    def __init__(self):
        super().__init__()
        self._recent = {}
        self._missed = {}

    @properties.classproperty
    def priority(cls):
        # Above the OS keyrings (5) and keyrings.alt, so that a devpi
        # server's credentials come from the daemon; services it does not
        # know fall through to the next backend in keyring's chain.
        if _program() is None:
            raise RuntimeError("devpi-credd is not on PATH (or $DEVPI_CREDD_BIN)")
        return 9

    def _ask(self, service, username):
        program = _program()
        if program is None:
            return None
        # Never a password in a process's arguments, where anyone sees it.
        bare = _strip_userinfo(service)
        if bare is None:
            return None
        args = _command(program) + ["--mode", "creds", "--output", "json", "get", bare]
        if username is not None:
            args.append(username)
        # devpi-credd asks for a one-time code on the terminal (/dev/tty),
        # not on these pipes, when an upload needs one.
        try:
            proc = subprocess.run(
                args, stdin=subprocess.DEVNULL, capture_output=True,
                timeout=TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            sys.stderr.write("devpi-credd: no credentials for %s: %s\n" % (_redact(service), e))
            return None
        err = proc.stderr.decode("utf-8", "replace").strip()
        if err:
            # devpi-credd says in one line why there are no credentials.
            sys.stderr.write(err + "\n")
        if proc.returncode != 0:
            return None
        try:
            data = json.loads(proc.stdout)
            cred = SimpleCredential(data["username"], data["password"])
            cred.expires = data.get("expires")
            return cred
        except (ValueError, KeyError, TypeError, AttributeError):
            sys.stderr.write("devpi-credd: unreadable answer for %s\n" % _redact(service))
            return None

    def _cached(self, service, username):
        hit = self._recent.get(service)
        if hit and time.time() < hit[0] and username in (None, hit[1].username):
            return hit[1]
        if time.time() < self._missed.pop(service, 0):
            return None
        cred = self._ask(service, username)
        if cred is None and username is None:
            # twine's get_password follows with the user name it then
            # asked for: a failed one-time code is not asked for again.
            self._missed[service] = time.time() + REUSE_SECONDS
        if cred is not None:
            until = time.time() + REUSE_SECONDS
            expires = getattr(cred, "expires", None)
            if isinstance(expires, (int, float)):
                until = min(until, expires - REUSE_MARGIN)
            self._recent[service] = (until, cred)
        return cred

    def get_credential(self, service, username):
        return self._cached(service, username)

    def get_password(self, service, username):
        cred = self._cached(service, username)
        return cred.password if cred is not None else None

    # Writes are not ours: NotImplementedError makes keyring's chain go on
    # to the next backend, so 'keyring set' keeps working for everything
    # else. Long-lived devpi tokens go in with 'devpi-credd token login'.
    def set_password(self, service, username, password):
        raise NotImplementedError("devpi-credd stores no passwords; use 'devpi-credd token login'")

    def delete_password(self, service, username):
        raise NotImplementedError("devpi-credd holds no password to delete")
