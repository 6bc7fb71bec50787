"""Whole-file flock locks on lock files, for the per-mailbox locks taken
hundreds of times a second (delivery, reconstruct).

This is the lock filelock's `FileLock` takes on Unix (a whole-file
`flock(LOCK_EX)` on the lock file; its `lock_descriptor` is the same call),
so the two exclude each other: tests/test_locks.py holds them to it. It is
called directly because a `FileLock` object costs ~130-200 µs an acquire
and release where this costs ~7 µs, and importing filelock 4.2 adds ~20 ms
to every command's start, `deliver`'s included (docs/performance.md).
Lock files are never removed: unlinking a locked file would let the next
taker lock a new inode while the old one is still held."""

from __future__ import annotations

import errno
import fcntl
import os
import time

POLL_FIRST, POLL_MAX = 0.001, 0.05  # seconds between tries while another holds it
_HELD_ELSEWHERE = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES)


def acquire(path: str, timeout: float) -> int | None:
    """The descriptor holding the lock on `path`, or None when it stayed
    held elsewhere for `timeout` seconds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        deadline = time.monotonic() + timeout
        delay = POLL_FIRST
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(delay)
            delay = min(delay * 2, POLL_MAX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def release(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in _HELD_ELSEWHERE:
            return False
        raise
    return True
