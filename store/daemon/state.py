"""The daemon's files in `<root>/config/`: the state file, the stamp files
and the expire record; and whether a stored is running (its lock).

  stored.state   "<pid> <init|ready>\\n" while stored runs (removed when it stops)
  stored.ckp     stamp: mtime of the last checkpoint
  stored.lcu     stamp: mtime of the last stale-reader cleanup
  stored.per     stamp: mtime of the last per-user flag write-out
  stored.upg     the index version every store.idx has been upgraded to (index.IDX_VERSION)
  stored.exp     mtime of the last erase of expunged message files
  stored.resync  present while a spool resync after a snapshot restore is pending
                 (written durably before READY, removed once the resync completed)
"""

from __future__ import annotations

import contextlib
import os

from .. import locks
from ..errors import LockedError, StoreError
from ..fsutil import write_file_atomic
from ..layout import Layout
from ..proc import pid_alive

STATE_FILE = "stored.state"
STAMPS = {"checkpoint": "stored.ckp", "cleanup": "stored.lcu", "peruser": "stored.per"}
EXPIRE_RECORD = "stored.exp"
UPGRADED = "stored.upg"
RESYNC_PENDING = "stored.resync"
INIT, READY = "init", "ready"
HEARTBEAT_INTERVAL = 2.0  # seconds between renewals of the state file's mtime
HEARTBEAT_STALE = 15.0  # older than this: stored runs but does not respond


def state_path(layout: Layout) -> str:
    return os.path.join(layout.config_dir, STATE_FILE)


def read_state(layout: Layout) -> dict | None:
    """{"pid", "state"} as the state file says, or None (no file, or one
    damaged: stored rewrites it at its start)."""
    try:
        with open(state_path(layout), "rb") as f:
            words = f.read(256).decode("ascii", "replace").split()
    except FileNotFoundError:
        return None
    if len(words) < 2 or not words[0].isascii() or not words[0].isdigit() \
            or not 0 < int(words[0]) < 1 << 31 or words[1] not in (INIT, READY):
        return None
    return {"pid": int(words[0]), "state": words[1]}


def write_state(layout: Layout, state: str) -> None:
    write_file_atomic(state_path(layout), f"{os.getpid()} {state}\n".encode())


def beat(layout: Layout) -> None:
    """Renew the heartbeat (the state file's mtime)."""
    with contextlib.suppress(FileNotFoundError):
        os.utime(state_path(layout))


def heartbeat_age(layout: Layout, now: float) -> float | None:
    try:
        return now - os.path.getmtime(state_path(layout))
    except FileNotFoundError:
        return None


def clear_state(layout: Layout) -> None:
    """Remove the state file if this process wrote it."""
    with contextlib.suppress(FileNotFoundError):
        st = read_state(layout)
        if st and st["pid"] == os.getpid():
            os.unlink(state_path(layout))


def stamp_path(layout: Layout, job: str) -> str:
    return os.path.join(layout.config_dir, STAMPS[job])


def expire_record_path(layout: Layout) -> str:
    return os.path.join(layout.config_dir, EXPIRE_RECORD)


def upgraded_version(layout: Layout) -> int:
    """The index version the last completed upgrade pass brought every
    mailbox to (1: never run)."""
    try:
        with open(os.path.join(layout.config_dir, UPGRADED), "rb") as f:
            return int(f.read(16).strip() or 1)
    except (OSError, ValueError):
        return 1


def mark_upgraded(layout: Layout, version: int) -> None:
    write_file_atomic(os.path.join(layout.config_dir, UPGRADED), f"{version}\n".encode())


def resync_path(layout: Layout) -> str:
    return os.path.join(layout.config_dir, RESYNC_PENDING)


def mark_resync_pending(layout: Layout, snapshot: str) -> None:
    """Record, durably, that the restored database still needs the spool resync."""
    write_file_atomic(resync_path(layout), f"{snapshot}\n".encode())


SPOOL_REBUILD = "spool-rebuild"  # the mark's content while a rebuild from the spool runs


def resync_pending(layout: Layout) -> bool:
    return os.path.exists(resync_path(layout))


def rebuild_cut_off(layout: Layout) -> bool:
    """Whether the pending resync is a rebuild from the spool that was cut off
    (the database then lacks entries, not just recent changes)."""
    try:
        with open(resync_path(layout), "rb") as f:
            return f.read(64).strip() == SPOOL_REBUILD.encode()
    except OSError:
        return False


def clear_resync_pending(layout: Layout) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(resync_path(layout))


def touch(path: str, now: float) -> None:
    with open(path, "a"):
        pass
    os.utime(path, (now, now))


def stamp_ages(layout: Layout, now: float) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for f in STAMPS.values():
        try:
            out[f] = now - os.path.getmtime(os.path.join(layout.config_dir, f))
        except OSError:
            out[f] = None
    return out


def acquire_daemon_lock(layout: Layout) -> int:
    """The descriptor holding stored.lock, or LockedError naming the running stored."""
    os.makedirs(layout.lock_dir, exist_ok=True)
    fd = locks.acquire(os.path.join(layout.lock_dir, locks.DAEMON_LOCK), 0)
    if fd is None:
        st = read_state(layout)
        who = (f"pid {st['pid']}" if st
               else locks.held_by(os.path.join(layout.lock_dir, locks.DAEMON_LOCK)))
        raise LockedError(f"stored is already running on {layout.root} ({who})")
    return fd


def release_daemon_lock(fd: int) -> None:
    locks.release(fd)


def running(layout: Layout) -> dict | None:
    """The state of a live stored, or None."""
    st = read_state(layout)
    if st and pid_alive(st["pid"]) and locks.is_held(layout.lock_dir, locks.DAEMON_LOCK):
        return st
    return None


def is_ready(layout: Layout) -> bool:
    """Whether a live stored has said it is ready."""
    st = running(layout)
    return st is not None and st["state"] == READY


def recovering(layout: Layout) -> int | None:
    """The pid of a live stored that is still checking or recovering the
    database (before READY), or None."""
    st = read_state(layout)
    return st["pid"] if st and st["state"] == INIT and pid_alive(st["pid"]) else None


def refuse_while_recovering(layout: Layout) -> None:
    """reconstruct -m must not run while stored checks or recovers the database."""
    pid = recovering(layout)
    if pid is not None:
        raise StoreError(f"stored (pid {pid}) is still checking or recovering the database; "
                         "run reconstruct -m once it is ready (stored -t)")
