"""Per-mailbox locks: exclusive between processes, interoperable with a
FileLock on the same file, released on every exit path."""

import multiprocessing as mp
import os
import threading
import time

import pytest
from conftest import ROOT, wait_for
from filelock import FileLock

from store.errors import LockedError
from store.mailbox import Store

CTX = mp.get_context("fork")


def _hold(root, name, ready, release):
    with Store.open(root).lock(name):
        ready.set()
        release.wait(30)


def _fds():
    return len(os.listdir("/proc/self/fd"))


def test_a_held_mailbox_lock_times_out_another_process_then_frees(store, root):
    store.create("user/joe")
    ready, release = CTX.Event(), CTX.Event()
    p = CTX.Process(target=_hold, args=(root, "user/joe", ready, release))
    p.start()
    try:
        assert ready.wait(30)
        t0 = time.monotonic()
        with pytest.raises(LockedError, match="user/joe is locked"), store.lock("user/joe",
                                                                                timeout=0.3):
            pass
        assert time.monotonic() - t0 >= 0.3
        with store.lock("user/other", timeout=0.3):  # other mailboxes are free
            pass
    finally:
        release.set()
        p.join(30)
    with store.lock("user/joe", timeout=5):
        pass


def test_a_waiter_gets_the_lock_when_the_holder_lets_go(store, root):
    ready, release = CTX.Event(), CTX.Event()
    p = CTX.Process(target=_hold, args=(root, "user/joe", ready, release))
    p.start()
    assert ready.wait(30)
    release.set()
    with store.lock("user/joe", timeout=10):
        pass
    p.join(30)


def test_the_mailbox_lock_and_a_filelock_on_its_file_exclude_each_other(store, root):
    with store.lock("user/joe"):
        (path,) = [os.path.join(store.layout.lock_dir, f)
                   for f in os.listdir(store.layout.lock_dir) if f.startswith("mbox-")]

        def try_filelock():
            try:
                FileLock(path, timeout=0.2).acquire()
                os._exit(0)
            except Exception:  # noqa: BLE001 - Timeout: the flock is held
                os._exit(3)
        p = CTX.Process(target=try_filelock)
        p.start()
        p.join(30)
        assert p.exitcode == 3
    with FileLock(path, timeout=0), pytest.raises(LockedError):
        with Store.open(root).lock("user/joe", timeout=0.2):
            pass


def test_locks_are_released_and_closed_on_an_exception(store):
    before = _fds()
    with pytest.raises(RuntimeError), store.lock("user/a", "user/b"):
        raise RuntimeError("boom")
    assert _fds() == before
    with store.lock("user/b", "user/a", timeout=0.2):
        pass


def test_a_second_database_reconstruct_is_refused_while_one_runs(store, root, cli, monkeypatch):
    monkeypatch.setenv("MSGSTORE_ROOT", root)
    store.create("user/joe")
    store.close()  # the commands open the database themselves
    path = os.path.join(store.layout.lock_dir, "reconstruct-db.lock")
    os.makedirs(store.layout.lock_dir, exist_ok=True)
    with FileLock(path, timeout=0):  # as another process's run would hold it
        for flag in ("-m", "-q", "-l"):
            r = cli("reconstruct", flag)
            assert r.code == 8 and "another reconstruct -m, -q or -l is running" in r.err, r
    r = cli("reconstruct", "-q")
    assert r.code == 0, r


def test_a_rename_waits_for_the_other_mailboxes_of_the_quota_root_it_recounts(store, root):
    # the recount reads every mailbox of user/joe's root: a delivery to the
    # INBOX under way must finish first, or its bytes would be counted twice
    store.create("user/joe")
    store.create("user/joe/A")
    store.append("user/joe", b"x" * 10)
    store.append("user/joe/A", b"y" * 5)
    ready, release = CTX.Event(), CTX.Event()
    p = CTX.Process(target=_hold, args=(root, "user/joe/INBOX", ready, release))
    p.start()
    assert ready.wait(30)
    threading.Timer(0.5, release.set).start()
    t0 = time.monotonic()
    store.rename("user/joe/A", "user/joe/B")
    assert time.monotonic() - t0 >= 0.4
    p.join(30)
    (q,) = store.quotas("user/joe")
    assert (q["used_bytes"], q["used_messages"]) == (15, 2)


def test_a_refused_taker_names_the_holder_by_pid(store, root):
    ready, release = CTX.Event(), CTX.Event()
    p = CTX.Process(target=_hold, args=(root, "user/joe", ready, release))
    p.start()
    try:
        assert ready.wait(30)
        with pytest.raises(LockedError, match=f"mailbox user/joe is locked by pid {p.pid} "), \
                store.lock("user/joe", timeout=0.05):
            pass
    finally:
        release.set()
        p.join(30)


def test_a_zombie_is_not_alive():
    """An exited child not yet reaped (what an orphan stays where PID 1 does
    not reap): its temp files and snapshot directories are a dead writer's."""
    import subprocess

    from store.proc import pid_alive
    p = subprocess.Popen(["true"])

    def zombie() -> bool:  # exited, not reaped
        with open(f"/proc/{p.pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    wait_for(zombie, 30, "the child to exit")
    assert not pid_alive(p.pid)
    p.wait()
    assert not pid_alive(p.pid)
    assert pid_alive(os.getpid())


def test_mboxutil_locks_shows_who_holds_which_mailbox(cli, root):
    """The log's own advice (`delivery-deferred`: look for what holds the
    mailbox lock, mboxutil --locks) names a command that must exist."""
    import subprocess
    import sys

    from store.mailbox import Store
    with Store.init(root) as s:
        s.create("user/joe")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from store.mailbox import Store\n"
         f"s = Store.open({root!r})\nwith s.lock('user/joe/INBOX'):\n"
         "    print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert holder.stdout.readline() == b"held\n"
        r = cli("mboxutil", "--store-root", root, "--locks", "--json")
        assert r.code == 0, r
        import json
        got = json.loads(r.out)
        assert {"lock": "user/joe/INBOX", "pid": holder.pid} == {
            k: v for k, v in got[0].items() if k != "command"}, got
        assert "Store.open" in got[0]["command"]
    finally:
        holder.communicate(b"", timeout=30)
    r = cli("mboxutil", "--store-root", root, "--locks", "--json")
    assert r.code == 0 and r.out.strip() == "[]", r
