"""The files of an LMDB environment, and what is done to them as files:
their names, the meta-page check every opener makes first, putting a
damaged environment aside, and installing a copy (a snapshot) in its place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct

from ..fsutil import fsync_dir, temp_name

DATA_FILE = "data.mdb"
LOCK_FILE = "lock.mdb"

# LMDB's meta page, twice at the head of data.mdb (page 0 and page 1), as
# lmdb 0.9 lays it out on a 64-bit machine (mdb.c: MDB_page header, MDB_meta).
# Read only to check, before mapping the file, that it is as long as its
# newest transaction says: pages mapped past the end of a truncated file
# kill the reader with SIGBUS.
#  off size field
#    0   16 page header  pgno (8), pad (2), flags (2), lower/upper (4)
#   16    4 mm_magic     0xBEEFC0DE
#   20    4 mm_version
#   24    8 mm_address
#   32    8 mm_mapsize
#   40    4 md_pad       of the free-page DB: the page size (mm_psize)
#   44   44 rest of the free-page DB record (MDB_db, 48 bytes in all)
#   88   48 main DB record
#  136    8 mm_last_pg   last page in use
#  144    8 mm_txnid     transaction that wrote this meta
LMDB_META = struct.Struct("<16sIIQQI44s48sQQ")
assert LMDB_META.size == 152
LMDB_MAGIC = 0xBEEFC0DE


def data_path(env_dir: str) -> str:
    return os.path.join(env_dir, DATA_FILE)


def has_data(env_dir: str) -> bool:
    return os.path.isfile(data_path(env_dir))


def data_size(env_dir: str) -> int:
    """data.mdb's size in bytes (0 when there is none)."""
    try:
        return os.path.getsize(data_path(env_dir))
    except OSError:
        return 0


def data_file_problem(env_dir: str) -> str | None:
    """Why data.mdb in `env_dir` cannot be mapped safely (shorter than its
    newest transaction's last page), or None. Anything else odd about the
    meta pages is left for LMDB's own open to report."""
    with open(data_path(env_dir), "rb") as f:
        first = f.read(LMDB_META.size)
        if not first:
            return None  # a new, empty file: LMDB initialises it
        if len(first) < LMDB_META.size:
            return f"{len(first)} bytes, shorter than one meta page"
        m0 = LMDB_META.unpack(first)
        psize = m0[5]
        if m0[1] != LMDB_MAGIC or psize < 512 or psize > 65536 or psize & (psize - 1):
            return None
        f.seek(psize)
        second = f.read(LMDB_META.size)
        size = os.fstat(f.fileno()).st_size  # after the metas: the file only grows before them
    if len(second) < LMDB_META.size:
        return f"{size} bytes, shorter than its two meta pages ({2 * psize} bytes)"
    m1 = LMDB_META.unpack(second)
    newest = max((m for m in (m0, m1) if m[1] == LMDB_MAGIC), key=lambda m: m[9])
    need = (newest[8] + 1) * psize
    if size < need:
        return (f"{size} bytes, but its last transaction ({newest[9]}) uses pages up to "
                f"{newest[8]}: expected at least {need} bytes")
    return None


def put_aside(env_dir: str, dest_dir: str) -> bool:
    """Move data.mdb into `dest_dir` (which must exist) and remove lock.mdb
    (readers' slots: nothing to keep). False when there was no data.mdb."""
    moved = False
    if has_data(env_dir):
        os.rename(data_path(env_dir), data_path(dest_dir))
        moved = True
    discard_lock_file(env_dir)
    return moved


def discard(env_dir: str) -> None:
    """Remove data.mdb and lock.mdb (a damaged copy that is not kept)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(data_path(env_dir))
    discard_lock_file(env_dir)


def discard_lock_file(env_dir: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(env_dir, LOCK_FILE))


def fsync_data(env_dir: str) -> None:
    fd = os.open(data_path(env_dir), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def install(src_env_dir: str, env_dir: str) -> None:
    """Copy the data.mdb of `src_env_dir` into `env_dir` durably: a temp
    file, fsync, rename, fsync of the directory. The caller holds the daemon
    lock and has put any old environment aside."""
    os.makedirs(env_dir, exist_ok=True)
    tmp = temp_name(data_path(env_dir))
    try:
        shutil.copyfile(data_path(src_env_dir), tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:  # a full disk must not keep a half copy of the database
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    discard_lock_file(env_dir)
    os.replace(tmp, data_path(env_dir))
    fsync_dir(env_dir)
