"""imapd as a real process, spoken to by the standard library's imaplib:
login (and a refused one), LIST, SELECT, FETCH, STORE, APPEND, STATUS,
EXPUNGE, CREATE, with what the store then holds checked directly."""

import imaplib
import os
import time

import pytest
from conftest import wait_for
from lmtp_harness import start_service, start_stored, stop

from store import accounts
from store.layout import Layout
from store.mailbox import Store

MSG = b"From: a@example.org\nSubject: hello\nDate: Thu, 03 Dec 2026 08:00:00 +0000\n\nbody line\n"


@pytest.fixture
def imap(tmp_path):
    root = str(tmp_path / "store")
    with Store.init(root) as s:
        s.create("user/joe")
        s.create("user/joe/Sent")
        s.create("user/bob")
        s.append("user/joe", MSG)
        s.append("user/bob", b"Subject: bob's\n\nprivate\n")
    accounts.set_password(Layout.open(root), "joe", "pw")
    stored = start_stored(root)
    proc, port = start_service("imapd", root)
    yield root, port, stored
    proc.terminate()
    assert proc.wait(30) == 0, proc.stderr.read()
    stop(stored)


def test_a_session_reads_and_changes_the_store(imap):
    root, port, _ = imap
    c = imaplib.IMAP4("127.0.0.1", port)
    with pytest.raises(imaplib.IMAP4.error):
        c.login("joe", "wrong")
    c = imaplib.IMAP4("127.0.0.1", port)
    assert c.login("joe", "pw")[0] == "OK"
    typ, boxes = c.list()
    assert sorted(boxes) == [b'(\\HasNoChildren) "/" "INBOX"',
                            b'(\\HasNoChildren) "/" "Sent"']  # joe's only, not bob's
    assert c.select("INBOX") == ("OK", [b"1"])
    typ, data = c.fetch("1", "(UID RFC822.SIZE FLAGS BODY.PEEK[])")
    wire = MSG.replace(b"\n", b"\r\n")  # IMAP's line ends; RFC822.SIZE counts them
    assert b"UID 1" in data[0][0] and b"RFC822.SIZE %d" % len(wire) in data[0][0]
    assert data[0][1] == wire
    typ, data = c.store("1", "+FLAGS", "(\\Seen \\Flagged)")
    assert typ == "OK" and b"\\Seen" in data[0] and b"\\Flagged" in data[0]
    typ, data = c.append("Sent", "(\\Seen)", None, b"Subject: sent\r\n\r\nhi\r\n")
    assert typ == "OK"
    typ, data = c.status("Sent", "(MESSAGES UIDNEXT)")
    assert b"MESSAGES 1" in data[0] and b"UIDNEXT 2" in data[0]
    c.store("1", "+FLAGS", "(\\Deleted)")
    assert c.expunge() == ("OK", [b"1"])
    assert c.create("Archive")[0] == "OK"
    assert c.subscribe("Archive")[0] == "OK" and c.subscribe("INBOX")[0] == "OK"
    assert sorted(c.lsub()[1]) == [b'(\\HasNoChildren) "/" "Archive"',
                                   b'(\\HasNoChildren) "/" "INBOX"']
    assert c.unsubscribe("INBOX")[0] == "OK"
    assert c.lsub()[1] == [b'(\\HasNoChildren) "/" "Archive"']
    assert c.select("user/bob")[0] == "NO"  # another user's INBOX is not in joe's namespace
    c.logout()
    with Store.open(root) as s:
        assert s.read("user/joe").records == []
        assert [r.uid for r in s.read("user/joe/Sent").records] == [1]
        assert s.message("user/joe/Sent", 1) == b"Subject: sent\r\n\r\nhi\r\n"
        assert s.exists("user/joe/Archive")
        assert s.subscriptions("joe") == ["user/joe/Archive"]
        assert s.read("user/bob").header.exists == 1
    with open(os.path.join(root, "log", "default"), encoding="utf-8") as f:
        log = f.read()
    assert "imapd: login failed for joe from 127.0.0.1" in log  # the address, for fail2ban
    assert "imapd: joe logged in from 127.0.0.1" in log
    assert "pw" not in log.replace("Password", "")


def test_logins_are_refused_while_stored_is_not_ready(imap):
    root, port, stored = imap
    old = imaplib.IMAP4("127.0.0.1", port)
    old.login("joe", "pw")
    old.select("INBOX")
    stop(stored)

    def refused() -> bool:  # once imapd has seen stored go (it looks twice a second)
        c = imaplib.IMAP4("127.0.0.1", port)
        try:
            c.login("joe", "pw")
        except imaplib.IMAP4.error as e:
            assert "[UNAVAILABLE]" in str(e), e
            return True
        c.logout()
        return False
    wait_for(refused, 30, "logins refused while stored is stopped")
    typ, data = old.fetch("1", "(FLAGS)")  # a session already there is refused too
    assert typ == "NO" and b"[UNAVAILABLE]" in data[0]
    assert old.noop()[0] == "OK"  # NOOP and LOGOUT still answered
    again = start_stored(root)
    try:
        wait_for(lambda: not refused(), 30, "a login once stored is back")  # imapd not restarted
        assert old.fetch("1", "(UID)")[0] == "OK"  # and the old session goes on
    finally:
        stop(again)


@pytest.fixture
def pop(imap, tmp_path):
    root, _, stored = imap
    proc, port = start_service("popd", root)
    yield root, port, stored
    proc.terminate()
    assert proc.wait(30) == 0, proc.stderr.read()


def test_pop3_lists_retrieves_and_deletes_at_quit(pop):
    import poplib
    root, port, _ = pop
    with Store.open(root) as s:
        s.append("user/joe", b"Subject: second\n\nsecond\n")
        uidvalidity = s.header("user/joe").uidvalidity
    c = poplib.POP3("127.0.0.1", port)
    with pytest.raises(poplib.error_proto):
        c.apop("joe", "pw")
    c = poplib.POP3("127.0.0.1", port)
    c.user("joe")
    c.pass_("pw")
    wire = MSG.replace(b"\n", b"\r\n")
    assert c.stat() == (2, len(wire) + len(b"Subject: second\r\n\r\nsecond\r\n"))
    assert c.uidl()[1] == [f"1 {uidvalidity}.1".encode(), f"2 {uidvalidity}.2".encode()]
    resp, lines, octets = c.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == wire
    assert c.top(2, 0)[1] == [b"Subject: second", b""]
    c.dele(1)
    c.rset()  # undone
    c.dele(2)
    c.quit()
    with Store.open(root) as s:
        assert [r.uid for r in s.read("user/joe").records] == [1]  # 2 expunged at QUIT
    c = poplib.POP3("127.0.0.1", port)
    c.user("joe")
    c.pass_("pw")
    c.dele(1)
    c.close()  # cut off before QUIT: nothing deleted
    time.sleep(0.3)  # not a wait: popd must not delete in the meantime either
    with Store.open(root) as s:
        assert [r.uid for r in s.read("user/joe").records] == [1]


def test_pop3_logins_wait_for_stored(pop):
    import poplib
    root, port, stored = pop
    stop(stored)

    def refused() -> bool:
        c = poplib.POP3("127.0.0.1", port)
        c.user("joe")
        try:
            c.pass_("pw")
        except poplib.error_proto as e:
            c.close()
            return b"SYS/TEMP" in e.args[0]
        c.quit()
        return False
    wait_for(refused, 30, "POP3 logins refused while stored is stopped")
    c = poplib.POP3("127.0.0.1", port)
    c.user("joe")
    with pytest.raises(poplib.error_proto, match=r"SYS/TEMP"):
        c.pass_("pw")


def test_a_delivery_cut_off_before_its_header_update_does_not_lock_the_reader_out(imap):
    """lmtpd killed -9 between a delivery's index records and its header
    update: the next SELECT (and POP3 login) finishes that append, as the
    next delivery would, instead of calling the mailbox damaged."""
    import poplib

    from lmtp_harness import start_service
    from test_backup import cut_off_append
    root, port, _ = imap
    with Store.open(root) as s:
        s.append_many("user/joe", [b"Subject: late %d\n\nx\n" % i for i in range(3)])
        cut_off_append(s, "user/joe/INBOX", 2)
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login("joe", "pw")
    assert c.select("INBOX") == ("OK", [b"4"])
    c.logout()
    with Store.open(root) as s:
        cut_off_append(s, "user/joe/INBOX", 1)
    proc, pport = start_service("popd", root)
    try:
        p = poplib.POP3("127.0.0.1", pport)
        p.user("joe")
        p.pass_("pw")
        assert p.stat()[0] == 4
        p.quit()
        with Store.open(root) as s:  # damage of another kind keeps popd's own answer
            path = os.path.join(s.mailbox_dir("user/joe"), "store.idx")
            start = s.header("user/joe").start_offset
        with open(path, "r+b") as f:
            f.seek(start + 10)
            b = f.read(1)
            f.seek(start + 10)
            f.write(bytes([b[0] ^ 0xFF]))
        p = poplib.POP3("127.0.0.1", pport)
        p.user("joe")
        with pytest.raises(poplib.error_proto, match="run reconstruct"):
            p.pass_("pw")
        with open(path, "r+b") as f:  # and a damaged header, which imapd refuses too
            f.seek(50)
            b = f.read(1)
            f.seek(50)
            f.write(bytes([b[0] ^ 0xFF]))
        c = imaplib.IMAP4("127.0.0.1", port)
        c.login("joe", "pw")
        typ, data = c.select("INBOX")
        assert typ == "NO" and b"SERVERBUG" in data[0], data
        c.logout()
        # issue 25: each refusal is logged with its action, an ERROR msprobe reports
        log = open(os.path.join(root, "log", "default"), encoding="utf-8").read()
        for service in ("popd", "imapd"):
            assert (f"ERROR: {service}: mailbox user/joe/INBOX refused to joe: damaged"
                    in log), log[-2000:]
        from store.layout import Layout
        from store.supervise.probe import check_log
        last: dict = {}
        refused = [c for c in check_log(Layout.open(root), last) if c.name == "refused mailboxes"]
        assert refused[0].status == "WARNING" and refused[0].metrics == {"refused": 1}, refused
        assert "since the last run: user/joe/INBOX; run reconstruct" in refused[0].summary
        again = [c for c in check_log(Layout.open(root), last) if c.name == "refused mailboxes"]
        assert again[0].status == "OK"  # since the last run: none
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_busy_port_is_one_line_and_exit_8(tmp_path):
    """Issue 25: imapd and popd on a port another server holds printed a
    traceback; now one line naming the address, and exit 8."""
    import socket
    import subprocess
    import sys

    from conftest import ROOT
    root = str(tmp_path / "store")
    Store.init(root).close()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        for prog in ("imapd", "popd"):
            r = subprocess.run([sys.executable, "-c", f"from store.cli.{prog} import main; main()",
                                "--store-root", root, "--port", str(port)], cwd=ROOT,
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 8, r
            assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr
            assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    finally:
        busy.close()


def test_quota_shows_both_resources_only_to_who_may_see_them(imap):
    """Issue 25: IMAP QUOTA (RFC 9208) with STORAGE and MESSAGE; another
    user's root is not there for joe; limits are set by the administrator."""
    root, port, _ = imap
    with Store.open(root) as s:
        s.set_quota("user/joe", 10240, 5)
        s.set_quota("user/bob", 1024)
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login("joe", "pw")
    assert b"QUOTA=RES-MESSAGE" in c.capability()[1][0]
    typ, data = c.getquotaroot("INBOX")
    assert typ == "OK" and data == [[b'"INBOX" "user/joe"'],
                                    [b'"user/joe" (STORAGE 1 10 MESSAGE 1 5)']], data
    typ, data = c.getquota("user/joe")
    assert typ == "OK" and data == [b'"user/joe" (STORAGE 1 10 MESSAGE 1 5)'], data
    assert c.getquota("user/bob")[0] == "NO"
    assert c.getquotaroot("user/bob")[0] == "NO"  # bob's INBOX: not there for joe
    typ, data = c.setquota("user/joe", "(STORAGE 99999)")
    assert typ == "NO" and b"NOPERM" in data[0], data
    c.logout()
