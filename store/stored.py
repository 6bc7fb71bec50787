"""The store daemon's engine: one instance per store, startup integrity
check and recovery, readiness, and the housekeeping schedule.

The CLI (`store/cli/stored.py`) owns signals and output; this module logs,
returns values and raises typed errors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from filelock import FileLock, Timeout

from . import dbverify, logmsg, snapshots
from .config import Config
from .errors import LockedError
from .fsutil import TEMP_PREFIX, fsync_dir, pid_alive, write_file_atomic
from .layout import Layout, is_bucket, walk_spool
from .mailbox import Store

STATE_FILE = "stored.state"
STAMPS = {"checkpoint": "stored.ckp", "cleanup": "stored.lcu", "peruser": "stored.per"}
EXPIRE_RECORD = "stored.exp"
REMOVED = "removed"
REMOVED_MARKER = "removed.json"
WEEK = 7 * 86400
TEMP_MIN_AGE = 600  # seconds: younger temp files may belong to a running writer

log = logging.getLogger("store.stored")


# ---- systemd notification ----------------------------------------------------

def notify(message: str) -> bool:
    """sd_notify(3): a datagram to $NOTIFY_SOCKET. False when not under systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.connect(addr)
            s.sendall(message.encode())
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6 / 2


# ---- state file and lock -------------------------------------------------------

def state_path(layout: Layout) -> str:
    return os.path.join(layout.config_dir, STATE_FILE)


def read_state(layout: Layout) -> dict | None:
    try:
        with open(state_path(layout), encoding="utf-8") as f:
            words = f.read().split()
    except FileNotFoundError:
        return None
    if len(words) < 2 or not words[0].isdigit():
        return None
    return {"pid": int(words[0]), "state": words[1]}


def write_state(layout: Layout, state: str) -> None:
    write_file_atomic(state_path(layout), f"{os.getpid()} {state}\n".encode())


def store_lock(layout: Layout) -> FileLock:
    os.makedirs(layout.lock_dir, exist_ok=True)
    return FileLock(os.path.join(layout.lock_dir, "stored.lock"), timeout=0)


def acquire(layout: Layout) -> FileLock:
    lock = store_lock(layout)
    try:
        lock.acquire()
    except Timeout:
        st = read_state(layout)
        who = f"pid {st['pid']}" if st else "another process"
        raise LockedError(f"stored is already running on {layout.root} ({who})") from None
    return lock


def running(layout: Layout) -> dict | None:
    """The state of a live stored, or None."""
    st = read_state(layout)
    if st and pid_alive(st["pid"]):
        lock = store_lock(layout)
        try:
            lock.acquire()
        except Timeout:
            return st
        lock.release()
    return None


# ---- recovery ----------------------------------------------------------------

@dataclass
class Recovery:
    verdict: dbverify.Verdict
    recovered: bool = False
    snapshot: str | None = None
    resync: list[str] | None = None


def move_aside(layout: Layout, now: float) -> str:
    """Move the bad environment into mboxlist/removed/, unless the copy there
    is less than a week old: then that older copy stays and this one goes."""
    removed = os.path.join(layout.mboxlist_dir, REMOVED)
    marker = os.path.join(removed, REMOVED_MARKER)
    bad = [os.path.join(layout.mboxlist_dir, f) for f in ("data.mdb", "lock.mdb")]
    try:
        with open(marker, encoding="utf-8") as f:
            since = json.load(f)["time"]
    except (OSError, ValueError, KeyError):
        since = None
    if since is not None and now - since < WEEK:
        for p in bad:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
        logmsg.log("stored", logmsg.DB_REMOVED_KEPT, path=removed)
        return "kept"
    tmp = removed + ".new"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    if os.path.exists(bad[0]):
        os.rename(bad[0], os.path.join(tmp, "data.mdb"))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(bad[1])
    write_file_atomic(os.path.join(tmp, REMOVED_MARKER), json.dumps({"time": now}).encode())
    shutil.rmtree(removed, ignore_errors=True)
    os.rename(tmp, removed)
    fsync_dir(layout.mboxlist_dir)
    logmsg.log("stored", logmsg.DB_REMOVED_COPY, path=removed)
    return "moved"


def check_and_recover(layout: Layout, now: float, status: Callable[[str], None]) -> Recovery:
    """Steps 2-4 of startup: analyse the database in a child process and, if
    it is damaged, recover it from the best snapshot (or the spool)."""
    status("checking the mailbox database")
    verdict = dbverify.verify(layout.mboxlist_dir)
    if verdict.ok:
        return Recovery(verdict)
    logmsg.log("stored", logmsg.DB_DAMAGED, reason=verdict.reason)
    status("database damaged: recovering")
    move_aside(layout, now)
    snap, skipped = snapshots.best(layout)
    for s, why in skipped:
        logmsg.log("stored", logmsg.DB_SNAPSHOT_SKIPPED, name=s.name, why=why)
    if snap is not None:
        snapshots.restore_into(snap, layout.mboxlist_dir)
        logmsg.log("stored", logmsg.DB_RECOVER_SNAPSHOT)
        # the snapshot is a usable database: the spool resync runs right after
        # readiness (job "resync"), so a big store is ready within the minute
        return Recovery(verdict, True, snap.name, None)
    logmsg.log("stored", logmsg.DB_RECOVER_EMPTY)
    status("rebuilding the database from the spool")
    return Recovery(verdict, True, None, resync_from_spool(layout))


def resync_from_spool(layout: Layout, store: Store | None = None) -> list[str]:
    """The reconstruct -m engine over the whole spool; each change is logged.
    `store`: the daemon's open store (LMDB allows one environment handle per
    process)."""
    from .reconstruct.runner import reconstruct_db
    with contextlib.ExitStack() as stack:
        if store is None:
            store = stack.enter_context(Store(layout))
        findings, _s = reconstruct_db(store, partition=None, user=None, apply=True, mode="m",
                                      by_stored=True)
    lines = [f.line() for f in findings]
    for line in lines or [f"{_s.mailboxes_checked} mailboxes checked, database already up to date"]:
        logmsg.log("stored", logmsg.DB_RESYNC, line=line)
    return lines


def clear_stale_readers(store: Store) -> int:
    return store.db.env.reader_check()


def remove_temp_files(layout: Layout, now: float) -> list[str]:
    """Temp files of writes cut off by a crash, older than TEMP_MIN_AGE:
    index and settings rewrites, message deliveries never acknowledged,
    snapshot directories."""
    removed = []
    places = [layout.config_dir, layout.mboxlist_dir]
    for ppath in layout.config.partitions().values():
        for _name, mdir in walk_spool(ppath):
            places.append(mdir)
            with contextlib.suppress(OSError):
                places += [e.path for e in os.scandir(mdir)
                           if e.is_dir(follow_symlinks=False) and is_bucket(e.name)]
    for d in places:
        with contextlib.suppress(OSError):
            for e in os.scandir(d):
                if e.name.startswith(TEMP_PREFIX) and e.is_file(follow_symlinks=False) \
                        and now - e.stat().st_mtime > TEMP_MIN_AGE:
                    os.unlink(e.path)
                    removed.append(e.path)
    snapshots.prune(layout, layout.config.get_int("local.store.snapshotdirs"))
    return removed


# ---- the schedule ----------------------------------------------------------------

@dataclass
class Job:
    name: str
    due: float


class Schedule:
    """When each housekeeping job is next due. Pure: it reads the clock it
    is given and the snapshot times on disk, so it can be tested with a
    frozen clock."""

    def __init__(self, layout: Layout, now: float):
        self.layout = layout
        self.reload(now)

    def reload(self, now: float) -> None:
        c = self.layout.config
        self.intervals = {"checkpoint": c.get_int("local.store.checkpointinterval"),
                          "cleanup": c.get_int("local.store.cleanupinterval"),
                          "peruser": c.get_int("local.store.peruserinterval")}
        self.due = {k: now + v for k, v in self.intervals.items()}
        self.due["snapshot"] = self.snapshot_due(now)
        self.due["expire"] = self.expire_due(now)

    def snapshot_due(self, now: float) -> float:
        """Counted from the newest snapshot on disk: a restart does not reset
        the clock, and an overdue snapshot is taken soon after startup."""
        interval = self.layout.config.get_int("local.store.snapshotinterval") * 60
        newest = snapshots.newest_time(self.layout)
        return now if newest is None else max(now, newest + interval)

    def expire_due(self, now: float) -> float:
        hour = self.layout.config.get_int("local.store.expirestart")
        lt = time.localtime(now)
        today = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, hour, 0, 0, 0, 0, -1))
        last = self._last_expire()
        if today <= now and (last is None or last < today):
            return now
        if today > now:
            return today
        return time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday + 1, hour, 0, 0, 0, 0, -1))

    def _last_expire(self) -> float | None:
        try:
            return os.path.getmtime(os.path.join(self.layout.config_dir, EXPIRE_RECORD))
        except OSError:
            return None

    def pop_due(self, now: float) -> list[str]:
        return [k for k, t in sorted(self.due.items(), key=lambda kv: kv[1]) if t <= now]

    def done(self, job: str, now: float) -> None:
        if job in self.intervals:
            self.due[job] = now + self.intervals[job]
        elif job == "snapshot":
            self.due[job] = self.snapshot_due(now)
            if self.due[job] <= now:  # the snapshot failed: try again in an interval
                self.due[job] = now + self.layout.config.get_int("local.store.snapshotinterval") * 60
        elif job == "expire":
            self.due[job] = self.expire_due(now + 1)
        elif job == "resync":  # once, after a recovery from a snapshot
            del self.due[job]

    def next_due(self) -> float:
        return min(self.due.values())


def touch(path: str, now: float) -> None:
    with open(path, "a"):
        pass
    os.utime(path, (now, now))


class Daemon:
    def __init__(self, root: str, *, clock: Callable[[], float] = time.time,
                 status: Callable[[str], None] = lambda s: None):
        self.layout = Layout.open(root)
        self.clock = clock
        self.status = status
        self.lock: FileLock | None = None
        self.store: Store | None = None
        self.schedule: Schedule | None = None
        self.last_db_size = 0

    def acquire(self) -> None:
        if self.lock is None:
            self.lock = acquire(self.layout)

    def start(self) -> Recovery:
        t0 = time.monotonic()
        self.acquire()
        write_state(self.layout, "init")
        notify("STATUS=checking the mailbox database")
        rec = check_and_recover(self.layout, self.clock(), self._status)
        self.store = Store(self.layout)
        cleared = clear_stale_readers(self.store)
        if cleared:
            log.info("cleared %d stale reader slots", cleared)
        self.last_db_size = self._db_size()
        self.schedule = Schedule(self.layout, self.clock())
        if rec.recovered and rec.resync is None:
            self.schedule.due["resync"] = self.clock()  # first thing after readiness
        write_state(self.layout, "ready")
        notify("READY=1\nSTATUS=ready")
        logmsg.log("stored", logmsg.STORED_READY, pid=os.getpid(), seconds=time.monotonic() - t0)
        return rec

    def _status(self, text: str) -> None:
        notify(f"STATUS={text}")
        self.status(text)

    def _db_size(self) -> int:
        try:
            return os.path.getsize(os.path.join(self.layout.mboxlist_dir, "data.mdb"))
        except OSError:
            return 0

    def reload(self) -> None:
        self.layout.config = Config.load(self.layout.root)
        self.schedule.reload(self.clock())
        log.info("settings reloaded")

    def run_job(self, job: str, now: float) -> None:
        try:
            getattr(self, f"job_{job}")(now)
        except Exception as e:  # noqa: BLE001 - one failed job must not stop the daemon
            logmsg.log("stored", logmsg.STORED_JOB_FAILED, job=job, error=e)
        self.schedule.done(job, self.clock())

    def tick(self) -> list[str]:
        now = self.clock()
        jobs = self.schedule.pop_due(now)
        for job in jobs:
            self.run_job(job, now)
        return jobs

    def job_resync(self, now: float) -> None:
        resync_from_spool(self.layout, self.store)

    def job_checkpoint(self, now: float) -> None:
        self.store.db.sync()
        touch(os.path.join(self.layout.config_dir, STAMPS["checkpoint"]), now)

    def job_cleanup(self, now: float) -> None:
        cleared = clear_stale_readers(self.store)
        size = self._db_size()
        if cleared or size != self.last_db_size:
            log.info("cleanup: %d stale reader slots cleared; database %d bytes (%+d)",
                     cleared, size, size - self.last_db_size)
        self.last_db_size = size
        touch(os.path.join(self.layout.config_dir, STAMPS["cleanup"]), now)

    def job_peruser(self, now: float) -> None:
        # per-user flags are committed through the database as they change;
        # the write-out makes them durable on disk
        self.store.db.sync()
        touch(os.path.join(self.layout.config_dir, STAMPS["peruser"]), now)

    def job_snapshot(self, now: float) -> None:
        snapshots.take(self.layout, self.store.db.env, now=now)

    def job_expire(self, now: float) -> None:
        total = 0
        for info in self.store.list():
            total += self.store.erase_expunged(info.name)
        touch(os.path.join(self.layout.config_dir, EXPIRE_RECORD), now)
        log.info("expire: %d expunged message files erased", total)

    def run(self, stop: threading.Event, reload: threading.Event, *, max_sleep: float = 0.5) -> None:
        wd = watchdog_interval()
        last_wd = 0.0
        while not stop.is_set():
            if reload.is_set():
                reload.clear()
                self.reload()
            self.tick()
            if wd and time.monotonic() - last_wd >= wd:
                notify("WATCHDOG=1")
                last_wd = time.monotonic()
            wait = min(max_sleep, max(0.0, self.schedule.next_due() - self.clock()))
            stop.wait(wait)

    def shutdown(self) -> None:
        notify("STOPPING=1")
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.db.sync()
            self.store.close()
        with contextlib.suppress(FileNotFoundError):
            st = read_state(self.layout)
            if st and st["pid"] == os.getpid():
                os.unlink(state_path(self.layout))
        if self.lock is not None:
            self.lock.release()
        logmsg.log("stored", logmsg.STORED_STOPPED, pid=os.getpid())


def stamp_ages(layout: Layout, now: float) -> dict[str, float | None]:
    out = {}
    for f in STAMPS.values():
        try:
            out[f] = now - os.path.getmtime(os.path.join(layout.config_dir, f))
        except OSError:
            out[f] = None
    return out


