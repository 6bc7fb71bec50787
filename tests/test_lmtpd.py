"""lmtpd as a real process, spoken to over LMTP by Python's smtplib and by
swaks: per-recipient replies, recipient mapping, the reply codes MTAs act
on, readiness on stored, and nothing half-stored after a refusal."""

import os
import shutil
import subprocess
import threading
import time

import pytest
from conftest import wait_for
from lmtp_harness import LMTPClient, socket_path, start_lmtpd, start_stored, stop

from store.config import Config
from store.fsutil import leftover_temp_files
from store.mailbox import Store

MSG = (b"From: Alice <alice@example.org>\nTo: joe@example.com\nSubject: hello\n"
       b"Message-ID: <m1@example.org>\nDate: Thu, 03 Dec 2026 08:00:00 +0000\n\n"
       b"Hello Joe.\n.leading dot line\nbye\n")


@pytest.fixture
def lmtp(tmp_path):
    """A store with user joe (and a folder Lists that anyone may post to),
    stored ready, and a function that starts lmtpd with given settings."""
    root = str(tmp_path / "store")
    with Store.init(root) as s:
        s.create("user/joe")
        s.create("user/joe/Lists")
        s.set_acl("user/joe/Lists", "anyone", "p")
        s.create("user/joe/Private")
    procs = {"stored": start_stored(root)}

    def run(**settings):
        cfg = Config.load(root)
        for k, v in settings.items():
            cfg.set(k, str(v))
        procs["lmtpd"] = start_lmtpd(root)
        return LMTPClient(socket_path(root))

    yield root, run, procs
    for p in procs.values():
        stop(p)
    assert leftover_temp_files(root) == []


def messages(root, box):
    with Store.open(root) as s:
        return [s.message(box, r.uid) for r in s.read(box).records]


def log_lines(root):
    with open(os.path.join(root, "log", "default"), encoding="utf-8") as f:
        return f.read().splitlines()


def test_a_message_arrives_byte_identical_below_the_added_headers(lmtp):
    root, run, _ = lmtp
    c = run()
    rcpt, data = c.send("alice@example.org", ["joe@example.com"], MSG)
    c.close()
    assert rcpt == [(250, "2.1.5 <joe@example.com> OK")]
    assert data[0][0] == 250 and "user/joe/INBOX UID 1 stored" in data[0][1]
    [got] = messages(root, "user/joe")
    assert got == b"Return-Path: <alice@example.org>\nDelivered-To: joe@example.com\n" + MSG
    line = [ln for ln in log_lines(root) if "delivered:" in ln][-1]
    assert ("from=<alice@example.org> to=<joe@example.com> mailbox=user/joe/INBOX uid=1 "
            f"size={len(got)} via=lmtp") in line


def test_one_reply_per_recipient_and_the_mapping(lmtp):
    root, run, _ = lmtp
    c = run()
    rcpt, data = c.send("alice@example.org",
                        ["Joe@Example.COM", "nobody@example.com", "joe+lists@example.com",
                         "joe+private@example.com", "joe+nosuch@example.com",
                         "bad address@example.com"], MSG)
    c.close()
    assert rcpt[1][0] == 550 and rcpt[1][1].startswith("5.1.1"), rcpt
    assert rcpt[5][0] in (501, 553), rcpt
    assert [r[0] for r in rcpt] == [250, 550, 250, 250, 250, rcpt[5][0]]
    # four accepted: four replies; Joe, +private and +nosuch all land in the INBOX: stored once
    assert len(data) == 4 and all(code == 250 for code, _ in data), data
    assert [t.split()[1] for _, t in data] == ["user/joe/INBOX", "user/joe/Lists",
                                               "user/joe/INBOX", "user/joe/INBOX"]
    assert len(messages(root, "user/joe")) == 1  # +private: no right p for anyone
    assert len(messages(root, "user/joe/Lists")) == 1
    assert messages(root, "user/joe/Private") == []


def test_over_quota_is_deferred_within_the_grace_period_then_refused(lmtp):
    root, run, procs = lmtp
    with Store.open(root) as s:
        s.set_quota("user/joe", 200)
    c = run()
    rcpt, data = c.send("alice@example.org", ["joe@example.com"], MSG + b"x" * 300)
    assert data[0][0] == 452 and data[0][1].startswith("4.2.2"), data
    stop(procs["lmtpd"])
    c = run(**{"store.quotagraceperiod": 0})
    rcpt, data = c.send("alice@example.org", ["joe@example.com"], MSG + b"x" * 300)
    assert data[0][0] == 552 and data[0][1].startswith("5.2.2"), data
    # a small one still fits: delivered, and the grace period is over (it starts afresh)
    rcpt, data = c.send("alice@example.org", ["joe@example.com"], b"Subject: s\n\nx\n")
    c.close()
    assert data[0][0] == 250, data
    assert len(messages(root, "user/joe")) == 1
    with Store.open(root) as s:
        from store.db import QuotaEntry
        assert s.db.record(QuotaEntry, "user/joe").over_since is None
    assert any(ln.endswith("reason=over-quota") and "WARNING" in ln for ln in log_lines(root))


def test_a_locked_mailbox_is_deferred_after_the_wait(lmtp):
    root, run, _ = lmtp
    c = run(**{"local.lmtp.lockwait": 1})
    held, release = threading.Event(), threading.Event()

    def hold():
        with Store.open(root) as s, s.lock("user/joe/INBOX"):
            held.set()
            release.wait(30)
    t = threading.Thread(target=hold)
    t.start()
    held.wait(60)
    t0 = time.monotonic()
    rcpt, data = c.send("alice@example.org", ["joe@example.com"], MSG)
    waited = time.monotonic() - t0
    release.set()
    t.join()
    assert data[0][0] == 451 and data[0][1].startswith("4.2.0"), data
    assert waited >= 1.0
    assert messages(root, "user/joe") == []
    rcpt, data = c.send("alice@example.org", ["joe@example.com"], MSG)  # the MTA's retry
    c.close()
    assert data[0][0] == 250 and len(messages(root, "user/joe")) == 1


def test_deliveries_are_deferred_while_stored_is_not_ready(lmtp):
    root, run, procs = lmtp
    c = run()
    stop(procs["stored"])
    accepted = []

    def deferred():  # lmtpd looks at stored's state twice a second: deferred once it has seen
        r = c.send("alice@example.org", ["joe@example.com"], MSG)
        if r[0][0][0] == 451:
            return r
        accepted.append(r)  # RCPT taken before lmtpd saw stored go: delivered, or deferred at DATA
        return None
    rcpt, data = wait_for(deferred, 30, "a deferral while stored is stopped")
    assert rcpt[0][0] == 451 and rcpt[0][1].startswith("4.3.0"), rcpt
    assert any("lmtpd-waiting" in ln or "stored is not ready" in ln for ln in log_lines(root))
    procs["stored"] = start_stored(root)
    rcpt, data = wait_for(lambda: (r := c.send("alice@example.org", ["joe@example.com"], MSG))
                          [1] and r[1][0][0] == 250 and r, 30, "a delivery once stored is back")
    c.close()
    assert data and data[0][0] == 250, (rcpt, data)
    assert all(r[1][0][0] == 250 or (r[1][0][0] == 451 and r[1][0][1].startswith("4.3.0"))
               for r in accepted), accepted
    delivered = sum(r[1][0][0] == 250 for r in accepted)
    assert len(messages(root, "user/joe")) == 1 + delivered


def test_too_big_and_empty_messages_are_refused(lmtp):
    root, run, _ = lmtp
    c = run(**{"local.lmtp.maxmessagesize": 2048})
    # SIZE= announced: refused at MAIL; not announced: after DATA, once per recipient
    code, text = c.conn.mail("alice@example.org", ["SIZE=5000"])
    assert code == 552, (code, text)
    c.conn.rset()
    rcpt, data = c.send("alice@example.org", ["joe@example.com", "joe+lists@example.com"],
                        MSG + b"y" * 3000)
    assert [d[0] for d in data] == [552, 552] and all("5.3.4" in d[1] for d in data), data
    rcpt, data = c.send("alice@example.org", ["joe@example.com"], b"")  # as deliver refuses one
    assert data == [(554, "5.6.0 empty message refused")], data
    c.close()
    assert messages(root, "user/joe") == [] and messages(root, "user/joe/Lists") == []


def test_duplicate_suppression_and_the_quota_warning(lmtp):
    root, run, _ = lmtp
    with Store.open(root) as s:
        s.set_quota("user/joe", 2000)
    c = run(**{"local.lmtp.duplicatewindow": 3600, "store.quotawarn": 50})
    for _ in range(2):
        rcpt, data = c.send("alice@example.org", ["joe@example.com"], MSG)
        assert data[0][0] == 250
    assert len(messages(root, "user/joe")) == 1  # the same Message-ID twice: stored once
    # past 50 % of 2000 bytes: one warning, not one per message
    for i in range(3):
        rcpt, data = c.send("alice@example.org", ["joe@example.com"],
                            b"Message-ID: <big%d@x>\nSubject: big\n\n" % i + b"z" * 300)
        assert data[0][0] == 250, data
    c.close()
    subjects = [m for m in messages(root, "user/joe") if b"Subject: Your mailbox is" in m]
    assert len(subjects) == 1, subjects
    assert any("quota warning delivered to user/joe/INBOX" in ln for ln in log_lines(root))
    assert any("duplicate not stored" in ln for ln in log_lines(root))


def test_swaks_speaks_lmtp_to_it(lmtp, tmp_path):
    swaks = shutil.which("swaks")
    if swaks is None:
        pytest.skip("swaks is not installed (Debian package swaks; .ci/run installs it as root)")
    root, run, _ = lmtp
    run().close()
    body = tmp_path / "m.eml"
    body.write_bytes(MSG)
    r = subprocess.run([swaks, "--protocol", "LMTP", "--socket", socket_path(root),
                        "--from", "alice@example.org", "--to", "joe@example.com,nobody@example.com",
                        "--data", f"@{body}"], capture_output=True, text=True, timeout=60)
    assert "<-  250 2.0.0 user/joe/INBOX UID 1 stored" in r.stdout, r.stdout
    assert "<** 550 5.1.1" in r.stdout, r.stdout
    [got] = messages(root, "user/joe")
    assert got.startswith(b"Return-Path: <alice@example.org>\nDelivered-To: joe@example.com\n"
                          + MSG), got  # swaks adds a line end of its own


def test_a_full_disk_is_deferred_and_nothing_is_half_stored(tmp_path):
    """The partition on a 1 MB tmpfs, filled: 452 4.3.1, no temp file, no
    record; room made, the retry is delivered."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    root = str(tmp_path / "store")
    part = tmp_path / "part"
    part.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(part)],
                      capture_output=True).returncode != 0:
        pytest.skip("tmpfs cannot be mounted here")
    procs = {}
    try:
        with Store.init(root) as s:
            Config.load(root).set("store.partition.primary.path", str(part))
        with Store.open(root) as s:
            s.create("user/joe")
        filler = part / "filler"
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"x" * 65536)
                    f.flush()
            except OSError:
                pass
        procs["stored"] = start_stored(root)
        procs["lmtpd"] = start_lmtpd(root)
        c = LMTPClient(socket_path(root))
        rcpt, data = c.send("alice@example.org", ["joe@example.com"], MSG + b"z" * 200000)
        assert data[0][0] == 452 and data[0][1].startswith("4.3.1"), data
        assert messages(root, "user/joe") == []
        assert leftover_temp_files(str(part)) == []
        os.unlink(filler)
        rcpt, data = c.send("alice@example.org", ["joe@example.com"], MSG + b"z" * 200000)
        c.close()
        assert data[0][0] == 250, data
        assert len(messages(root, "user/joe")) == 1
        assert any(ln.endswith("reason=disk-full") for ln in log_lines(root))
    finally:
        for p in procs.values():
            stop(p)
        subprocess.run(["umount", str(part)], capture_output=True)


def test_a_bare_lf_before_the_dot_smuggles_no_second_message(lmtp):
    """SMTP smuggling: `<LF>.<CR><LF>` ended DATA on 293311a, so what followed
    was a second, forged transaction. Only `<CR><LF>.<CR><LF>` ends a message,
    and a message with a bare LF is refused (as Postfix's
    smtpd_forbid_bare_newline); a command line is limited to what RFC 5321
    allows, not a message's worth."""
    root, run, _ = lmtp
    c = run()
    conn = c.conn
    assert conn.mail("alice@example.org")[0] == 250
    assert conn.rcpt("joe@example.com")[0] == 250
    conn.putcmd("data")
    assert conn.getreply()[0] == 354
    conn.send(b"Subject: real\r\n\r\nhello\n.\r\nMAIL FROM:<ceo@example.com>\r\n"
              b"RCPT TO:<joe@example.com>\r\nDATA\r\nSubject: forged\r\n\r\npay now\r\n.\r\n")
    code, text = conn.getreply()
    assert code == 554 and b"bare LF" in text, (code, text)
    assert conn.noop()[0] == 250  # the next command is ours again: no forged transaction ran
    conn.send(b"NOOP " + b"x" * 100_000 + b"\r\n")
    code, text = conn.getreply()
    assert code == 500 and b"too long" in text, (code, text)
    rcpt, data = c.send("alice@example.org", ["joe@example.com"], MSG)
    assert data[0][0] == 250, data
    c.close()
    got = messages(root, "user/joe")
    assert len(got) == 1 and b"Hello Joe." in got[0] and b"forged" not in got[0]
