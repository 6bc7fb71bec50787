"""Whole-file flock locks on lock files, for the per-mailbox locks taken
hundreds of times a second (delivery, reconstruct).

filelock's `lock_descriptor` takes the same lock `FileLock` takes on the
same file (a whole-file flock), so the two contend with each other; it
costs ~7 µs an acquire and release here where a `FileLock` object costs
~130-200 µs (filelock 4.2, measured: docs/performance.md). Lock files are
never removed: unlinking a locked file would let the next taker lock a new
inode while the old one is held."""

from __future__ import annotations

import os
import time

from filelock import lock_descriptor, unlock_descriptor

POLL_FIRST, POLL_MAX = 0.001, 0.05  # seconds between tries while another holds it


def acquire(path: str, timeout: float) -> int | None:
    """The descriptor holding the lock on `path`, or None when it stayed
    held elsewhere for `timeout` seconds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        deadline = time.monotonic() + timeout
        delay = POLL_FIRST
        while not lock_descriptor(fd, blocking=False):
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
        unlock_descriptor(fd)
    finally:
        os.close(fd)
