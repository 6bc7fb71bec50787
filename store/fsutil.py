"""Durable file operations shared by every writer.

Every rewrite goes through `atomic_write`: a temp file opened exclusively in
the target's directory, fsync, os.replace, fsync of the directory. On any
exception the temp file is removed and the old file is untouched.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import errno
import os
import re
import stat
from collections.abc import Iterator

from .crash import crashpoint
from .errors import StoreError, symlink_error

TEMP_PREFIX = ".tmp-"


def current_umask() -> int:
    """This process's umask, read without changing it where Linux tells it
    (/proc/self/status), else by setting and restoring it."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o077)
    os.umask(old)
    return old


def tighten_umask(mask: int) -> None:
    """Add `mask`'s bits to the process umask (never loosen it), so that every
    file and directory the store creates has at most the modes it allows
    whatever umask the process was started with."""
    cur = current_umask()
    if cur | mask != cur:
        os.umask(cur | mask)


def refuse_symlinks(base: str, path: str, what: str = "directory") -> None:
    """Raise symlink_error for the first component from `base` (exclusive)
    down to `path` (inclusive) that is a symlink; components that do not
    exist yet end the walk (they are created without following anything)."""
    rel = os.path.relpath(path, base)
    if rel == ".":
        return
    cur = base
    for comp in rel.split(os.sep):
        cur = os.path.join(cur, comp)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise symlink_error(cur, what)


def is_real_dir(path: str) -> bool:
    """Whether `path` is a directory (False: nothing there yet). A symlink
    there raises symlink_error, any other file StoreError: the store never
    makes or uses a directory through either."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise symlink_error(path, "directory")
    if not stat.S_ISDIR(st.st_mode):
        raise StoreError(f"{path} is not a directory; refusing to use it")
    return True


def open_nofollow(path: str, mode: str = "rb"):
    """open() that refuses a symlink (O_NOFOLLOW): symlink_error, not ELOOP."""
    flags = {"rb": os.O_RDONLY, "r+b": os.O_RDWR}[mode]
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise symlink_error(path, "file") from None
        raise
    return os.fdopen(fd, mode)


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a write may take fewer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(target: str) -> str:
    """`.tmp-<base>.<pid>.<random>` beside `target`: the writer's pid lets
    `stored -r` remove the file of a dead writer at once (temp_owner)."""
    d, base = os.path.split(target)
    return os.path.join(d, f"{TEMP_PREFIX}{base}.{os.getpid()}.{os.urandom(4).hex()}")


_TEMP_OWNER = re.compile(r"\.(\d{1,10})\.[0-9a-f]{8}\Z")


def temp_owner(name: str) -> int | None:
    """The pid of the process that wrote temp file `name` (temp_name's
    form), or None for a name of another form."""
    m = _TEMP_OWNER.search(name) if name.startswith(TEMP_PREFIX) else None
    return int(m.group(1)) if m else None


@contextlib.contextmanager
def atomic_write(target: str, *, durable: bool = True, fsync_directory: bool = True,
                 mode: int = 0o640) -> Iterator:
    """Yield a binary file object; on clean exit it replaces `target`.
    fsync_directory=False leaves the directory fsync to the caller, who
    swaps several files in one directory and fsyncs it once after the last."""
    tmp = temp_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
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


class Batch:
    """Atomic replacements made durable together, for a run that swaps
    hundreds of small files (reconstruct): each new content is written now
    beside its target under a temp name; commit() syncs each filesystem
    once, renames every temp over its target in the order written, and syncs
    once more. Two syncs per batch instead of an fsync per file and
    directory; until commit() every target still holds its old content."""

    def __init__(self) -> None:
        self._pending: list[tuple[str, str]] = []
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._pending)

    def write(self, target: str, data: bytes) -> None:
        tmp = temp_name(target)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        try:
            write_all(fd, data)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        self._pending.append((tmp, target))
        self.bytes += len(data)

    def commit(self) -> None:
        if not self._pending:
            return
        dirs = {os.path.dirname(t) or "." for _tmp, t in self._pending}
        try:
            _sync_devices(dirs)  # the new contents, and anything linked before them
            crashpoint("batch:before-replace")
            for i, (tmp, target) in enumerate(self._pending):
                os.replace(tmp, target)
                self._pending[i] = ("", target)
                crashpoint("batch:after-replace")
        except BaseException:
            self.abort()
            raise
        self._pending.clear()
        self.bytes = 0
        _sync_devices(dirs)  # the renames

    def abort(self) -> None:
        """Remove the temps not yet swapped in; their targets are untouched."""
        for tmp, _target in self._pending:
            if tmp:  # "" once swapped in
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        self._pending.clear()
        self.bytes = 0


def _sync_devices(dirs: set[str]) -> None:
    one_per_device = {os.stat(d).st_dev: d for d in dirs}
    for d in one_per_device.values():
        sync_filesystem(d)


def put_file(target: str, data: bytes, batch: Batch | None = None, *,
             fsync_directory: bool = True) -> None:
    """Replace `target` with `data` atomically: now and durably, or as part
    of `batch`."""
    if batch is not None:
        batch.write(target, data)
        return
    with atomic_write(target, fsync_directory=fsync_directory) as f:
        f.write(data)


def write_file_atomic(target: str, data: bytes, *, durable: bool = True,
                      mode: int = 0o640) -> None:
    with atomic_write(target, durable=durable, mode=mode) as f:
        f.write(data)


_READ_MAX = 0x7FFFF000  # Linux caps one read(2) at this many bytes


def _read_fd(fd: int, size: int) -> bytes:
    data = os.read(fd, size + 1)
    if len(data) <= size and size < _READ_MAX:  # a short read of a regular file: EOF
        return data
    chunks = [data]
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


class Reader:
    """Reads whole files, fetching ahead when the cache is cold.

    Given the files in the order they will probably be read, it tries the
    first with a non-blocking read. If that is not cached, each read keeps
    the next `depth` files open with POSIX_FADV_WILLNEED, so the disk has
    many requests in flight instead of one (about 4x on a cold virtio disk:
    docs/performance.md). A warm cache pays for the one probe only. Files
    read out of order, or never, are fine: a read passes over the skipped
    ones and closes them. Files are opened relative to a descriptor of
    their directory, kept until close(): a path walk of a deep spool path
    costs ~1 µs more a file (docs/performance.md)."""

    def __init__(self, expected: list[tuple[str, int]], depth: int = 128,
                 cold: bool | None = None) -> None:
        self._order = [p for p, _size in expected]
        self._pos = {p: i for i, p in enumerate(self._order)}
        self._next = 0
        self._open: dict[str, int] = {}  # opened ahead, not yet read
        self._dirs: dict[str, int] = {}
        self._ahead: collections.deque[str] = collections.deque()  # opened, in order
        self._depth = depth
        self._cold = (bool(self._order) and not _cached(self._order[0])) if cold is None else cold

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self, path: str, size: int) -> bytes:
        if self._cold:
            self._pass_over(self._pos.get(path, -1))
            self._fill()
        fd = self._open.pop(path, None)
        if fd is None:
            fd = self._open_file(path)
        try:
            return _read_fd(fd, size)
        finally:
            os.close(fd)

    def close(self) -> None:
        for fd in self._open.values():
            os.close(fd)
        self._open.clear()
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    def _open_file(self, path: str) -> int:
        d, sep, name = path.rpartition("/")
        d = d or sep or "."
        dfd = self._dirs.get(d)
        if dfd is None:
            dfd = self._dirs[d] = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd)

    def _pass_over(self, pos: int) -> None:
        while self._ahead and self._pos[self._ahead[0]] < pos:
            fd = self._open.pop(self._ahead.popleft(), None)
            if fd is not None:
                os.close(fd)

    def _fill(self) -> None:
        while len(self._open) < self._depth and self._next < len(self._order):
            path = self._order[self._next]
            self._next += 1
            try:
                fd = self._open_file(path)
            except OSError:
                continue  # the read will say what is wrong
            self._open[path] = fd
            self._ahead.append(path)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)


def _cached(path: str) -> bool:
    """Whether the first byte of `path` is in the page cache (RWF_NOWAIT);
    True where that cannot be asked, so nothing changes there."""
    if not hasattr(os, "RWF_NOWAIT"):
        return True
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return True
    try:
        os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT)
        return True
    except BlockingIOError:
        return False
    except OSError:  # EOPNOTSUPP and the like: a filesystem that cannot say
        return True
    finally:
        os.close(fd)


_libc = None


def libc():
    """The C library this process already has loaded (a ctypes handle), or
    None where it cannot be had. find_library("c") would run ldconfig and a
    compiler in subprocesses (2.6 ms, 40 forks)."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            _libc = False
    return _libc or None


def sync_filesystem(path: str) -> None:
    """Flush everything on the filesystem holding `path`: one call for a batch.

    syncfs(2) where libc has it, else sync(2)."""
    c = libc()
    if c is not None and hasattr(c, "syncfs"):
        fd = os.open(path, os.O_RDONLY)
        try:
            if c.syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    os.sync()


def leftover_temp_files(top: str) -> list[str]:
    """Temp files a crashed writer left behind (used by checks and tests)."""
    found: list[str] = []
    for dirpath, _dirs, files in os.walk(top):
        found.extend(os.path.join(dirpath, f) for f in files if f.startswith(TEMP_PREFIX))
    return found
