"""Tests of the keyring backend against the real devpi-credd binary
($DEVPI_CREDD_BIN, built by make) and a stand-in daemon on a Unix socket
that answers the local API as devpi-credd's daemon does (localapi)."""

import http.server
import json
import os
import pty
import select
import sys
import socketserver
import threading
import time

import pytest

import keyring
import keyring.backends.chainer

import devpi_credd_keyring
from devpi_credd_keyring import DevpiCreddKeyring

KNOWN = "http://devpi.test:3141/"
# Uploads to this index need the one-time code CODE (approval on).
APPROVED = KNOWN + "alice/approved/"
CODE = "123456"


class _Handler(http.server.BaseHTTPRequestHandler):
    def address_string(self):
        return "unix"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        ttl = self.server.ttl
        if not body["url"].startswith(KNOWN):
            status, reply = 404, {"error": "no configured server matches " + body["url"], "code": "not_found"}
        elif body["url"].startswith(APPROVED) and "code" not in body:
            status, reply = 401, {"error": "a token that can upload needs a one-time code", "code": "approval_required"}
        elif body["url"].startswith(APPROVED) and body["code"] != CODE:
            status, reply = 403, {"error": "the one-time code is wrong", "code": "approval_refused"}
        elif body.get("username") not in (None, "alice"):
            status, reply = 403, {"error": "the token for local is user 'alice''s", "code": "refused"}
        else:
            status, reply = 200, {"username": "alice", "password": "devpi-SHORTLIVED",
                                  "expires": int(time.time()) + ttl,
                                  "server": "local", "token_id": "abcd2345", "caveats": ["expires=1"]}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def program():
    path = os.environ.get("DEVPI_CREDD_BIN")
    if not path:
        pytest.fail("set DEVPI_CREDD_BIN to a built devpi-credd (make test does)")
    return path


@pytest.fixture
def daemon(tmp_path, monkeypatch, program):
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    sock = str(run / "socket")
    server = _Server(sock, _Handler)
    server.requests = []
    server.ttl = 300
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    monkeypatch.setenv("DEVPI_CREDD_SOCKET", sock)
    monkeypatch.setenv("DEVPI_CREDD_BIN", program)
    yield server
    server.shutdown()
    server.server_close()


def test_known_service(daemon, capfd):
    k = DevpiCreddKeyring()
    cred = k.get_credential(KNOWN + "alice/dev/+simple/", None)
    assert (cred.username, cred.password) == ("alice", "devpi-SHORTLIVED")
    assert daemon.requests[-1] == {"url": KNOWN + "alice/dev/+simple/"}
    assert k.get_password(KNOWN + "alice/dev/", "alice") == "devpi-SHORTLIVED"
    assert daemon.requests[-1] == {"url": KNOWN + "alice/dev/", "username": "alice"}
    assert capfd.readouterr().err == ""


def test_one_token_per_upload(daemon):
    """twine's get_credential then get_password cost one mint."""
    k = DevpiCreddKeyring()
    upload = KNOWN + "alice/dev/"
    cred = k.get_credential(upload, None)
    assert k.get_password(upload, cred.username) == cred.password
    assert len(daemon.requests) == 1
    # Another user name is never served from the cache.
    assert k.get_password(upload, "mallory") is None
    assert len(daemon.requests) == 2


def test_no_reuse_near_expiry(daemon):
    """A token about to expire is never handed out twice."""
    daemon.ttl = 3
    k = DevpiCreddKeyring()
    upload = KNOWN + "alice/dev/"
    k.get_credential(upload, None)
    k.get_password(upload, "alice")
    assert len(daemon.requests) == 2


def test_messages_hide_credentials_in_urls(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("DEVPI_CREDD_BIN", str(tmp_path / "gone"))
    (tmp_path / "gone").write_text("#!/bin/sh\necho unreachable >&2\nexit 1\n")
    (tmp_path / "gone").chmod(0o755)
    assert devpi_credd_keyring._redact("https://u:pw@h/x/?token=t") == "https://h/x/?..."
    assert devpi_credd_keyring._redact("u:pw@h:3141") == "h:3141"
    assert devpi_credd_keyring._redact("https://u:Pw#Qx1@h/x/") == "https://h/x/"
    assert devpi_credd_keyring._redact("https://u:Pw?Q@x2@h/x/") == "https://h/x/"
    assert DevpiCreddKeyring().get_password("https://u:pw@h/x/?token=t", "u") is None
    assert DevpiCreddKeyring().get_password("https://u:Pw#Qx1@h/x/", "u") is None
    err = capfd.readouterr().err
    assert "pw" not in err and "Pw" not in err and "Qx" not in err


def test_no_password_in_process_arguments(tmp_path, monkeypatch):
    """The service is passed to devpi-credd without its user info: a
    process's arguments are world-readable."""
    argv = tmp_path / "argv"
    monkeypatch.setenv("DEVPI_CREDD_BIN", str(tmp_path / "spy"))
    (tmp_path / "spy").write_text('#!/bin/sh\necho "$@" >> %s\nexit 1\n' % argv)
    (tmp_path / "spy").chmod(0o755)
    assert DevpiCreddKeyring().get_password("https://u:Pw@Qx1@h/x/", "u") is None
    seen = argv.read_text()
    assert "https://h/x/" in seen and "Pw" not in seen and "Qx" not in seen


def test_at_after_the_host_is_not_asked(tmp_path, monkeypatch):
    """An '@' after the host: the host a client reaches is the one before
    it; devpi-credd is never asked, so no token scoped for the other goes
    there."""
    argv = tmp_path / "argv"
    monkeypatch.setenv("DEVPI_CREDD_BIN", str(tmp_path / "spy"))
    (tmp_path / "spy").write_text('#!/bin/sh\necho "$@" >> %s\nexit 1\n' % argv)
    (tmp_path / "spy").chmod(0o755)
    for service in ("http://evil.example/x@h/alice/dev/", "http://evil.example/f?s=a@h",
                    "http://u:Pw#Qx1@h/x/", "http://evil\\@h/x/"):
        assert DevpiCreddKeyring().get_password(service, "u") is None
    assert not argv.exists()


def test_unknown_service_steps_aside_silently(daemon, capfd):
    k = DevpiCreddKeyring()
    assert k.get_credential("https://pypi.org/simple/", None) is None
    assert k.get_password("https://pypi.org/simple/", "bob") is None
    assert capfd.readouterr().err == ""


def test_refused_says_why_in_one_line(daemon, capfd):
    assert DevpiCreddKeyring().get_password(KNOWN, "mallory") is None
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "devpi-credd: no credentials for" in err and "alice" in err


def test_daemon_down(tmp_path, monkeypatch, program, capfd):
    monkeypatch.setenv("DEVPI_CREDD_SOCKET", str(tmp_path / "nothing" / "socket"))
    monkeypatch.setenv("DEVPI_CREDD_BIN", program)
    assert DevpiCreddKeyring().get_credential(KNOWN, None) is None
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "daemon is not running" in err


def test_writes_go_to_the_next_backend(daemon, tmp_path, monkeypatch):
    """Ours refuses writes in the way keyring's chain skips, so 'keyring
    set' and 'del' keep working for other services."""
    k = DevpiCreddKeyring()
    with pytest.raises(NotImplementedError):
        k.set_password(KNOWN, "alice", "x")
    with pytest.raises(NotImplementedError):
        k.delete_password(KNOWN, "alice")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    chain = keyring.backends.chainer.ChainerBackend()
    assert type(chain.backends[0]).__name__ == "DevpiCreddKeyring"
    chain.set_password("https://upload.example/", "__token__", "pypi-secret")
    assert chain.get_password("https://upload.example/", "__token__") == "pypi-secret"
    chain.delete_password("https://upload.example/", "__token__")
    assert chain.get_password("https://upload.example/", "__token__") is None


def test_not_viable_without_program(monkeypatch, tmp_path):
    monkeypatch.delenv("DEVPI_CREDD_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not DevpiCreddKeyring.viable
    monkeypatch.setenv("DEVPI_CREDD_BIN", str(tmp_path / "missing"))
    assert not DevpiCreddKeyring.viable


def test_registered_and_chained_with_other_backends(daemon, tmp_path, monkeypatch):
    """keyring finds the backend by its entry point, puts it first, and an
    unrelated backend (keyrings.alt's plain-text file) still answers for a
    service devpi-credd does not know."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    from keyrings.alt.file import PlaintextKeyring
    PlaintextKeyring().set_password("https://other.example/", "carol", "carols-password")
    names = [type(b).__name__ for b in keyring.backend.get_all_keyring()]
    assert "DevpiCreddKeyring" in names
    chain = keyring.backends.chainer.ChainerBackend()
    assert type(chain.backends[0]).__name__ == "DevpiCreddKeyring"
    assert chain.get_password(KNOWN + "alice/dev/", "alice") == "devpi-SHORTLIVED"
    assert chain.get_password("https://other.example/", "carol") == "carols-password"
    assert chain.get_credential(KNOWN, None).password == "devpi-SHORTLIVED"


def test_version():
    assert devpi_credd_keyring.__version__


def _in_child(body, tty_input=None):
    """Runs body() in a forked child and returns (its result, what the
    terminal showed): with tty_input, the child has a terminal of its own
    (a pty, its controlling terminal) on which tty_input is typed after
    the prompt; without, it has no terminal at all (a session of its own,
    as under setsid or in CI). The parent keeps serving the stand-in
    daemon meanwhile."""
    rfd, wfd = os.pipe()
    if tty_input is None:
        pid, master = os.fork(), None
        if pid == 0:
            os.setsid()
    else:
        pid, master = pty.fork()
    if pid == 0:
        try:
            os.close(rfd)
            os.write(wfd, json.dumps(body()).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    shown = b""
    deadline = time.time() + 30
    if master is not None:
        typed = False
        while time.time() < deadline:
            ready, _, _ = select.select([master], [], [], deadline - time.time())
            if not ready:
                break
            try:
                chunk = os.read(master, 1024)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            if not typed and b"one-time code: " in shown:
                os.write(master, tty_input)
                typed = True
    result = b""
    while True:
        ready, _, _ = select.select([rfd], [], [], max(0, deadline - time.time()))
        chunk = os.read(rfd, 65536) if ready else b""
        if not chunk:
            break
        result += chunk
    os.close(rfd)
    os.waitpid(pid, 0)
    if master is not None:
        os.close(master)
    return json.loads(result or b"null"), shown.decode("utf-8", "replace")


def test_upload_prompts_once_on_the_terminal(daemon, capfd):
    """An upload with approval on: devpi-credd asks for the code on the
    terminal (not on the pipes the backend reads), twine's two lookups cost
    one prompt, and the code goes in the request, never in argv."""
    def body():
        k = DevpiCreddKeyring()
        cred = k.get_credential(APPROVED, None)
        return [cred and cred.password, k.get_password(APPROVED, "alice"), daemon.requests]
    (password, again, _), shown = _in_child(body, CODE.encode() + b"\n")
    assert password == "devpi-SHORTLIVED" and again == password
    assert shown.count("one-time code: ") == 1
    assert "devpi-credd: approve the upload to " + APPROVED + ": one-time code: " in shown
    assert daemon.requests == [{"url": APPROVED}, {"url": APPROVED, "code": CODE}]


def test_wrong_code_is_not_asked_again(daemon):
    def body():
        k = DevpiCreddKeyring()
        return [k.get_credential(APPROVED, None), k.get_password(APPROVED, "alice")]
    result, shown = _in_child(body, b"999999\n")
    assert result == [None, None]
    assert shown.count("one-time code: ") == 1
    assert "devpi-credd: the one-time code is wrong" in shown
    assert daemon.requests == [{"url": APPROVED}, {"url": APPROVED, "code": "999999"}]


def test_upload_without_terminal_says_what_to_run(daemon, tmp_path):
    """No terminal (setsid, CI): one line saying what to run, nothing
    found, and the get_password after it asks nobody again."""
    err = tmp_path / "stderr"

    def body():
        with open(err, "w") as sys.stderr:
            k = DevpiCreddKeyring()
            return [k.get_credential(APPROVED, None), k.get_password(APPROVED, "alice")]
    result, _ = _in_child(body)
    assert result == [None, None]
    lines = err.read_text().splitlines()
    assert lines == ["devpi-credd: an upload to " + APPROVED + " needs a one-time code and there is no terminal to ask on: "
                     "run the upload under 'devpi-credd exec --approve -- ...' or use 'devpi-credd get --code-stdin " + APPROVED + "'"]
    assert daemon.requests == [{"url": APPROVED}]


def test_timeout_leaves_the_person_time():
    """The subprocess bound covers devpi-credd's own: 15 s for each of two
    calls to the daemon and 2 minutes for the person to type the code."""
    assert devpi_credd_keyring.TIMEOUT > 2 * 15 + 120
