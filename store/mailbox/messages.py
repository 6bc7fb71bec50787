"""Message I/O: append (one durable or a batch), flags, expunge, erase, read.

Order of writes, so that a crash never loses mail and never leaves an index
record without its file: message file (temp, fsync, link to `<uid>.msg`),
then the index, then the database. What a crash can leave behind (a file
without a record, usage that is off) is what reconstruct repairs.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .. import index, logmsg
from ..db import QUOTA
from ..errors import OverQuotaError, StoreError
from ..fsutil import fsync_dir, sync_filesystem, temp_name, write_all
from ..layout import canonical
from ..message import guid, parse_header
from .quota import quota_add

if TYPE_CHECKING:
    from .store import Store

BUCKET_SIZE = 1000


def bucket_of(uid: int) -> str:
    return f"{uid // BUCKET_SIZE:02d}"


def message_path(mailbox_dir: str, uid: int) -> str:
    return os.path.join(mailbox_dir, bucket_of(uid), f"{uid}.msg")


def append_many(store: Store, name: str, messages: Iterable[bytes], *, flags: int = 0,
                internaldate: int | None = None, batch: bool = True) -> list[int]:
    """Deliver several messages under one lock. batch=True makes the whole
    batch durable with one filesystem sync instead of one fsync each.
    Returns their UIDs."""
    name = canonical(name)
    datas = list(messages)
    if not datas:
        return []
    with store.lock(name):
        entry = store.entry(name)
        qroot = entry.quotaroot
        need = sum(len(d) for d in datas)
        if qroot:
            q = store.db.record(QUOTA, qroot)
            if q is not None and q.limit_bytes is not None and q.used_bytes + need > q.limit_bytes:
                raise OverQuotaError(
                    f"mailbox {name} is over quota: root {qroot} uses {q.used_bytes} "
                    f"of {q.limit_bytes} bytes, message needs {need}")
        mdir = store.mailbox_dir(name, entry)
        header = index.read_header(mdir, name)
        when = int(time.time()) if internaldate is None else internaldate
        uid = header.uidnext
        modseq = header.highest_modseq
        entries = []
        for data in datas:
            uid = _write_message_file(mdir, uid, data, durable=not batch)
            parsed = parse_header(data)
            if data and not parsed.fields and parsed.header_size == 0:
                logmsg.log("mailbox", logmsg.MSG_UNPARSABLE, uid=uid, mailbox=name)
            modseq += 1
            rec = index.Record(uid, flags, when, parsed.sent_date, len(data),
                               parsed.header_size, 0, 0, modseq, guid(data))
            entries.append((rec, parsed.fields))
            uid += 1
        if batch:
            sync_filesystem(mdir)
        written = index.append(mdir, header, entries)
        if qroot:
            store.db.write(lambda t: quota_add(t, qroot, need, len(written)), durable=False)
    return [r.uid for r in written]


def set_flags(store: Store, name: str, uid: int, flags: int, mode: str = "set") -> int:
    """mode: set, add or remove. Returns the new flags."""
    name = canonical(name)
    with store.lock(name):
        mdir = store.mailbox_dir(name)
        idx = store.read_clean(name, mdir)
        pos = next((i for i, r in enumerate(idx.records) if r.uid == uid), None)
        if pos is None:
            raise StoreError(f"no message with UID {uid} in {name}")
        rec = idx.records[pos]
        new = {"set": flags, "add": rec.flags | flags, "remove": rec.flags & ~flags}[mode]
        modseq = idx.header.highest_modseq + 1
        index.update_record(mdir, idx.header, pos, rec.with_flags(new, modseq))
        return new


def expunge(store: Store, name: str) -> list[int]:
    """Move records flagged \\Deleted to store.exp. Returns their UIDs."""
    name = canonical(name)
    with store.lock(name):
        entry = store.entry(name)
        mdir = store.mailbox_dir(name, entry)
        idx = store.read_clean(name, mdir)
        gone = [r for r in idx.records if r.flags & index.FLAG_DELETED]
        if not gone:
            return []
        keep = [r for r in idx.records if not r.flags & index.FLAG_DELETED]
        index.write_expunged(mdir, index.read_expunged(mdir, name) + gone)
        idx.header.highest_modseq += 1
        index.write_index(mdir, idx.header, keep)
        qroot = entry.quotaroot
        if qroot:
            store.db.write(lambda t: quota_add(t, qroot, -sum(r.size for r in gone), -len(gone)))
    return [r.uid for r in gone]


def erase_expunged(store: Store, name: str) -> int:
    """Delete the files of expunged messages, then empty store.exp.
    Files go first: a crash in between leaves records without files
    (harmless), never files without records (which would come back)."""
    name = canonical(name)
    with store.lock(name):
        mdir = store.mailbox_dir(name)
        recs = index.read_expunged(mdir, name)
        for r in recs:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(message_path(mdir, r.uid))
        if recs:
            index.write_expunged(mdir, [])
            logmsg.log("mailbox", logmsg.EXPUNGED_ERASED, count=len(recs), mailbox=name)
        return len(recs)


def read_message(store: Store, name: str, uid: int) -> bytes:
    with open(message_path(store.mailbox_dir(canonical(name)), uid), "rb") as f:
        return f.read()


def _write_message_file(mdir: str, uid: int, data: bytes, *, durable: bool) -> int:
    """Write `<uid>.msg` without ever replacing an existing file: a file
    left by a crashed delivery keeps its UID and this message takes the next.
    Returns the UID used."""
    while True:
        bdir = os.path.join(mdir, bucket_of(uid))
        if not os.path.isdir(bdir):
            os.makedirs(bdir, exist_ok=True)
            if durable:
                fsync_dir(mdir)
        tmp = temp_name(os.path.join(bdir, str(uid)))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        try:
            write_all(fd, data)
            if durable:
                os.fsync(fd)
        except BaseException:  # a full disk must not keep the half-written file
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        try:
            os.link(tmp, os.path.join(bdir, f"{uid}.msg"))
        except FileExistsError:
            os.unlink(tmp)
            uid += 1
            continue
        os.unlink(tmp)
        if durable:
            fsync_dir(bdir)
        return uid
