"""Message I/O: append (one durable or a batch), flags, expunge, erase, read.

Order of writes, so that a crash never loses mail and never leaves an index
record without its file: message file (temp, fsync, link to `<uid>.msg`),
then the index, then the database. What a crash can leave behind (a file
without a record, usage that is off) is what reconstruct repairs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from .. import index, logmsg
from ..crash import crashpoint
from ..db import FOLDER, FolderEntry, Txn
from ..errors import (
    EmptyMessageError,
    KeywordError,
    ProgrammingError,
    StoreError,
    symlink_error,
)
from ..fsutil import (
    fsync_dir,
    is_real_dir,
    open_nofollow,
    refuse_symlinks,
    sync_filesystem,
    temp_name,
    write_all,
)
from ..layout import canonical
from ..message import ParsedHeader, guid, parse_header
from .quota import check_room, quota_add, quota_add_delivered
from .uidranges import MAX_UID

if TYPE_CHECKING:
    from .store import Store

R = TypeVar("R")
BUCKET_SIZE = 1000


def bucket_of(uid: int) -> str:
    return f"{uid // BUCKET_SIZE:02d}"


def message_path(mailbox_dir: str, uid: int) -> str:
    return os.path.join(mailbox_dir, bucket_of(uid), f"{uid}.msg")


def append_many(store: Store, name: str, messages: Iterable[bytes], *, flags: int = 0,
                internaldate: int | None = None, batch: bool = True,
                lock_timeout: float | None = None) -> list[int]:
    """Deliver several messages under one lock. batch=True makes the whole
    batch durable with one filesystem sync instead of one fsync each.
    Returns their UIDs."""
    return run_steps(append_steps(store, name, messages, flags=flags, internaldate=internaldate,
                              durability=BATCH if batch else EACH, lock_timeout=lock_timeout))


# how an append makes its writes durable
EACH = "each"  # fsync of every file and directory, then of the index
BATCH = "batch"  # one filesystem sync for the message files, then the index fsynced
SHARED = "shared"  # the caller's: the steps yield where a sync is due (group commit)


def append_steps(store: Store, name: str, messages: Iterable[bytes], *, flags: int = 0,
                 internaldate: int | None = None, durability: str = SHARED,
                 lock_timeout: float | None = None, check_quota: bool = True
                 ) -> Generator[str, None, list[int]]:
    """An append as steps, for a caller that shares syncs among deliveries
    (lmtpd): with SHARED durability it yields the mailbox directory once
    its message files are written and once their index records are, and
    the caller makes the filesystem durable before resuming it (files
    before the records that name them). The mailbox lock is held from the
    first step to the last. Returns the UIDs (StopIteration.value)."""
    name = canonical(name)
    datas = list(messages)
    if not datas:
        return []

    def place(mdir: str, uid: int) -> list[Placed]:
        out = []
        for data in datas:
            uid = _write_message_file(mdir, uid, data, durable=durability == EACH)
            out.append(Placed(uid, len(data), parse_header(data), guid(data)))
            uid += 1
        return out
    return (yield from _append_steps(store, name, sum(len(d) for d in datas), len(datas), place,
                                     flags=flags, internaldate=internaldate,
                                     durability=durability, lock_timeout=lock_timeout,
                                     check_quota=check_quota))


def run_steps(steps: Generator[str, None, R]) -> R:
    """Drive steps in this thread: a filesystem sync wherever they ask for
    one (EACH and BATCH appends sync by themselves and never ask)."""
    try:
        path = next(steps)
        while True:
            sync_filesystem(path)
            path = steps.send(None)
    except StopIteration as e:
        return e.value


@dataclass
class Placed:
    """A message file in place under its UID, with what its record needs."""

    uid: int
    size: int
    parsed: ParsedHeader
    digest: bytes
    flags: int | None = None  # None: the append's flags, internaldate
    internaldate: int | None = None
    keywords: int = 0


@dataclass
class Incoming:
    """A message arriving with its own flags, keywords, date and perhaps
    UID (an import or a restore)."""

    data: bytes
    flags: int = 0
    keywords: tuple[str, ...] = ()
    internaldate: int | None = None
    uid: int | None = None  # kept when still free (at or above UIDNEXT), else the next


def append_incoming(store: Store, name: str, items: Iterable[Incoming], *,
                    check_quota: bool = True) -> list[int]:
    """Append messages each with its own metadata, all durable with one
    filesystem sync. Keywords new to the mailbox enter its table first (it
    only grows, so their bits stay valid). check_quota=False stores past
    the quota limit (an administrator's explicit override); usage still
    counts. Returns the UIDs given, in order."""
    name = canonical(name)
    items = list(items)
    if not items:
        return []
    names = list(dict.fromkeys(k for it in items for k in it.keywords))
    header = ensure_keywords(store, name, names) if names else None

    def place(mdir: str, uid: int) -> list[Placed]:
        uids = []
        for it in items:  # every UID first: none is written unless all fit
            if it.uid is not None and uid < it.uid <= MAX_UID:
                uid = it.uid
            uids.append(uid)
            uid += 1
        if uids and uids[-1] > MAX_UID:
            raise StoreError(f"mailbox {name} has no UIDs left for {len(items)} messages "
                             f"(UIDs end at {MAX_UID}): restore or import into a new mailbox")
        uid = uids[0] if uids else uid
        out = []
        for it in items:
            if it.uid is not None and uid < it.uid <= MAX_UID:
                uid = it.uid
            if not _is_copy_of(message_path(mdir, uid), it.data):
                uid = _write_message_file(mdir, uid, it.data, durable=False)
            if it.internaldate is not None:
                # the file's mtime is its arrival date, as Dovecot's Maildir keeps it: a file a
                # killed import or restore left, which reconstruct adopts, keeps its date
                os.utime(message_path(mdir, uid), (it.internaldate, it.internaldate),
                         follow_symlinks=False)
            kbits = index.keyword_bits(header, list(it.keywords))[0] if header else 0
            out.append(Placed(uid, len(it.data), parse_header(it.data), guid(it.data),
                              it.flags, it.internaldate, kbits))
            uid += 1
        return out
    return run_steps(_append_steps(store, name, sum(len(it.data) for it in items), len(items),
                                   place,
                                   flags=0, internaldate=None, durability=BATCH,
                                   lock_timeout=None, check_quota=check_quota))


def _is_copy_of(path: str, data: bytes) -> bool:
    """Whether `path` is a file (no symlink) holding exactly `data`: left by
    this same import or restore when it was killed before the message's
    record was written, and taken as the message's file when run again
    (else the next reconstruct would adopt it as a second copy)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as f:
        return os.fstat(f.fileno()).st_size == len(data) and f.read() == data


def ensure_keywords(store: Store, name: str, names: list[str]) -> index.Header:
    """The mailbox's header once its keyword table holds every one of
    `names` (added at the end when missing: the index is rewritten)."""
    name = canonical(name)
    _check_keywords(names)
    with store.lock(name):
        mdir = store.mailbox_dir(name)
        idx = store.read_clean(name, mdir)
        header = idx.header
        _bits, missing = index.keyword_bits(header, names)
        if missing:
            _grow_keywords(header, missing, name)
            index.write_index(mdir, header, list(idx.records))
        return header


def _check_keywords(names: list[str]) -> None:
    bad = [k for k in names if not index.valid_keyword(k)]
    if bad:
        raise KeywordError(f"invalid keyword {bad[0]!r}")


def _grow_keywords(header: index.Header, missing: list[str], name: str) -> None:
    missing = list(dict.fromkeys(missing))
    if len(header.keywords) + len(missing) > index.MAX_KEYWORDS:
        raise KeywordError(f"mailbox {name} holds {index.MAX_KEYWORDS} keywords, "
                           f"no room for {' '.join(missing)}")
    header.keywords = header.keywords + missing


@dataclass
class Spooled:
    """A message streamed into a temp file of its partition before the lock."""

    tmp: str
    size: int
    digest: bytes
    parsed: ParsedHeader


STREAM_CHUNK = 1 << 20
HEADER_MAX = 1 << 20  # bytes of a streamed message kept to find and parse its header


def spool(directory: str, src: BinaryIO, *, durable: bool) -> Spooled:
    """Copy `src` into a temp file in `directory` a chunk at a time (memory
    stays at a chunk plus the header), hashing it on the way; fsync it when
    durable. The temp file is removed on any failure."""
    tmp = temp_name(os.path.join(directory, "incoming"))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    h, size, head = hashlib.sha256(), 0, bytearray()
    try:
        while chunk := src.read(STREAM_CHUNK):
            _named(write_all, fd, chunk, path=tmp)
            h.update(chunk)
            size += len(chunk)
            if len(head) < HEADER_MAX:
                head += chunk[:HEADER_MAX - len(head)]
        if durable:
            _named(os.fsync, fd, path=tmp)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    return Spooled(tmp, size, h.digest(), parse_header(bytes(head)))


def append_stream(store: Store, name: str, sources: Iterable[BinaryIO], *, flags: int = 0,
                  internaldate: int | None = None, batch: bool = False,
                  lock_timeout: float | None = None) -> list[int]:
    """Deliver messages read from file objects without holding any of them
    in memory: each is streamed into a temp file of the mailbox's partition
    first (outside the lock), then linked into place under the lock. An
    empty message is refused (EmptyMessageError) before anything is stored."""
    name = canonical(name)
    entry = store.entry(name)
    directory = store.layout.partition_path(entry.partition)
    spooled: list[Spooled] = []
    try:
        for src in sources:
            spooled.append(spool(directory, src, durable=not batch))
            if spooled[-1].size == 0:
                raise EmptyMessageError(f"message {len(spooled)} for {name} is empty; "
                                        "nothing was delivered")
        if not spooled:
            return []

        def place(mdir: str, uid: int) -> list[Placed]:
            out = []
            for sp in spooled:
                uid = _link_message_file(mdir, uid, sp.tmp, durable=not batch)
                out.append(Placed(uid, sp.size, sp.parsed, sp.digest))
                uid += 1
            return out
        return run_steps(_append_steps(store, name, sum(sp.size for sp in spooled), len(spooled),
                                       place,
                                   flags=flags, internaldate=internaldate,
                                   durability=BATCH if batch else EACH,
                                   lock_timeout=lock_timeout))
    finally:
        for sp in spooled:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sp.tmp)


def _append_steps(store: Store, name: str, need: int, count: int,
                  place: Callable[[str, int], list[Placed]], *, flags: int,
                  internaldate: int | None, durability: str, lock_timeout: float | None,
                  check_quota: bool = True) -> Generator[str, None, list[int]]:
    """Under the mailbox lock: refuse what the quota does not allow, have
    `place` put the message files in place from UIDNEXT on, then the index
    records (after the files are durable), then the quota usage. Yields
    where a SHARED sync is due."""
    locked = store.lock(name) if lock_timeout is None else store.lock(name, timeout=lock_timeout)
    with locked:
        entry = store.entry(name)
        qroot = entry.quotaroot
        if qroot and check_quota:
            check_room(store, qroot, name, need, count)
        mdir = store.mailbox_dir(name, entry)
        for path in index.symlinked_files(mdir):  # before a message file is placed
            raise symlink_error(path, "file")
        header = index.read_header(mdir, name)
        when = int(time.time()) if internaldate is None else internaldate
        modseq = header.highest_modseq
        entries = []
        placed = list(place(mdir, header.uidnext))
        reserve_modseq(store, name, entry, modseq + len(placed))
        for p in placed:
            if p.size and not p.parsed.fields and p.parsed.header_size == 0:
                logmsg.log("mailbox", logmsg.MSG_UNPARSABLE, uid=p.uid, mailbox=name)
            modseq += 1
            rec = index.Record(p.uid, flags if p.flags is None else p.flags,
                               when if p.internaldate is None else p.internaldate,
                               p.parsed.sent_date, p.size, p.parsed.header_size, 0, 0, modseq,
                               p.digest, p.keywords)
            entries.append((rec, p.parsed.fields))
        if durability == SHARED:  # the files durable before their records, then the records
            yield mdir
            crashpoint("append:after-file-sync")
            written = index.append(mdir, header, entries, durable=False)
            yield mdir
        else:
            if durability == BATCH:
                sync_filesystem(mdir)
            crashpoint("append:after-file-sync")
            written = index.append(mdir, header, entries)
        crashpoint("append:after-header")
        if qroot:
            store.db.write(lambda t: quota_add_delivered(t, qroot, need, len(written)),
                           durable=False)
    return [r.uid for r in written]


class FlagMode(StrEnum):
    """How store_flags changes the flags it is given (IMAP STORE FLAGS, +FLAGS, -FLAGS)."""

    SET = "set"
    ADD = "add"
    REMOVE = "remove"


def set_flags(store: Store, name: str, uid: int, flags: int, mode: FlagMode = FlagMode.SET) -> int:
    """Returns the new flags."""
    _header, matched = store_flags(store, name, [uid], flags, [], mode)
    if not matched:
        raise StoreError(f"no message with UID {uid} in {canonical(name)}")
    return matched[0].flags


def store_flags(store: Store, name: str, uids: Iterable[int], flags: int,
                keywords: list[str], mode: FlagMode = FlagMode.SET, *, keep: int = 0
                ) -> tuple[index.Header, list[index.Record]]:
    """Set, add or remove (mode) system flags and keywords on the messages
    of `uids` that are there; "set" leaves the flags of `keep` as they are
    (a shared mailbox's \\Seen, kept per user elsewhere). All changed
    records share one new modseq and
    one fsync. A keyword new to the mailbox enters its table, which rewrites
    the index whole. Returns the header and the records of `uids` there
    (changed or not), as they now are."""
    name = canonical(name)
    try:
        mode = FlagMode(mode)
    except ValueError:  # a typo ("ad") would otherwise have removed flags
        raise ProgrammingError(f"flag mode {mode!r}: not one of {', '.join(FlagMode)}") from None
    _check_keywords(keywords)
    with store.lock(name):
        mdir = store.mailbox_dir(name)
        idx = store.read_clean(name, mdir)
        header = idx.header
        kbits, missing = index.keyword_bits(header, keywords)
        grow = bool(missing) and mode is not FlagMode.REMOVE
        if grow:
            _grow_keywords(header, missing, name)
            kbits, _ = index.keyword_bits(header, keywords)
        want = set(uids)
        modseq = header.highest_modseq + 1
        reserve_modseq(store, name, None, modseq)
        changes, matched = [], []
        for pos, rec in enumerate(idx.records):
            if rec.uid not in want:
                continue
            matched.append(pos)
            if mode is FlagMode.SET:
                new_f, new_k = (rec.flags & keep) | (flags & ~keep), kbits
            elif mode is FlagMode.ADD:
                new_f, new_k = rec.flags | flags, rec.keywords | kbits
            else:  # FlagMode.REMOVE
                new_f, new_k = rec.flags & ~flags, rec.keywords & ~kbits
            if (new_f, new_k) != (rec.flags, rec.keywords):
                changes.append((pos, rec.with_flags(new_f, modseq, new_k)))
        records = list(idx.records)
        for pos, rec in changes:
            records[pos] = rec
        if grow:
            header.highest_modseq = modseq
            index.write_index(mdir, header, records)
        elif changes:
            index.update_records(mdir, header, changes)
        return header, [records[pos] for pos in matched]


MODSEQ_BLOCK = 1000  # modseqs reserved in the folder entry at a time: one database write


def reserve_modseq(store: Store, name: str, entry: FolderEntry | None, upto: int) -> None:
    """Before an index gives out modseqs up to `upto`: the folder entry's
    mark (modseq_reserved) is raised past it, a block at a time, so that an
    index rebuilt from scratch starts above every modseq a client saw. The
    caller holds the mailbox lock."""
    if entry is None:
        entry = store.entry(name)
    if upto <= entry.modseq_reserved:
        return

    def txn(t: Txn) -> None:
        e = t.record(FolderEntry, name)
        if e is not None and e.modseq_reserved < upto:
            e.modseq_reserved = upto + MODSEQ_BLOCK
            t.put(FOLDER, name, e)
    store.db.write(txn)
    entry.modseq_reserved = upto + MODSEQ_BLOCK


def claim_recent(store: Store, name: str) -> tuple[index.Header, int]:
    """For a session selecting read-write: (the header, the first UID that
    is \\Recent to it). Messages from there on are no longer recent to any
    later session (RFC 3501: one session sees a message as recent)."""
    name = canonical(name)
    with store.lock(name):
        mdir = store.mailbox_dir(name)
        header = index.read_header(mdir, name)
        first = header.recent_uid
        if first < header.uidnext:
            header.recent_uid = header.uidnext
            index.write_header(mdir, header, durable=False)  # advisory: a crash may show some again
        return header, first


def expunge(store: Store, name: str, uids: Iterable[int] | None = None) -> list[int]:
    """Move records flagged \\Deleted (and, given `uids`, among those) to
    store.exp. Returns their UIDs."""
    name = canonical(name)
    only = None if uids is None else set(uids)
    with store.lock(name):
        return expunge_locked(store, name, lambda r: bool(r.flags & index.FLAG_DELETED)
                              and (only is None or r.uid in only))


def expunge_locked(store: Store, name: str, pick: Callable[[index.Record], bool]) -> list[int]:
    """Move the records `pick` chooses to store.exp, under the mailbox lock
    the caller holds (an expiry or an administrator's move expunges what it
    chose, \\Deleted or not). A UID store.exp already lists (an expunge cut
    off between store.exp and the index, run again) is not listed twice."""
    entry = store.entry(name)
    mdir = store.mailbox_dir(name, entry)
    idx = store.read_clean(name, mdir)
    gone = [r for r in idx.records if pick(r)]
    if not gone:
        return []
    out = {r.uid for r in gone}
    keep = [r for r in idx.records if r.uid not in out]
    reserve_modseq(store, name, entry, idx.header.highest_modseq + 1)
    before = index.read_expunged(mdir, name)
    listed = {r.uid for r in before}
    now = int(time.time())
    index.write_expunged(mdir, before + [index.as_expunged(r, now) for r in gone
                                         if r.uid not in listed])
    crashpoint("expunge:after-exp")
    idx.header.highest_modseq += 1
    index.write_index(mdir, idx.header, keep)
    crashpoint("expunge:after-index")
    qroot = entry.quotaroot
    if qroot:
        store.db.write(lambda t: quota_add(t, qroot, -sum(r.size for r in gone), -len(gone)))
    return [r.uid for r in gone]


def erase_expunged(store: Store, name: str, expunged_before: int | None = None) -> int:
    """Delete the files of expunged messages (those expunged before
    `expunged_before` only, given one: store.cleanupage), then drop their
    records from store.exp. Files go first: a crash in between leaves
    records without files (harmless), never files without records (which
    would come back)."""
    name = canonical(name)
    with store.lock(name):
        mdir = store.mailbox_dir(name)
        recs = index.read_expunged(mdir, name)
        gone = [r for r in recs if expunged_before is None or r.cache_offset <= expunged_before]
        for bucket in {bucket_of(r.uid) for r in gone}:  # never unlink through a symlink
            refuse_symlinks(mdir, os.path.join(mdir, bucket))
        for r in gone:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(message_path(mdir, r.uid))
        if gone:
            erased = {r.uid for r in gone}
            index.write_expunged(mdir, [r for r in recs if r.uid not in erased])
            logmsg.log("mailbox", logmsg.EXPUNGED_ERASED, count=len(gone), mailbox=name)
        return len(gone)


class MessageReader:
    """Reads one mailbox's message files, many in a row (a server's FETCH):
    the mailbox directory is looked up, and each bucket checked for a
    symlink, once, not for every message."""

    def __init__(self, store: Store, name: str):
        self.mdir = store.mailbox_dir(canonical(name))
        self._checked: set[str] = set()
        self.gone = 0  # files each() found erased

    def each(self, records: Iterable[index.Record]) -> Iterator[tuple[index.Record, bytes]]:
        """(record, bytes) of each record read earlier whose file is still
        there: one expunged and erased since is passed over, and counted in
        `gone` (an export or backup of a live mailbox)."""
        for rec in records:
            try:
                data = self.read(rec.uid)
            except FileNotFoundError:
                self.gone += 1
                continue
            yield rec, data

    def read(self, uid: int, limit: int = -1) -> bytes:
        bucket = bucket_of(uid)
        if bucket not in self._checked:
            refuse_symlinks(self.mdir, os.path.join(self.mdir, bucket))
            self._checked.add(bucket)
        with open_nofollow(message_path(self.mdir, uid)) as f:
            return f.read(limit)


def read_message(store: Store, name: str, uid: int, limit: int = -1) -> bytes:
    """The message's bytes (its first `limit` only, given one)."""
    return MessageReader(store, name).read(uid, limit)


def _write_message_file(mdir: str, uid: int, data: bytes, *, durable: bool) -> int:
    """Write `<uid>.msg` without ever replacing an existing file: a file
    left by a crashed delivery keeps its UID and this message takes the next.
    Returns the UID used."""
    bdir = _bucket_dir(mdir, uid, durable=durable)
    tmp = temp_name(os.path.join(bdir, str(uid)))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    try:
        _named(write_all, fd, data, path=tmp)
        if durable:
            _named(os.fsync, fd, path=tmp)
        os.close(fd)
        fd = -1
        return _link_message_file(mdir, uid, tmp, durable=durable)
    finally:  # a full disk must not keep the half-written file either
        if fd >= 0:
            os.close(fd)
        os.unlink(tmp)


def _named(fn: Callable[..., object], *args: object, path: str) -> None:
    """fn(*args); an OSError it raises names `path` (a full disk says which
    file it stopped: os.write's own error names none)."""
    try:
        fn(*args)
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, e.strerror, path) from None
        raise


def _bucket_dir(mdir: str, uid: int, *, durable: bool) -> str:
    """The bucket directory of `uid`, made if missing; a symlink there is
    refused (a message is never written through one)."""
    bdir = os.path.join(mdir, bucket_of(uid))
    if not is_real_dir(bdir):
        os.makedirs(bdir, exist_ok=True)
        if durable:
            fsync_dir(mdir)
    return bdir


def _link_message_file(mdir: str, uid: int, tmp: str, *, durable: bool) -> int:
    """Link a spooled temp file to `<uid>.msg`, never over an existing file
    (a crashed delivery's file keeps its UID; this one takes the next).
    Returns the UID used; the temp file stays for the caller to remove."""
    while True:
        bdir = _bucket_dir(mdir, uid, durable=durable)
        try:
            os.link(tmp, os.path.join(bdir, f"{uid}.msg"))
        except FileExistsError:
            uid += 1
            continue
        if durable:
            fsync_dir(bdir)
        return uid
