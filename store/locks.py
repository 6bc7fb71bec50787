"""Every lock of the store, by name, in `<root>/lock/`:

  mbox-<sha1 of the mailbox name, 20 hex>.lock   one mailbox (deliver, flags, rebuild)
  reconstruct-db.lock                             reconstruct -m, -q and -l (store-wide)
  stored.lock                                     the store daemon (one per store)
  move.lock                                       administrators' moves (mboxutil --move,
                                                  imexpire's fileinto): one at a time

Each is a whole-file `flock(LOCK_EX)` on its lock file, the lock filelock's
`FileLock` takes on Unix, so the two exclude each other (tests/test_locks.py
holds them to it). It is called directly because a `FileLock` object costs
~130-200 µs an acquire and release where this costs ~7 µs, and importing
filelock adds ~20 ms to every command's start, `deliver`'s included
(docs/performance.md). The holder writes its pid at the head of the file,
so that a refused taker can say who holds it. Lock files are never removed:
unlinking a locked file would let the next taker lock a new inode while the
old one is still held.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import time
from collections.abc import Iterator

from .errors import LockedError, symlink_error

POLL_FIRST, POLL_MAX = 0.001, 0.05  # seconds between tries while another holds it
MAILBOX_TIMEOUT = 60.0
REPAIR_LOCK = "reconstruct-db.lock"
DAEMON_LOCK = "stored.lock"
PASSWD_LOCK = "passwd.lock"  # writers of config/passwd (accounts.py)
MOVE_LOCK = "move.lock"  # a move holds two mailboxes' locks; movers go one at a time
UIDVALIDITY_LOCK = "uidvalidity.lock"  # the UIDVALIDITY counter, config/uidvalidity (lifecycle.py)
_HELD_ELSEWHERE = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES)
NO_LOCK = -1  # acquire() on a read-only filesystem: there is nothing to exclude
_PID_FIELD = 11  # "%10d\n": fixed width, so a shorter pid needs no truncate


def mailbox_lock_name(mailbox: str) -> str:
    return f"mbox-{hashlib.sha1(mailbox.encode()).hexdigest()[:20]}.lock"


def acquire(path: str, timeout: float) -> int | None:
    """The descriptor holding the lock on `path`, or None when it stayed
    held elsewhere for `timeout` seconds. On a read-only filesystem nothing
    can change what a lock would protect: NO_LOCK is returned, held by no
    one (a command that writes fails at its first write, as it must)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o640)
    except OSError as e:
        if e.errno == errno.EROFS:
            return NO_LOCK
        if e.errno == errno.ELOOP:  # never create or lock the target of a planted symlink
            raise symlink_error(path, "lock file") from None
        raise
    try:
        deadline = time.monotonic() + timeout
        delay = POLL_FIRST
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(delay)
            delay = min(delay * 2, POLL_MAX)
        os.pwrite(fd, b"%10d\n" % os.getpid(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def release(fd: int) -> None:
    if fd == NO_LOCK:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def holder(path: str) -> int | None:
    """The pid the last holder of `path` wrote (meaningful while it is held)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_PID_FIELD).strip()
    except OSError:
        return None
    return int(head) if head.isdigit() else None


def held_by(path: str) -> str:
    """`pid N` for an error message, or `another process`."""
    pid = holder(path)
    return f"pid {pid}" if pid else "another process"


def take(lock_dir: str, name: str, timeout: float, what: str) -> int:
    """acquire() of `lock_dir/name`, or LockedError naming `what` and the holder."""
    os.makedirs(lock_dir, exist_ok=True)
    path = os.path.join(lock_dir, name)
    fd = acquire(path, timeout)
    if fd is None:
        waited = f" (waited {timeout:.0f} s)" if timeout else ""
        raise LockedError(f"{what} is locked by {held_by(path)}{waited}")
    return fd


@contextlib.contextmanager
def mailboxes(lock_dir: str, names, timeout: float = MAILBOX_TIMEOUT) -> Iterator[None]:
    """Per-mailbox locks, taken in sorted order so two callers never deadlock."""
    os.makedirs(lock_dir, exist_ok=True)
    held: list[int] = []
    try:
        for name in sorted(set(names)):
            held.append(take(lock_dir, mailbox_lock_name(name), timeout, f"mailbox {name}"))
        yield
    finally:
        for fd in reversed(held):
            release(fd)


def is_held(lock_dir: str, name: str) -> bool:
    """Whether some process holds `name` now (probed without waiting)."""
    path = os.path.join(lock_dir, name)
    if not os.path.exists(path):
        return False
    fd = acquire(path, 0)
    if fd is None:
        return True
    release(fd)
    return False


def held(lock_dir: str) -> dict[str, int]:
    """Lock file name -> pid of the process holding it now, for every lock of
    `lock_dir` that is held: read from the kernel's table (/proc/locks), so
    looking takes no lock and holds no one up. Empty where there is no
    /proc/locks."""
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            table = f.read().splitlines()
    except OSError:
        return {}
    by_inode: dict[tuple[int, int], int] = {}
    for line in table:  # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
        parts = line.split()
        if len(parts) < 6 or parts[1] != "FLOCK" or parts[0].endswith("->"):
            continue
        try:
            major, minor, ino = parts[5].split(":")
            by_inode[(os.makedev(int(major, 16), int(minor, 16)), int(ino))] = int(parts[4])
        except ValueError:
            continue
    out = {}
    for name in os.listdir(lock_dir) if os.path.isdir(lock_dir) else ():
        try:
            st = os.lstat(os.path.join(lock_dir, name))
        except OSError:
            continue
        pid = by_inode.get((st.st_dev, st.st_ino))
        if pid is not None:
            out[name] = pid
    return out


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in _HELD_ELSEWHERE:
            return False
        raise
    return True
