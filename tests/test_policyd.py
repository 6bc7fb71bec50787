"""policyd (issue 25, seed 004: quota enforcement before the MTA queues a
message): Postfix's policy delegation protocol answered from the store, on
one kept connection, as lmtpd would answer the delivery."""

import os
import socket
import subprocess
import sys

import pytest
from conftest import ROOT, wait_for
from lmtp_harness import start_stored, stop

from store.mailbox import Store

POLICYD = [sys.executable, "-c", "from store.cli.policyd import main; main()"]


def _request(f, s, **attrs):
    attrs = {"request": "smtpd_access_policy", "protocol_state": "RCPT",
             "sender": "alice@example.org", **attrs}
    s.sendall("".join(f"{k}={v}\n" for k, v in attrs.items()).encode() + b"\n")
    action = f.readline()
    assert f.readline() == b"\n"
    return action.decode().rstrip("\n")


def _start(root):
    path = os.path.join(root, "run", "policy")
    proc = subprocess.Popen(POLICYD + ["--store-root", root], cwd=ROOT, stderr=subprocess.PIPE)

    def listening():
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
            return None
    return proc, wait_for(listening, 120, "policyd to listen")


@pytest.fixture
def world(tmp_path):
    root = str(tmp_path / "store")
    with Store.init(root) as s:
        for u in ("joe", "ann"):
            s.create(f"user/{u}")
            s.append(f"user/{u}", b"Subject: hello\n\n" + b"x" * 1000 + b"\n")
        s.set_quota("user/joe", 500)  # joe is over, ann has 10,000 bytes of room
        s.set_quota("user/ann", 11000)
    stored = start_stored(root)
    proc, s = _start(root)
    yield root, stored, s, s.makefile("rb")
    s.close()
    stop(proc)
    assert proc.returncode == 0, proc.stderr.read()
    stop(stored)


def test_answers_over_quota_unknown_and_room_on_one_connection(world):
    root, _stored, s, f = world
    assert _request(f, s, recipient="joe@example.com") == \
        "action=452 4.2.2 Mailbox is full; try again later"
    assert _request(f, s, recipient="ann@example.com", size="5000") == "action=DUNNO"
    assert _request(f, s, recipient="ann@example.com", size="50000") == \
        "action=452 4.2.2 Mailbox is full; try again later"
    assert _request(f, s, recipient="nobody@example.com") == "action=550 5.1.1 User unknown"
    # not a recipient check, or not ours to judge: DUNNO, and the session goes on
    assert _request(f, s, recipient="joe@example.com", protocol_state="DATA") == "action=DUNNO"
    assert _request(f, s, request="junk", recipient="joe@example.com") == "action=DUNNO"
    assert _request(f, s, recipient="") == "action=DUNNO"
    assert _request(f, s, recipient="joe@example.com", size="1" * 40) == \
        "action=452 4.2.2 Mailbox is full; try again later"
    log = open(os.path.join(root, "log", "default"), encoding="utf-8").read()
    assert "root user/joe uses" in log  # the detail is the administrator's, not the sender's


def test_after_the_grace_period_552_and_while_stored_is_down_dunno(world):
    root, stored, s, f = world
    with open(os.path.join(root, "config", "store.conf"), "a") as c:
        c.write("store.quotagraceperiod = 0\n")
    stop(stored)
    assert _request(f, s, recipient="nobody@example.com") == "action=DUNNO"  # not ready
    stored2 = start_stored(root)  # a new stored: policyd opens the store and settings again
    try:
        assert _request(f, s, recipient="joe@example.com") == "action=552 5.2.2 Mailbox is full"
    finally:
        stop(stored2)


def test_a_request_past_its_limit_closes_the_connection_and_others_go_on(world):
    root, _stored, s, f = world
    bad = socket.socket(socket.AF_UNIX)
    bad.connect(os.path.join(root, "run", "policy"))
    bad.sendall(b"recipient=" + b"x" * 70000 + b"\n")
    assert bad.recv(100) == b""  # closed, no answer
    bad.close()
    assert _request(f, s, recipient="nobody@example.com") == "action=550 5.1.1 User unknown"
