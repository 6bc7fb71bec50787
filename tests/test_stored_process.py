"""stored as a real process: readiness, stamps, one instance, SIGTERM, and
recovery from every kind of database damage."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from build_store import build
from conftest import ROOT, wait_for
from damage import damage

from store.mailbox import Store

STORED = [sys.executable, "-c", "from store.cli.stored import main; main()"]
DELIVER = [sys.executable, "-c", "from store.cli.deliver import main; main()"]


def cmd(args, root, **kw):
    return subprocess.run(STORED + args, cwd=ROOT, env={**os.environ, "MSGSTORE_ROOT": root},
                          capture_output=True, text=True, **kw)


def start(root, env_extra=None):
    env = {**os.environ, "MSGSTORE_ROOT": root, **(env_extra or {})}
    return subprocess.Popen(STORED, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_ready(root, proc, timeout=60.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cmd(["-t"], root).returncode == 0:
            return time.monotonic() - t0
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("stored not ready in time")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, err


@pytest.fixture
def root(tmp_path):
    r = str(tmp_path / "store")
    build(r, users=3, folders=1, messages=3, seed=4)
    return r


def test_ready_stamps_single_instance_and_sigterm(root, tmp_path):
    with Store.open(root) as s:
        s.layout.config.set("local.store.checkpointinterval", "1")
        s.layout.config.set("local.store.cleanupinterval", "1")
        s.layout.config.set("local.store.peruserinterval", "2")
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.5)
    msgs: list[str] = []
    listening = threading.Event()

    def manager():  # reads as systemd does, so that the queue never fills
        while not listening.is_set():
            with contextlib.suppress(TimeoutError):
                msgs.append(sock.recv(4096).decode())
    reader = threading.Thread(target=manager)
    reader.start()
    p = start(root, {"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "1000000"})
    try:
        wait_ready(root, p)
        wait_for(lambda: any("READY=1" in m for m in msgs), 30, "READY=1")
        assert any(m.startswith("STATUS=") for m in msgs)
        cfg = os.path.join(root, "config")
        stamps = [os.path.join(cfg, s) for s in ("stored.ckp", "stored.lcu", "stored.per")]
        wait_for(lambda: all(os.path.exists(s) for s in stamps), 30, "the three stamps")
        first = os.path.getmtime(stamps[0])
        wait_for(lambda: os.path.getmtime(stamps[0]) > first, 30, "a second checkpoint")
        wait_for(lambda: any("WATCHDOG=1" in m for m in msgs), 30, "WATCHDOG=1")
        second = cmd([], root, timeout=30)
        assert second.returncode == 8 and f"pid {p.pid}" in second.stderr
        v = cmd(["-t", "-v"], root)
        assert "state: ready" in v.stdout and f"pid: {p.pid}" in v.stdout
        assert "newest snapshot: snap-" in v.stdout  # none existed: taken soon after startup
        restore = subprocess.run(
            [sys.executable, "-c", "from store.cli.imdbverify import main; main()", "--restore",
             "x"], cwd=ROOT, env={**os.environ, "MSGSTORE_ROOT": root}, capture_output=True,
            text=True)
        assert restore.returncode == 8 and "stored is running" in restore.stderr
        # deliveries work while stored runs
        d = subprocess.run(DELIVER + ["user/user0000"], input=b"Subject: x\n\nx", cwd=ROOT,
                           env={**os.environ, "MSGSTORE_ROOT": root}, capture_output=True)
        assert d.returncode == 0
    finally:
        code, err = stop(p)
        listening.set()
        reader.join()
    assert code == 0, err
    assert not os.path.exists(os.path.join(root, "config", "stored.state"))
    assert cmd(["-t"], root).returncode != 0


DB_DAMAGE = ["db_truncated", "db_zeroed_page", "db_flipped_values", "deleted_data_mdb"]


@pytest.mark.parametrize("kind", DB_DAMAGE)
def test_recovery_after_database_damage(root, kind):
    p = start(root)
    wait_ready(root, p)  # takes the first snapshot
    stop(p)
    with Store.open(root) as s:
        before = {i.name: (i.uidvalidity, i.acl) for i in s.list()}
    damage(root, kind, "user/user0000")
    p = start(root)
    took = wait_ready(root, p)
    code, err = stop(p)
    assert code == 0 and took < 60
    assert "Database check failed" in err
    assert "Recovering database from snapshot. Run reconstruct -m soon after startup" in err
    log = open(os.path.join(root, "log", "default"), encoding="utf-8").read()
    assert "Recovering database from snapshot" in log
    with Store.open(root) as s:
        assert {i.name: (i.uidvalidity, i.acl) for i in s.list()} == before
    removed = os.path.join(root, "mboxlist", "removed")
    # only a real database copy is kept (and starts the week): none when data.mdb was gone
    assert os.path.exists(os.path.join(removed, "removed.json")) == (kind != "deleted_data_mdb")
    assert os.path.exists(os.path.join(removed, "data.mdb")) == (kind != "deleted_data_mdb")


def test_recovery_without_snapshot_rebuilds_from_spool(root):
    with Store.open(root) as s:
        s.set_quota("user/user0001", 4_000_000)
        before = {i.name: i.uidvalidity for i in s.list()}
    damage(root, "db_truncated", "user/user0000")
    p = start(root)
    wait_ready(root, p)
    code, err = stop(p)
    assert "No usable snapshot: database rebuilt from the spool" in err
    with Store.open(root) as s:
        assert {i.name: i.uidvalidity for i in s.list()} == before
        assert s.quotas("user/user0001")[0]["limit_bytes"] == 4_000_000  # from the INBOX header


def test_stored_r_cleans_temp_files(root):
    with Store.open(root) as s:
        mdir = s.mailbox_dir("user/user0000")
    stale = os.path.join(mdir, ".tmp-store.idx.dead")
    fresh = os.path.join(mdir, ".tmp-store.idx.live")
    for f in (stale, fresh):
        open(f, "wb").write(b"x")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    r = cmd(["-r"], root)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(stale) and os.path.exists(fresh)


def test_stored_r_removes_a_dead_writers_temp_files_at_once(root):
    """A temp name carries its writer's pid: a killed writer's file goes at
    once, a live writer's stays (issue 11, item 5; the kill trials' oracle)."""
    from store.fsutil import temp_name
    with Store.open(root) as s:
        mdir = s.mailbox_dir("user/user0000")
    dead = subprocess.Popen(["true"])
    dead.wait()
    mine = temp_name(os.path.join(mdir, "00", "7.msg"))
    theirs = mine.replace(f".{os.getpid()}.", f".{dead.pid}.")
    # a create cut off before its index was in place: a directory that is no mailbox yet
    unborn = os.path.join(os.path.dirname(mdir.rstrip("/")), "=New")
    os.makedirs(unborn)
    theirs_too = temp_name(os.path.join(unborn, "store.idx")).replace(f".{os.getpid()}.",
                                                                      f".{dead.pid}.")
    for f in (mine, theirs, theirs_too):
        open(f, "wb").write(b"half a message")
    r = cmd(["-r"], root)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(theirs) and not os.path.exists(theirs_too) and os.path.exists(mine)
    assert f"removed {theirs}" in r.stdout


def test_snapshot_recovery_is_brought_up_to_date_from_the_spool(root):
    p = start(root)
    wait_ready(root, p)
    stop(p)  # a snapshot exists now
    with Store.open(root) as s:
        s.create("user/late/INBOX")  # created after the snapshot
        uv = s.entry("user/late").uidvalidity
    damage(root, "db_truncated", "user/user0000")
    p = start(root)
    wait_ready(root, p)
    t0 = time.monotonic()
    found = None
    while time.monotonic() - t0 < 30 and found is None:
        with Store.open(root, readonly=True) as s:
            found = s.db.get("folder", "user/late/INBOX")
        time.sleep(0.2)
    code, err = stop(p)
    assert found is not None and found["uidvalidity"] == uv
    # each change logged once (by the engine), then one summary line
    assert err.count("user/late/INBOX: folder entry missing") == 1, err
    assert "reconstruct: user/late/INBOX: folder entry missing" in err
    assert "Database resync from the spool: " in err and " added, " in err


def test_sighup_reloads_the_settings(root):
    p = start(root)
    try:
        wait_ready(root, p)
        ckp = os.path.join(root, "config", "stored.ckp")
        with Store.open(root) as s:  # default checkpoint interval: 60 s
            s.layout.config.set("local.store.checkpointinterval", "1")
        time.sleep(1.5)
        before = os.path.getmtime(ckp) if os.path.exists(ckp) else 0.0
        assert time.time() - before > 1.2  # the running stored has not seen the new interval
        p.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if os.path.exists(ckp) and os.path.getmtime(ckp) > before:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("no checkpoint after SIGHUP with a 1 s interval")
        assert p.poll() is None  # reloaded, not stopped
    finally:
        code, err = stop(p)
    assert code == 0 and "settings reloaded" in err, err


def test_stored_t_reports_a_stored_that_does_not_respond(root):
    p = start(root)
    try:
        wait_ready(root, p)
        p.send_signal(signal.SIGSTOP)  # hung: nothing renews the heartbeat
        path = os.path.join(root, "config", "stored.state")
        old = time.time() - 60
        os.utime(path, (old, old))
        r = cmd(["-t", "-v"], root)
        assert r.returncode == 2 and "state: not responding" in r.stdout, r
        p.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 60
        while cmd(["-t"], root).returncode != 0:
            assert time.monotonic() < deadline, "heartbeat not renewed after SIGCONT"
            time.sleep(0.2)
    finally:
        p.send_signal(signal.SIGCONT)
        stop(p)


def test_sd_notify_never_waits_on_a_manager_that_stopped_reading(tmp_path):
    """A full notification queue once stalled stored in sd_notify (its SIGTERM
    was never handled): a datagram that does not fit is dropped instead."""
    path = str(tmp_path / "n.sock")
    code = ("import sys\nfrom store.proc import sd_notify\n"
            "r = [sd_notify('STATUS=%d' % i) for i in range(200)]\n"
            "print(r.count(True), r.count(False))\n")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)  # bound, never read
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                           env={**os.environ, "NOTIFY_SOCKET": path}, timeout=60)
    sent, dropped = map(int, r.stdout.split())
    assert sent >= 1 and dropped >= 1 and sent + dropped == 200, r
