"""Session telemetry (seeds 002/003): a file per session of a user whose
directory exists, in the seed's format, passwords masked; none once the
directory is removed."""

import imaplib
import os
import poplib
import re

from conftest import wait_for
from test_imapd import imap, pop  # noqa: F401 - the fixtures


def _files(d):
    return sorted(os.path.join(d, f) for f in os.listdir(d))


def test_an_imap_session_is_captured_in_the_seed_format(imap):  # noqa: F811
    root, port, _ = imap
    d = os.path.join(root, "telemetry", "imap", "joe")
    os.makedirs(d)
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login("joe", "pw")
    c.select("INBOX")
    c.uid("FETCH", "1:*", "(FLAGS)")
    c.send(b"x1 LOGIN joe pw-again\r\n")  # BAD once logged in; never in the file
    assert c.readline().startswith(b"x1 BAD")
    c.logout()
    [f] = wait_for(lambda: _written(d, "LOGOUT"), 30, "the session's telemetry, to its LOGOUT")
    assert oct(os.stat(f).st_mode & 0o777) == "0o600"
    text = open(f, encoding="utf-8").read()
    lines = text.splitlines()
    assert re.fullmatch(r"LOGIN joe \d{4}/\d\d/\d\d \d\d:\d\d:\d\d", lines[0])
    assert re.fullmatch(r">\d+\.\d{3}>\w+ OK LOGIN succeeded", lines[1])
    assert any(re.fullmatch(r'<\d+\.\d{3}<\w+ SELECT "?INBOX"?', x) for x in lines)
    i = next(i for i, x in enumerate(lines) if "SELECT" in x)
    assert re.match(r">\d+\.\d{3}>\* \d+ EXISTS", lines[i + 1])
    assert lines[i + 2].startswith("* ")  # the rest of a reply is not prefixed again
    assert any(re.fullmatch(r"<\d+\.\d{3}<\w+ UID FETCH 1:\* \(FLAGS\)", x) for x in lines)
    assert any(re.match(r"\* 1 FETCH \(FLAGS \(.*\) UID 1\)", x.split(">")[-1]) for x in lines)
    assert "pw" not in text.replace("pw-again", "") and "pw-again" not in text
    assert re.search(r"<\d+\.\d{3}<\w+ LOGIN joe \*\*\*", text)
    os.unlink(f)
    os.rmdir(d)  # capture off
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login("joe", "pw")
    c.logout()
    assert not os.path.exists(d)


def test_a_pop_session_is_captured(pop):  # noqa: F811
    root, port, _ = pop
    d = os.path.join(root, "telemetry", "pop", "joe")
    os.makedirs(d)
    c = poplib.POP3("127.0.0.1", port)
    c.user("joe")
    c.pass_("pw")
    c.retr(1)
    c.quit()
    [f] = wait_for(lambda: _written(d, "QUIT"), 30, "the session's telemetry, to its QUIT")
    lines = open(f, encoding="utf-8").read().splitlines()
    assert lines[0].startswith("LOGIN joe ")
    assert re.fullmatch(r">\d+\.\d{3}>\+OK.*", lines[1])
    assert any(re.fullmatch(r"<\d+\.\d{3}<RETR 1", x) for x in lines)
    assert "Subject: hello" in "\n".join(lines)


def test_a_symlinked_telemetry_directory_is_refused(imap, tmp_path):  # noqa: F811
    root, port, _ = imap
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.makedirs(os.path.join(root, "telemetry", "imap"))
    os.symlink(elsewhere, os.path.join(root, "telemetry", "imap", "joe"))
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login("joe", "pw")
    c.logout()
    assert list(elsewhere.iterdir()) == []
    def logged():
        text = open(os.path.join(root, "log", "default"), encoding="utf-8").read()
        return text if "not captured" in text else None
    log = wait_for(logged, 30, "the log line")
    assert "Telemetry of a session of joe not captured" in log and "is a symlink" in log


def _written(d, last):
    """The telemetry files of d once the one there holds `last` (the server
    writes it as the session goes)."""
    files = _files(d)
    return files if files and last in open(files[0], encoding="utf-8").read() else None
