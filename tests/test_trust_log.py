"""Trust, the log (issue 23 items 3 and 19): a value from outside cannot
forge a log line or make the log binary, whatever service it is sent to;
an error nobody expected is logged with its traceback and exits 8 (deliver:
70), never 1 ("corrected") and never with a traceback on the terminal."""

import os
import re
import smtplib
import socket

import pytest
from lmtp_harness import socket_path, start_lmtpd, start_service, start_stored, stop

from store import accounts
from store.layout import Layout
from store.logsetup import escape
from store.mailbox import Store

# what every line of log/default looks like: our time stamp, pid, logger and level
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \d+ store\.[\w.]+ "
                  r"(DEBUG|INFO|WARNING|ERROR|CRITICAL): ")
HOSTILE = ["a\nb", "a\rb", "a\0b", "a\u0085b", "a\u2028b", "a\u2029b", "a\x1bb"]
FORGED = "x 2026-12-07 10:00:00,000 1 store.stored CRITICAL: Database damaged: run imdbverify -r"


def log_text(root):
    with open(os.path.join(root, "log", "default"), "rb") as f:
        data = f.read()
    return data


def assert_clean(root):
    data = log_text(root)
    assert b"\0" not in data
    text = data.decode("utf-8")
    for bad in ("\u0085", "\u2028", "\u2029", "\r", "\x1b"):
        assert bad not in text
    for line in text.splitlines():
        assert LINE.match(line), line
    return text


def test_escape_keeps_text_on_one_printable_line():
    for s in HOSTILE:
        e = escape(s)
        assert e.isprintable() and e.startswith("a") and e.endswith("b") and len(e) > 3
    assert escape("joe@example.com Sent/2026 é ü") == "joe@example.com Sent/2026 é ü"
    assert escape("a\udcffb") == "a\\udcffb"  # an undecodable byte, as a surrogate escape


@pytest.fixture
def services(tmp_path):
    root = str(tmp_path / "store")
    with Store.init(root) as s:
        s.create("user/joe")
    accounts.set_password(Layout.open(root), "joe", "pw")
    stored = start_stored(root)
    imapd, iport = start_service("imapd", root)
    popd, pport = start_service("popd", root)
    lmtpd = start_lmtpd(root)
    yield root, iport, pport
    for p in (imapd, popd):
        p.terminate()
        p.wait(30)
    stop(lmtpd)
    stop(stored)


def test_hostile_names_forge_no_log_line_through_any_service(services):
    root, iport, pport = services
    # every connection first, then every answer: each failed login waits its second
    # (FAILED_LOGIN_DELAY) at the same time
    waiting = []
    for value in HOSTILE + ["\n" + FORGED]:
        raw = value.encode()
        c = socket.create_connection(("127.0.0.1", iport), 10)
        f = c.makefile("rb")
        f.readline()
        c.sendall(b"a LOGIN {%d}\r\n" % len(raw))
        assert f.readline().startswith(b"+")
        c.sendall(raw + b" wrong\r\n")
        waiting.append((c, f, b"a NO"))
        if "\n" not in value and "\r" not in value:  # POP3 is line-based
            c = socket.create_connection(("127.0.0.1", pport), 10)
            f = c.makefile("rb")
            f.readline()
            c.sendall(b"USER " + raw + b"\r\n")
            f.readline()
            c.sendall(b"PASS wrong\r\n")
            waiting.append((c, f, b"-ERR"))
    for c, f, want in waiting:
        assert f.readline().startswith(want)
        c.close()
    lm = smtplib.LMTP(socket_path(root))
    lm.ehlo()
    for value in ["a\u2028b", "a\u0085b", "a\x1bb"]:
        lm.mail('"' + value + '"@example.org', ["SMTPUTF8"])
        lm.rcpt("nobody-" + "x" + "@example.com")
        lm.rset()
    lm.quit()
    text = assert_clean(root)
    assert "login failed for a\\nb" in text and "login failed for a\\x00b" in text
    assert "login failed for a\\u2028b" in text and "popd: login failed for a\\x1bb" in text
    assert 'from=<a\\u2028b@example.org>' in text
    assert not any(" store.stored CRITICAL" in ln[:70] for ln in text.splitlines())


def test_an_unexpected_error_exits_8_with_one_line_and_its_traceback_in_the_log(
        cli, root, monkeypatch):
    with Store.init(root) as s:
        s.create("user/joe")

    def broken(*_a, **_k):
        raise ZeroDivisionError("a bug\nwith two lines")
    monkeypatch.setattr(Store, "list", broken)
    r = cli("mboxutil", "--store-root", root, "-l")
    assert r.code == 8, r
    assert len(r.err.splitlines()) == 1 and "internal error ZeroDivisionError" in r.err
    assert "Traceback" not in r.err
    text = assert_clean(root)
    line = [ln for ln in text.splitlines() if "internal error" in ln][-1]
    assert " CRITICAL: mboxutil: internal error ZeroDivisionError" in line
    assert "Traceback (most recent call last):\\n" in line and "in broken" in line


def test_deliver_exits_70_on_an_unexpected_error(cli, root, monkeypatch):
    with Store.init(root) as s:
        s.create("user/joe")

    def broken(*_a, **_k):
        raise KeyError("bug")
    monkeypatch.setattr(Store, "append_many", broken)
    monkeypatch.setattr(Store, "append_stream", broken)
    r = cli("deliver", "--store-root", root, "user/joe", input=b"Subject: x\n\nx\n")
    assert r.code == 70, r
    assert len(r.err.splitlines()) == 1 and "Traceback" not in r.err
    text = assert_clean(root)
    assert "internal error KeyError" in text and "Traceback (most recent call last)" in text
