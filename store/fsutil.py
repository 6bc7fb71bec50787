"""Durable file operations shared by every writer.

Every rewrite goes through `atomic_write`: a temp file opened exclusively in
the target's directory, fsync, os.replace, fsync of the directory. On any
exception the temp file is removed and the old file is untouched.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import secrets
from collections.abc import Iterator

TEMP_PREFIX = ".tmp-"


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(target: str) -> str:
    d, base = os.path.split(target)
    return os.path.join(d, f"{TEMP_PREFIX}{base}.{secrets.token_hex(4)}")


@contextlib.contextmanager
def atomic_write(target: str, *, durable: bool = True, fsync_directory: bool = True) -> Iterator:
    """Yield a binary file object; on clean exit it replaces `target`.
    fsync_directory=False leaves the directory fsync to the caller, who
    swaps several files in one directory and fsyncs it once after the last."""
    tmp = temp_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    f = os.fdopen(fd, "wb")
    try:
        yield f
        f.flush()
        if durable:
            os.fsync(f.fileno())
        f.close()
        os.replace(tmp, target)
    except BaseException:
        f.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable and fsync_directory:
        fsync_dir(os.path.dirname(target) or ".")


def write_file_atomic(target: str, data: bytes, *, durable: bool = True) -> None:
    with atomic_write(target, durable=durable) as f:
        f.write(data)


_libc = None


def sync_filesystem(path: str) -> None:
    """Flush everything on the filesystem holding `path`: one call for a batch.

    syncfs(2) where libc has it, else sync(2)."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        _libc = ctypes.CDLL(name, use_errno=True) if name else False
    if _libc and hasattr(_libc, "syncfs"):
        fd = os.open(path, os.O_RDONLY)
        try:
            if _libc.syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    os.sync()


def pid_alive(pid: int) -> bool:
    """Whether a process exists (signal 0; EPERM means it does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftover_temp_files(top: str) -> list[str]:
    """Temp files a crashed writer left behind (used by checks and tests)."""
    found = []
    for dirpath, _dirs, files in os.walk(top):
        found.extend(os.path.join(dirpath, f) for f in files if f.startswith(TEMP_PREFIX))
    return found
