"""imapd with several sessions and users: IDLE woken by deliveries (lmtpd
and another session), expunges told only when RFC 3501 allows, \\Recent,
keywords and PERMANENTFLAGS, UIDPLUS, namespaces and ACL rights, per-user
\\Seen on a shared mailbox. Spoken to with imaplib and, for IDLE, a raw
socket."""

import imaplib
import os
import re
import socket
import time

from lmtp_harness import LMTPClient, socket_path, start_lmtpd, stop
from test_imapd import MSG, imap  # noqa: F401 - the fixture

from store import accounts
from store.layout import Layout
from store.mailbox import Store


def _login(port, user="joe"):
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login(user, "pw")
    return c


class Raw:
    """A bare IMAP connection, for what imaplib cannot say (IDLE)."""

    def __init__(self, port, user="joe"):
        self.s = socket.create_connection(("127.0.0.1", port), 60)
        self.f = self.s.makefile("rb")
        self.f.readline()
        self.cmd(f"a LOGIN {user} pw")

    def cmd(self, line: str) -> list[bytes]:
        tag = line.split()[0].encode()
        self.s.sendall(line.encode() + b"\r\n")
        out = []
        while True:
            got = self.f.readline()
            out.append(got)
            if got.startswith(tag + b" "):
                assert got.split()[1] == b"OK", out
                return out

    def idle_until(self, pattern: bytes, timeout: float) -> tuple[bytes, float]:
        self.s.sendall(b"i IDLE\r\n")
        early = []  # the poll may tell a change before IDLE's continuation: heard all the same
        while not (line := self.f.readline()).startswith(b"+"):
            assert line.startswith(b"* "), line
            early.append(line)
        t0 = time.monotonic()
        self.s.settimeout(timeout)
        while True:
            line = early.pop(0) if early else self.f.readline()
            if re.search(pattern, line):
                took = time.monotonic() - t0
                self.s.settimeout(60)
                self.s.sendall(b"DONE\r\n")
                while not self.f.readline().startswith(b"i OK"):
                    pass
                return line, took


def test_idle_hears_a_delivery_from_lmtpd(imap):  # noqa: F811
    """(imapd polls every 0.5 s; how soon is a benchmark's, not a test's.)"""
    root, port, _ = imap
    lmtpd = start_lmtpd(root)
    try:
        r = Raw(port)
        r.cmd("s SELECT INBOX")
        lc = LMTPClient(socket_path(root))
        assert lc.send("a@example.org", ["joe@example.com"], MSG)[1][0][0] == 250
        lc.close()
        line, _took = r.idle_until(rb"^\* 2 EXISTS", 30)
        assert line.strip() == b"* 2 EXISTS"
    finally:
        stop(lmtpd)


def test_expunges_by_others_wait_for_noop_and_idle(imap):  # noqa: F811
    root, port, _ = imap
    with Store.open(root) as s:
        for i in range(3):
            s.append("user/joe", b"Subject: %d\n\nx\n" % i)
    a, b = _login(port), _login(port)
    a.select("INBOX")
    b.select("INBOX")
    b.store("2", "+FLAGS", "(\\Deleted)")
    b.expunge()
    time.sleep(1.0)  # not a wait: polls meanwhile find the expunge, which must be held back
    typ, data = a.fetch("2", "(UID)")
    # numbers have not shifted under a's FETCH (a poll that came between b's STORE and its
    # EXPUNGE also tells the \Deleted flag, as an untagged FETCH of its own)
    assert re.findall(rb"UID (\d+)", b" ".join(data)) == [b"2"], data
    typ, data = a.noop()
    assert a.untagged_responses.get("EXPUNGE") == [b"2"]
    typ, data = a.fetch("2", "(UID)")
    assert re.findall(rb"UID (\d+)", b" ".join(data)) == [b"3"], data
    b.append("INBOX", None, None, b"Subject: new\r\n\r\nx\r\n")
    b.store("1", "+FLAGS", "(\\Flagged)")
    r = Raw(port)
    r.cmd("s SELECT INBOX")
    b.store("2", "+FLAGS", "($Important)")
    line, _ = r.idle_until(rb"FETCH \(FLAGS", 30)
    assert b"$Important" in line and line.startswith(b"* 2 FETCH")


def test_recent_keywords_and_permanentflags(imap):  # noqa: F811
    root, port, _ = imap
    a = _login(port)
    a.select("INBOX")
    assert a.untagged_responses["RECENT"] == [b"1"]
    assert b"\\*" in a.untagged_responses["OK"][0] or any(
        b"PERMANENTFLAGS" in x and b"\\*" in x for x in a.untagged_responses["OK"])
    a.logout()
    b = _login(port)
    b.select("INBOX")
    assert b.untagged_responses["RECENT"] == [b"0"]  # a has seen it as recent
    typ, data = b.store("1", "+FLAGS", "($Forwarded NonJunk)")
    assert typ == "OK" and b"$Forwarded" in data[0] and b"NonJunk" in data[0]
    b.select("INBOX")
    assert b"$Forwarded" in b.untagged_responses["FLAGS"][0]
    typ, data = b.fetch("1", "(FLAGS)")
    assert b"$Forwarded NonJunk" in data[0]
    typ, data = b.store("1", "FLAGS", "(\\Answered)")
    assert b"$Forwarded" not in data[0] and b"\\Answered" in data[0]
    typ, data = b.store("1", "+FLAGS", "(" + "x" * 65 + ")")  # longer than a keyword may be
    assert typ == "NO" and b"[CANNOT]" in data[0]


def test_fetch_of_a_body_sets_seen_and_peek_does_not(imap):  # noqa: F811
    root, port, _ = imap
    a = _login(port)
    a.select("INBOX")
    a.fetch("1", "(BODY.PEEK[])")
    assert b"\\Seen" not in a.fetch("1", "(FLAGS)")[1][0]
    a.fetch("1", "(BODY[TEXT])")
    assert b"\\Seen" in a.fetch("1", "(FLAGS)")[1][0]
    e = _login(port)
    e.select("INBOX", readonly=True)
    typ, data = e.store("1", "+FLAGS", "(\\Flagged)")
    assert typ == "NO" and b"[READ-ONLY]" in data[0]


def test_uidplus(imap):  # noqa: F811
    root, port, _ = imap
    a = _login(port)
    with Store.open(root) as s:
        uidvalidity = s.header("user/joe/Sent").uidvalidity
        inbox_uv = s.header("user/joe").uidvalidity
    typ, data = a.append("Sent", None, None, b"Subject: s\r\n\r\nx\r\n")
    assert data[0].startswith(b"[APPENDUID %d 1]" % uidvalidity)
    a.select("INBOX")
    typ, data = a.copy("1", "Sent")
    assert data[0].startswith(b"[COPYUID %d 1 2]" % uidvalidity)
    with Store.open(root) as s:
        s.append("user/joe", b"Subject: two\n\nx\n")
    a.noop()
    a.store("1:2", "+FLAGS", "(\\Deleted)")
    typ, data = a.uid("EXPUNGE", "2")
    assert typ == "OK"
    with Store.open(root) as s:
        assert [r.uid for r in s.read("user/joe").records] == [1]  # only UID 2 went
    assert inbox_uv


def _share(root):
    """bob shares a folder with joe (read and keep seen); `announce` is a
    shared folder anyone may read; a third folder is bob's alone."""
    with Store.open(root) as s:
        s.create("user/bob/Project")
        s.append("user/bob/Project", b"Subject: plan\n\nthe plan\n")
        s.set_acl("user/bob/Project", "joe", "lrs")
        s.create("user/bob/Private")
        s.create("announce")
        s.append("announce", b"Subject: news\n\nnews\n")
        s.set_acl("announce", "anyone", "lrs")
    accounts.set_password(Layout.open(root), "bob", "pw")


def test_namespaces_and_rights(imap):  # noqa: F811
    root, port, _ = imap
    _share(root)
    a = _login(port)
    typ, data = a.namespace()
    assert data[0] == b'(("" "/")) (("user/" "/")) (("Shared/" "/"))'
    names = {line.rsplit(b'"/" ', 1)[1].strip(b'"') for line in a.list()[1]}
    assert {b"INBOX", b"Sent", b"user/bob/Project", b"Shared/announce"} <= names
    assert b"user/bob/Private" not in names and b"user/bob" in names  # \Noselect parent
    assert any(b"\\Noselect" in line and line.endswith(b'"user/bob"') for line in a.list()[1])
    typ, data = a.select("user/bob/Private")
    assert typ == "NO" and b"NONEXISTENT" in data[0]  # no l or r: not there for joe
    typ, data = a.select("user/bob/Project")
    assert typ == "OK"
    typ, data = a.store("1", "+FLAGS", "(\\Deleted)")  # no t right
    assert typ == "NO" and b"[NOPERM]" in data[0]
    typ, data = a.append("user/bob/Project", None, None, b"Subject: x\r\n\r\nx\r\n")
    assert typ == "NO" and b"NOPERM" in data[0]
    typ, data = a.create("user/bob/Project/sub")
    assert typ == "NO" and b"NOPERM" in data[0]
    typ, data = a.delete("Shared/announce")
    assert typ == "NO" and b"NOPERM" in data[0]


def test_seen_on_a_shared_mailbox_is_per_user(imap):  # noqa: F811
    root, port, _ = imap
    _share(root)
    joe = _login(port)
    joe.select("Shared/announce")
    joe.store("1", "+FLAGS", "(\\Seen)")
    bob = _login(port, "bob")
    bob.select("Shared/announce")
    assert b"\\Seen" not in bob.fetch("1", "(FLAGS)")[1][0]
    joe.select("Shared/announce")
    assert b"\\Seen" in joe.fetch("1", "(FLAGS)")[1][0]
    with Store.open(root) as s:
        assert s.read("announce").records[0].flags == 0  # the index's flag is untouched
        uv = s.header("announce").uidvalidity
        assert s.seen("joe", "announce", uv).as_list() == [[1, 1]]
        assert not s.seen("bob", "announce", uv)


def test_a_rebuild_under_a_selected_session_changes_no_uid(imap, cli):  # noqa: F811
    """reconstruct -f rebuilds the index a session has selected: the
    session sees the same UIDs and no EXPUNGE, at NOOP and in IDLE."""
    root, port, _ = imap
    with Store.open(root) as s:
        for i in range(5):
            s.append("user/joe", b"Subject: %d\n\nx\n" % i)
        s.store_flags("user/joe", [2, 4], 0, ["$Label1"], "add")
    a = _login(port)
    a.select("INBOX")
    before = a.fetch("1:*", "(UID FLAGS)")[1]
    r = Raw(port)
    r.cmd("s SELECT INBOX")
    r.s.sendall(b"i IDLE\r\n")
    assert r.f.readline().startswith(b"+")
    with Store.open(root) as s:
        idx_file = os.path.join(s.mailbox_dir("user/joe"), "store.idx")
    ino = os.stat(idx_file).st_ino
    res = cli("reconstruct", "--store-root", root, "-f", "user/joe")
    assert res.code in (0, 1), res.err
    assert os.stat(idx_file).st_ino != ino  # rebuilt and swapped in
    time.sleep(1.2)  # not a wait: polls meanwhile read the new index, which must tell nothing
    r.s.sendall(b"DONE\r\n")
    idle_lines = []
    while True:
        line = r.f.readline()
        idle_lines.append(line)
        if line.startswith(b"i "):
            break
    assert not any(b"EXPUNGE" in x or b"EXISTS" in x for x in idle_lines), idle_lines
    a.noop()  # re-reads the index whatever its header says
    assert "EXPUNGE" not in a.untagged_responses
    assert a.fetch("1:*", "(UID FLAGS)")[1] == before


def test_sessions_on_one_mailbox_share_its_records(tmp_path):
    """The views of sessions at the same state are one tuple (1,000 IDLE
    sessions on a big INBOX hold one copy); a view differs only while it
    must (expunges not yet told), and shares again once told."""
    from store.index import FLAG_DELETED
    from store.services.imapbox import Mailbox
    root = str(tmp_path / "store")
    with Store.init(root) as s:
        s.create("user/joe")
        for i in range(5):
            s.append("user/joe", b"Subject: %d\n\nx\n" % i)
        a = Mailbox(s, "joe", "user/joe/INBOX", "lrswipkxtea", rw=True, session=True)
        b = Mailbox(s, "joe", "user/joe/INBOX", "lrswipkxtea", rw=True, session=True)
        assert a.records is b.records
        s.append("user/joe", b"Subject: new\n\nx\n")
        a.poll()
        b.poll()
        assert a.records is b.records and len(a.records) == 6
        s.store_flags("user/joe", [2], FLAG_DELETED, [], "add")
        s.expunge("user/joe")
        a.poll()
        b.poll()
        assert a.records is not b.records and [r.uid for r in a.records] == [1, 2, 3, 4, 5, 6]
        assert a.gone == {2}
        assert a.tell_expunges() == [2] and b.tell_expunges() == [2]
        assert a.records is b.records and [r.uid for r in a.records] == [1, 3, 4, 5, 6]


def test_append_and_copy_over_quota_are_refused(imap):  # noqa: F811
    root, port, _ = imap
    with Store.open(root) as s:
        s.set_quota("user/joe", 150)  # the INBOX's one message fits; nothing more does
    a = _login(port)
    typ, data = a.append("Sent", None, None, b"Subject: big\r\n\r\n" + b"x" * 500 + b"\r\n")
    assert typ == "NO" and b"[OVERQUOTA]" in data[0]
    a.select("INBOX")
    typ, data = a.copy("1", "Sent")
    assert typ == "NO" and b"[OVERQUOTA]" in data[0]
    with Store.open(root) as s:
        assert s.read("user/joe/Sent").records == []
