"""Reading a source tree as its scan saw it (imsimport: the supplier of a
migration is not trusted, and may be changing the tree while it is read).

O_NOFOLLOW guards a path's last component only: a directory renamed away
after the scan and replaced by a symlink (`.Z/new -> /etc`) would make the
import read whatever the importing account can read. So the scan notes the
device and inode of every directory and file it lists, and a read walks
from the source's top one component at a time (openat with O_NOFOLLOW and
O_DIRECTORY), each directory checked against the scan, then opens the file
the same way and checks it too: a mismatch is SourceChanged, never a read
of something else."""

from __future__ import annotations

import os
import stat
import weakref
from collections import OrderedDict

from ..errors import StoreError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO put where a message was must not hang the import at open
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
KEEP_OPEN = 8  # directory descriptors kept between reads (the folders being read)

FileId = tuple[int, int]  # (st_dev, st_ino)


class SourceChanged(StoreError):
    """A directory or file of the source is no longer the one the scan saw."""


class Tree:
    """The directories and files a scan saw under `top`, by (device, inode)."""

    def __init__(self, top: str):
        self.top = os.path.abspath(top)
        self.ids: dict[str, FileId] = {}
        self._fds: OrderedDict[str, int] = OrderedDict()
        weakref.finalize(self, _close_all, self._fds)
        if not self.note_dir(self.top):
            raise SourceChanged(f"{self.top} is not a directory")

    def note_dir(self, path: str) -> bool:
        """Remember a directory as the scan sees it; False when `path` is
        not a real directory (a symlink, a file, gone)."""
        try:
            st = os.lstat(path)
        except OSError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            return False
        self.ids[os.path.abspath(path)] = (st.st_dev, st.st_ino)
        return True

    def open(self, path: str, file_id: FileId) -> int:
        """A descriptor of the regular file at `path` that the scan saw as
        `file_id`. FileNotFoundError when it is gone (a live Maildir renames
        files), SourceChanged when anything on the way is not what was seen."""
        d, name = os.path.split(os.path.abspath(path))
        dfd = self._dir(d)
        fd = os.open(name, _FILE_FLAGS, dir_fd=dfd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != file_id:
            os.close(fd)
            raise SourceChanged(f"{path} is no longer the file the scan listed (replaced "
                                "meanwhile): the import stops; nothing else was read")
        os.set_blocking(fd, True)
        return fd

    def _dir(self, d: str) -> int:
        fd = self._fds.get(d)
        if fd is not None:
            self._fds.move_to_end(d)
            return fd
        rel = os.path.relpath(d, self.top)
        if rel.startswith(".."):
            raise SourceChanged(f"{d} is outside the source {self.top}")
        fd = self._checked(os.open(self.top, _DIR_FLAGS), self.top)
        here = self.top
        for part in ([] if rel == "." else rel.split(os.sep)):
            here = os.path.join(here, part)
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                raise SourceChanged(f"{here} is no longer the directory the scan listed "
                                    f"({e.strerror}): the import stops; nothing else was "
                                    "read") from None
            finally:
                os.close(fd)
            fd = self._checked(nfd, here)
        self._fds[d] = fd
        if len(self._fds) > KEEP_OPEN:
            os.close(self._fds.popitem(last=False)[1])
        return fd

    def _checked(self, fd: int, path: str) -> int:
        st = os.fstat(fd)
        if self.ids.get(path) != (st.st_dev, st.st_ino):
            os.close(fd)
            raise SourceChanged(f"{path} is no longer the directory the scan listed (replaced "
                                "meanwhile): the import stops; nothing else was read")
        return fd


def _close_all(fds: OrderedDict[str, int]) -> None:
    for fd in fds.values():
        os.close(fd)
    fds.clear()
