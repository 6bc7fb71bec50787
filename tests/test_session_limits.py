"""Issue 25 (seed 000): each service checks its descriptor limit against its
session count at start (Sun's "Recommend ulimit -n N"), and a connection it
cannot take is answered "try later" and logged, never closed silently."""

import os
import resource
import socket

from conftest import wait_for
from lmtp_harness import socket_path, start_lmtpd, start_service, start_stored, stop

from store import accounts
from store.layout import Layout
from store.mailbox import Store


def _store(tmp_path, **settings):
    root = str(tmp_path / "store")
    with Store.init(root) as s:
        s.create("user/joe")
        for name, value in settings.items():
            s.layout.config.set(name, value)
    accounts.set_password(Layout.open(root), "joe", "pw")
    return root


def _log(root):
    with open(os.path.join(root, "log", "default"), encoding="utf-8") as f:
        return f.read()


def _first_line(port, timeout=60):
    s = socket.create_connection(("127.0.0.1", port), timeout)
    f = s.makefile("rb")
    return s, f.readline()


def _session(connect, ok: bytes, later: bytes):
    """A session greeted `ok`: the readiness probe's connection may not be
    seen closed yet, so a "try later" (`later`, never a silent close) is
    tried again until a deadline."""
    def greeted():
        s, line = connect()
        if line.startswith(ok):
            return s
        assert line.startswith(later), line
        s.close()
        return None
    return wait_for(greeted, 60, f"a session greeted {ok!r}")


def test_imapd_answers_past_maxsessions_with_bye_unavailable_and_logs_it(tmp_path):
    root = _store(tmp_path, **{"service.imap.maxsessions": "2"})
    stored = start_stored(root)
    proc, port = start_service("imapd", root)
    held = []
    try:
        for _ in range(2):
            held.append(_session(lambda: _first_line(port), b"* OK", b"* BYE [UNAVAILABLE]"))
        s, line = _first_line(port)
        assert line.startswith(b"* BYE [UNAVAILABLE] 2 sessions already "
                               b"(service.imap.maxsessions)"), line
        s.close()
        assert "imapd: connection from 127.0.0.1:" in _log(root)
        assert "refused: 2 sessions already (service.imap.maxsessions)" in _log(root)
        held.pop().close()  # the server sees the close, then takes a new session
        _session(lambda: _first_line(port), b"* OK", b"* BYE [UNAVAILABLE]").close()
    finally:
        for s in held:
            s.close()
        stop(proc)
        stop(stored)


def _low_fd_limit():
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


def test_a_low_descriptor_limit_is_logged_at_start_and_no_client_is_dropped_silently(tmp_path):
    root = _store(tmp_path)
    stored = start_stored(root)
    proc, port = start_service("imapd", root, preexec_fn=_low_fd_limit)
    clients = []
    try:
        assert ("imapd: Not enough file descriptors for 1000 sessions "
                "(service.imap.maxsessions): the limit is 64. Recommend ulimit -n 3032"
                in _log(root))
        lines = []
        for _ in range(60):
            s, line = _first_line(port)
            clients.append(s)
            lines.append(line)
        assert all(line.startswith((b"* OK", b"* BYE [UNAVAILABLE]")) for line in lines), lines
        assert any(line.startswith(b"* BYE [UNAVAILABLE] out of file descriptors")
                   for line in lines), lines
        assert "refused: out of file descriptors" in _log(root)
    finally:
        for s in clients:
            s.close()
        stop(proc)
        stop(stored)


def test_popd_past_maxsessions_is_sys_temp(tmp_path):
    root = _store(tmp_path, **{"service.pop.maxsessions": "1"})
    stored = start_stored(root)
    proc, port = start_service("popd", root)
    try:
        a = _session(lambda: _first_line(port), b"+OK", b"-ERR [SYS/TEMP]")
        b, line = _first_line(port)
        assert line.startswith(b"-ERR [SYS/TEMP] 1 sessions already"), line
        a.close()
        b.close()
        assert "popd: connection from 127.0.0.1:" in _log(root)
    finally:
        stop(proc)
        stop(stored)


def test_lmtpd_past_maxsessions_is_421_so_the_mta_retries(tmp_path):
    root = _store(tmp_path, **{"local.lmtp.maxsessions": "1", "local.lmtp.workers": "1"})
    stored = start_stored(root)
    lmtpd = start_lmtpd(root)
    try:
        def connect():
            c = socket.socket(socket.AF_UNIX)
            c.connect(socket_path(root))
            return c, c.makefile("rb").readline()
        a = _session(connect, b"220", b"421 4.3.2")
        b = socket.socket(socket.AF_UNIX)
        b.connect(socket_path(root))
        line = b.makefile("rb").readline()
        assert line.startswith(b"421 4.3.2 1 sessions already (local.lmtp.maxsessions)"), line
        a.close()
        b.close()
        assert "lmtpd: connection from the local socket refused" in _log(root)
    finally:
        stop(lmtpd)
        stop(stored)
