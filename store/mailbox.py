"""The mailbox API every command uses: create, delete, rename, append,
flags, expunge, erase, list, ACL and quota.

Order of writes, so that a crash never loses mail and never leaves an index
record without its file: message file (temp, fsync, link to `<uid>.msg`),
then the index, then the database. What a crash can leave behind (a file
without a record, usage that is off) is what reconstruct repairs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from . import index, locks, logmsg
from .db import Database, Txn
from .errors import (
    CorruptionError,
    LockedError,
    MailboxExistsError,
    NoSuchMailboxError,
    OverQuotaError,
    StoreError,
    UsageError,
)
from .fsutil import TEMP_PREFIX, fsync_dir, sync_filesystem, write_all
from .layout import (
    INBOX,
    USER_NS,
    Layout,
    canonical,
    check_userid,
    is_bucket,
    is_descendant,
    is_inbox,
    parent,
    user_of,
)
from .message import guid, parse_header

BUCKET_SIZE = 1000
LOCK_TIMEOUT = 60.0
RIGHTS_RE = re.compile(r"^[a-z]*$")
ALL_RIGHTS = "lrswipkxtecda"


def bucket_of(uid: int) -> str:
    return f"{uid // BUCKET_SIZE:02d}"


def message_path(mailbox_dir: str, uid: int) -> str:
    return os.path.join(mailbox_dir, bucket_of(uid), f"{uid}.msg")


def quota_root_for(name: str) -> str:
    user = user_of(name)
    return f"{USER_NS}/{user}" if user else ""


def quota_root_mailbox(root: str) -> str:
    """The mailbox whose index header keeps the spool's copy of a quota
    root's limit: a user's INBOX for `user/<id>`, else the root's own
    mailbox (which may not exist: then only the database has the limit)."""
    return canonical(root)


@dataclass
class MailboxInfo:
    name: str
    partition: str
    uidvalidity: int
    acl: dict[str, str]
    quotaroot: str
    messages: int | None
    bytes: int | None
    error: str | None = None

    def as_json(self) -> dict:
        return {"name": self.name, "partition": self.partition, "messages": self.messages,
                "bytes": self.bytes, "uidvalidity": self.uidvalidity, "acl": self.acl,
                "quotaroot": self.quotaroot, **({"error": self.error} if self.error else {})}


def pattern_to_regex(pattern: str) -> re.Pattern:
    """IMAP LIST wildcards: `*` matches anything, `%` anything but `/`."""
    out = "".join(".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in pattern)
    return re.compile(f"^{out}$")


class Store:
    """One open store: its layout, settings and mailbox database."""

    def __init__(self, layout: Layout, *, readonly: bool = False):
        self.layout = layout
        self.readonly = readonly
        self._db: Database | None = None
        self._empty_db_dir = None  # a tempfile.TemporaryDirectory while one is open

    @classmethod
    def open(cls, root: str, *, readonly: bool = False) -> Store:
        return cls(Layout.open(root), readonly=readonly)

    @classmethod
    def init(cls, root: str) -> Store:
        return cls(Layout.init(root))

    @property
    def db(self) -> Database:
        """The mailbox database. A read-only store (check-only runs) never
        creates one: a missing database reads as empty."""
        if self._db is None:
            path = self.layout.mboxlist_dir
            if self.readonly and not os.path.isfile(os.path.join(path, "data.mdb")):
                import tempfile  # here, like shutil and uuid below: start-up (docs/performance.md)

                self._empty_db_dir = tempfile.TemporaryDirectory(prefix="msgstore-empty-db-")
                self._db = Database(self._empty_db_dir.name, create=True)
            else:
                self._db = Database(path, readonly=self.readonly)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._empty_db_dir is not None:
            self._empty_db_dir.cleanup()
            self._empty_db_dir = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- locks ------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, *names: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
        """Per-mailbox locks, taken in sorted order so two callers never
        deadlock: a flock on lock/mbox-<sha1 of the name>.lock (store.locks)."""
        os.makedirs(self.layout.lock_dir, exist_ok=True)
        held: list[int] = []
        try:
            for name in sorted(set(names)):
                h = hashlib.sha1(name.encode()).hexdigest()[:20]
                fd = locks.acquire(os.path.join(self.layout.lock_dir, f"mbox-{h}.lock"), timeout)
                if fd is None:
                    raise LockedError(f"mailbox {name} is locked by another process "
                                      f"(waited {timeout:.0f} s)")
                held.append(fd)
            yield
        finally:
            for fd in reversed(held):
                locks.release(fd)

    # -- lookup -----------------------------------------------------------------
    def entry(self, name: str) -> dict:
        name = canonical(name)
        e = self.db.get("folder", name)
        if e is None:
            raise NoSuchMailboxError(f"mailbox {name} does not exist")
        return e

    def mailbox_dir(self, name: str, entry: dict | None = None) -> str:
        entry = entry or self.entry(name)
        return self.layout.mailbox_dir(name, entry["partition"])

    def exists(self, name: str) -> bool:
        return self.db.get("folder", canonical(name)) is not None

    def header(self, name: str) -> index.Header:
        name = canonical(name)
        return index.read_header(self.mailbox_dir(name), name)

    def read(self, name: str) -> index.Index:
        name = canonical(name)
        return index.read_index(self.mailbox_dir(name), name)

    def _read_clean(self, name: str, mdir: str) -> index.Index:
        idx = index.read_index(mdir, name)
        if idx.problems:
            raise idx.problems[0]
        return idx

    # -- create / delete / rename -------------------------------------------------
    def create(self, name: str, partition: str = "primary", acl: dict[str, str] | None = None) -> dict:
        name = canonical(name)
        self.layout.partition_path(partition)  # validates the partition
        user = user_of(name)
        if acl is None:
            acl = {user: ALL_RIGHTS} if user else {}
        with self.lock(name):
            if self.exists(name):
                raise MailboxExistsError(f"mailbox {name} already exists")
            mdir = self.layout.make_mailbox_dir(name, partition)
            if os.path.exists(os.path.join(mdir, index.IDX_FILE)):
                raise MailboxExistsError(f"mailbox {name} has an index on disk but no database "
                                         "entry; run reconstruct -m")
            qroot = quota_root_for(name)
            import uuid

            entry = {"partition": partition, "uniqueid": uuid.uuid4().hex,
                     "uidvalidity": int(time.time()) & 0xFFFFFFFF or 1, "acl": acl,
                     "quotaroot": qroot}
            header = index.Header(name=name, unique_id=bytes.fromhex(entry["uniqueid"]),
                                  uidvalidity=entry["uidvalidity"], quotaroot=qroot, acl=acl,
                                  last_update=int(time.time()))
            if qroot and name == quota_root_mailbox(qroot):  # the txn below makes the entry
                quota = self.db.get("quota", qroot) or {}
                header.carries_limit, header.quota_limit = True, quota.get("limit_bytes")
            index.create_index(mdir, header)

            def txn(t: Txn) -> None:
                t.put("folder", name, entry)
                if qroot and t.get("quota", qroot) is None:
                    t.put("quota", qroot, {"limit_bytes": None, "used_bytes": 0, "used_messages": 0})
                _lright_add(t, name, acl)
            self.db.write(txn)
        logmsg.log("mailbox", logmsg.MAILBOX_CREATED, mailbox=name, partition=partition)
        return entry

    def delete(self, name: str) -> None:
        name = canonical(name)
        with self.lock(name):
            entry = self.entry(name)
            mdir = self.mailbox_dir(name, entry)
            try:
                header = index.read_header(mdir, name)
                used = (header.exists, header.total_bytes)
            except (OSError, CorruptionError):
                used = (0, 0)
            # store.idx goes first: from then on the spool no longer has the mailbox.
            for f in index.INDEX_FILES:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(mdir, f))

            def txn(t: Txn) -> None:
                t.delete("folder", name)
                _lright_remove(t, name, entry.get("acl", {}))
                quota_add(t, entry.get("quotaroot", ""), -used[1], -used[0])
            self.db.write(txn)
            _remove_mailbox_files(mdir)
        logmsg.log("mailbox", logmsg.MAILBOX_DELETED, mailbox=name)

    def children(self, name: str) -> list[str]:
        prefix = name[: -len(INBOX)] if is_inbox(name) else name + "/"
        return [n for n, _ in self.db.items("folder", prefix) if is_descendant(n, name)]

    def rename(self, old: str, new: str, partition: str | None = None) -> list[tuple[str, str]]:
        """Rename (and/or move to another partition) a mailbox with its children.
        Returns the (old, new) name pairs moved."""
        old, new = canonical(old), canonical(new)
        if old == new and partition is None:
            raise UsageError(f"{old}: old and new names are the same")
        if is_inbox(old) != is_inbox(new):
            raise UsageError("an INBOX can only be renamed to another user's INBOX "
                             f"({old} -> {new})")
        if is_descendant(new, old):
            raise UsageError(f"cannot move {old} inside itself ({new})")
        entry = self.entry(old)
        src_part = entry["partition"]
        dst_part = partition or src_part
        self.layout.partition_path(dst_part)
        moved = [old] + self.children(old)
        pairs = [(n, new + n[len(old):] if not is_inbox(old)
                  else f"{USER_NS}/{user_of(new)}/" + n.split("/", 2)[2]) for n in moved]
        # the quota roots it touches are recounted: every mailbox they hold is
        # locked too, so that no delivery's usage is counted twice or missed
        roots = ({self.db.get("folder", o).get("quotaroot") for o, _n in pairs}
                 | {quota_root_for(n) for _o, n in pairs}) - {"", None}
        sharers = [m for r in roots for m, _e in self.db.read(lambda t, r=r: root_mailboxes(t, r))]
        with self.lock(*[n for pair in pairs for n in pair], *sharers):
            for _o, n in pairs:
                if (n != _o) and self.exists(n):
                    raise MailboxExistsError(f"mailbox {n} already exists")
            indexes = {}
            for o, _n in pairs:  # refuse before moving anything if an index is damaged
                indexes[o] = self._read_clean(o, self.layout.mailbox_dir(o, src_part))
            src = self.layout.mailbox_dir(old, src_part).rstrip("/")
            dst = self.layout.mailbox_dir(new, dst_part).rstrip("/")
            par = parent(new)
            dst_parent = (self.layout.make_mailbox_dir(par, dst_part) if par
                          else os.path.dirname(dst))
            if par is None:
                os.makedirs(dst_parent, exist_ok=True)
                _refuse_symlinks(self.layout.partition_path(dst_part), dst_parent)
            if os.path.lexists(dst) and src != dst:
                raise MailboxExistsError(f"{dst} already exists on disk; run reconstruct -m")
            if src != dst:
                if dst_part == src_part:
                    os.rename(src, dst)
                    fsync_dir(os.path.dirname(src))
                else:
                    _copy_tree_durable(src, dst)
                fsync_dir(dst_parent)
            entries = {o: self.db.get("folder", o) for o, _n in pairs}
            for o, n in pairs:
                e = entries[o]
                mdir = self.layout.mailbox_dir(n, dst_part)
                idx = indexes[o]
                e["partition"] = dst_part
                if quota_root_for(n) != quota_root_for(o):
                    e["quotaroot"] = quota_root_for(n)
                if user_of(n) != user_of(o) and user_of(o) in e["acl"]:
                    e["acl"][user_of(n)] = e["acl"].pop(user_of(o))
                idx.header.name, idx.header.quotaroot, idx.header.acl = n, e["quotaroot"], e["acl"]
                # a root's mailbox moved to be another root's (a user renamed) takes
                # its limit along; moved anywhere else it no longer keeps one
                if idx.header.carries_limit and (not e["quotaroot"]
                                                 or n != quota_root_mailbox(e["quotaroot"])):
                    idx.header.carries_limit, idx.header.quota_limit = False, None
                index.write_index(mdir, idx.header, idx.records)

            def txn(t: Txn) -> None:
                roots = set()
                for o, n in pairs:
                    old_e = t.get("folder", o)
                    _lright_remove(t, o, old_e.get("acl", {}))
                    t.delete("folder", o)
                    t.put("folder", n, entries[o])
                    _lright_add(t, n, entries[o]["acl"])
                    roots.update(r for r in (old_e.get("quotaroot"), entries[o]["quotaroot"]) if r)
                    h = indexes[o].header
                    if h.carries_limit:
                        q = t.get("quota", h.quotaroot) or {"used_bytes": 0, "used_messages": 0}
                        t.put("quota", h.quotaroot, {**q, "limit_bytes": h.quota_limit})
                for r in roots:
                    if t.get("quota", r) is None:
                        t.put("quota", r, {"limit_bytes": None, "used_bytes": 0, "used_messages": 0})
                    _recompute_quota(self, t, r)
            self.db.write(txn)
            if src != dst and dst_part != src_part:
                _remove_tree(src)
        logmsg.log("mailbox", logmsg.MAILBOX_RENAMED, old=old, new=new, partition=dst_part)
        return pairs

    # -- messages -----------------------------------------------------------------
    def append(self, name: str, data: bytes, *, flags: int = 0,
               internaldate: int | None = None) -> int:
        """Deliver one message durably (fsync per message). Returns its UID."""
        return self.append_many(name, [data], flags=flags, internaldate=internaldate,
                                batch=False)[0]

    def append_many(self, name: str, messages: Iterable[bytes], *, flags: int = 0,
                    internaldate: int | None = None, batch: bool = True) -> list[int]:
        """Deliver several messages under one lock. batch=True makes the whole
        batch durable with one filesystem sync instead of one fsync each."""
        name = canonical(name)
        datas = list(messages)
        if not datas:
            return []
        with self.lock(name):
            entry = self.entry(name)
            qroot = entry.get("quotaroot", "")
            need = sum(len(d) for d in datas)
            if qroot:
                q = self.db.get("quota", qroot) or {}
                limit = q.get("limit_bytes")
                if limit is not None and q.get("used_bytes", 0) + need > limit:
                    raise OverQuotaError(
                        f"mailbox {name} is over quota: root {qroot} uses {q.get('used_bytes', 0)} "
                        f"of {limit} bytes, message needs {need}")
            mdir = self.mailbox_dir(name, entry)
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
                self.db.write(lambda t: quota_add(t, qroot, need, len(written)), durable=False)
        return [r.uid for r in written]

    def set_flags(self, name: str, uid: int, flags: int, mode: str = "set") -> int:
        """mode: set, add or remove. Returns the new flags."""
        name = canonical(name)
        with self.lock(name):
            mdir = self.mailbox_dir(name)
            idx = self._read_clean(name, mdir)
            pos = next((i for i, r in enumerate(idx.records) if r.uid == uid), None)
            if pos is None:
                raise StoreError(f"no message with UID {uid} in {name}")
            rec = idx.records[pos]
            new = {"set": flags, "add": rec.flags | flags, "remove": rec.flags & ~flags}[mode]
            modseq = idx.header.highest_modseq + 1
            index.update_record(mdir, idx.header, pos, rec.with_flags(new, modseq))
            return new

    def expunge(self, name: str) -> list[int]:
        """Move records flagged \\Deleted to store.exp. Returns their UIDs."""
        name = canonical(name)
        with self.lock(name):
            entry = self.entry(name)
            mdir = self.mailbox_dir(name, entry)
            idx = self._read_clean(name, mdir)
            gone = [r for r in idx.records if r.flags & index.FLAG_DELETED]
            if not gone:
                return []
            keep = [r for r in idx.records if not r.flags & index.FLAG_DELETED]
            index.write_expunged(mdir, index.read_expunged(mdir, name) + gone)
            idx.header.highest_modseq += 1
            index.write_index(mdir, idx.header, keep)
            qroot = entry.get("quotaroot", "")
            if qroot:
                self.db.write(lambda t: quota_add(t, qroot, -sum(r.size for r in gone), -len(gone)))
        return [r.uid for r in gone]

    def erase_expunged(self, name: str) -> int:
        """Delete the files of expunged messages, then empty store.exp.
        Files go first: a crash in between leaves records without files
        (harmless), never files without records (which would come back)."""
        name = canonical(name)
        with self.lock(name):
            mdir = self.mailbox_dir(name)
            recs = index.read_expunged(mdir, name)
            for r in recs:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(message_path(mdir, r.uid))
            if recs:
                index.write_expunged(mdir, [])
                logmsg.log("mailbox", logmsg.EXPUNGED_ERASED, count=len(recs), mailbox=name)
            return len(recs)

    def message(self, name: str, uid: int) -> bytes:
        with open(message_path(self.mailbox_dir(canonical(name)), uid), "rb") as f:
            return f.read()

    # -- listing ----------------------------------------------------------------
    def list(self, pattern: str | None = None) -> list[MailboxInfo]:
        rx = pattern_to_regex(pattern) if pattern else None
        out = []
        for name, e in self.db.items("folder"):
            if rx and not rx.match(name):
                continue
            info = MailboxInfo(name, e.get("partition", ""), e.get("uidvalidity", 0),
                               e.get("acl", {}), e.get("quotaroot", ""), None, None)
            try:
                h = index.read_header(self.layout.mailbox_dir(name, info.partition), name)
                info.messages, info.bytes = h.exists, h.total_bytes
            except (OSError, StoreError) as err:
                info.error = str(err)
            out.append(info)
        return out

    # -- ACL ----------------------------------------------------------------------
    def get_acl(self, name: str) -> dict[str, str]:
        return dict(self.entry(name).get("acl", {}))

    def set_acl(self, name: str, identifier: str, rights: str) -> dict[str, str]:
        """Set an identifier's rights (empty rights remove it). Keeps lright
        and the index header's redundant copy in step."""
        name = canonical(name)
        if not identifier or any(c in identifier for c in "\t\n\r\x00/"):
            raise UsageError(f"invalid ACL identifier {identifier!r}")
        if not RIGHTS_RE.match(rights) or set(rights) - set(ALL_RIGHTS):
            raise UsageError(f"invalid rights {rights!r} (letters of {ALL_RIGHTS})")
        with self.lock(name):
            entry = self.entry(name)
            acl = dict(entry.get("acl", {}))
            if rights:
                acl[identifier] = "".join(c for c in ALL_RIGHTS if c in rights)
            else:
                acl.pop(identifier, None)
            mdir = self.mailbox_dir(name, entry)
            idx = self._read_clean(name, mdir)
            idx.header.acl = acl
            index.write_index(mdir, idx.header, idx.records)

            def txn(t: Txn) -> None:
                _lright_remove(t, name, entry.get("acl", {}))
                t.put("folder", name, {**entry, "acl": acl})
                _lright_add(t, name, acl)
            self.db.write(txn)
            return acl

    # -- quota ----------------------------------------------------------------
    def quotas(self, root: str | None = None) -> list[dict]:
        items = self.db.items("quota")
        return [{"root": r, "used_bytes": q.get("used_bytes", 0),
                 "used_messages": q.get("used_messages", 0), "limit_bytes": q.get("limit_bytes")}
                for r, q in items if root is None or r == root]

    def set_quota(self, root: str, limit_bytes: int | None) -> dict:
        """Set a quota root's limit (None: no limit). Mailboxes under the
        root take it as their quota root unless they have a deeper one."""
        root = _check_quota_root(root)
        if limit_bytes is not None and limit_bytes < 0:
            raise UsageError("quota limit must be a non-negative number of bytes")
        under = [n for n, _ in self.db.items("folder", prefix=root)
                 if n == root or n.startswith(root + "/") or quota_root_for(n) == root]
        with self.lock(*under):
            for n in under:
                e = self.db.get("folder", n)
                if len(e.get("quotaroot", "")) > len(root):
                    continue
                if e.get("quotaroot") != root:
                    mdir = self.layout.mailbox_dir(n, e["partition"])
                    idx = self._read_clean(n, mdir)
                    idx.header.quotaroot = root
                    index.write_index(mdir, idx.header, idx.records)
                    self.db.write(lambda t, n=n, e=e: t.put("folder", n, {**e, "quotaroot": root}))

            holder = quota_root_mailbox(root)
            if holder in under:  # the spool's copy of the limit, written first
                e = self.db.get("folder", holder)
                mdir = self.layout.mailbox_dir(holder, e["partition"])
                idx = self._read_clean(holder, mdir)
                idx.header.carries_limit, idx.header.quota_limit = True, limit_bytes
                index.write_index(mdir, idx.header, idx.records)

            def txn(t: Txn) -> dict:
                q = t.get("quota", root) or {"used_bytes": 0, "used_messages": 0}
                q["limit_bytes"] = limit_bytes
                t.put("quota", root, q)
                return _recompute_quota(self, t, root)
            return self.db.write(txn)


# ---- helpers ----------------------------------------------------------------

def _check_quota_root(root: str) -> str:
    if root.startswith(USER_NS + "/") and root.count("/") == 1:
        check_userid(root.split("/")[1])
        return root
    c = canonical(root)
    if c.startswith(USER_NS + "/"):
        raise UsageError(f"quota root {root!r}: user quota roots are spelled user/<id>")
    return c


def quota_add(t: Txn, root: str, nbytes: int, nmsgs: int) -> None:
    if not root:
        return
    q = t.get("quota", root) or {"limit_bytes": None, "used_bytes": 0, "used_messages": 0}
    q["used_bytes"] = max(0, q.get("used_bytes", 0) + nbytes)
    q["used_messages"] = max(0, q.get("used_messages", 0) + nmsgs)
    t.put("quota", root, q)


def mailbox_usage(store: Store, name: str, entry: dict, *, from_records: bool = False
                  ) -> tuple[int, int]:
    """(bytes, messages) of a mailbox: from its index header, or summed over
    its records (which must all verify)."""
    mdir = store.layout.mailbox_dir(name, entry["partition"])
    if from_records:
        idx = index.read_index(mdir, name)
        if idx.problems:
            raise idx.problems[0]
        return sum(r.size for r in idx.records), len(idx.records)
    h = index.read_header(mdir, name)
    return h.total_bytes, h.exists


def root_mailboxes(t: Txn, root: str) -> list[tuple[str, dict]]:
    """The folder entries whose quota root is `root`. A root contains its
    mailboxes (`user/<id>` its user's, a shared root itself and what is
    below it), so a prefix scan finds them all."""
    return [(n, e) for n, e in t.items("folder", prefix=root) if e.get("quotaroot") == root]


def _recompute_quota(store: Store, t: Txn, root: str) -> dict:
    used_b = used_m = 0
    for n, e in root_mailboxes(t, root):
        try:
            b, m = mailbox_usage(store, n, e)
        except (OSError, StoreError):
            continue
        used_b += b
        used_m += m
    q = t.get("quota", root) or {"limit_bytes": None}
    q.update(used_bytes=used_b, used_messages=used_m)
    t.put("quota", root, q)
    return {"root": root, **q}


def _lright_add(t: Txn, name: str, acl: dict[str, str]) -> None:
    for ident in acl:
        e = t.get("lright", ident) or {"mailboxes": []}
        if name not in e["mailboxes"]:
            e["mailboxes"] = sorted(e["mailboxes"] + [name])
            t.put("lright", ident, e)


def _lright_remove(t: Txn, name: str, acl: dict[str, str]) -> None:
    for ident in acl:
        e = t.get("lright", ident)
        if e and name in e["mailboxes"]:
            e["mailboxes"] = [m for m in e["mailboxes"] if m != name]
            if e["mailboxes"]:
                t.put("lright", ident, e)
            else:
                t.delete("lright", ident)


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
        tmp = os.path.join(bdir, f"{TEMP_PREFIX}{uid}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
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


def _remove_mailbox_files(mdir: str) -> None:
    """Remove a deleted mailbox's own files (buckets, index) but not its
    child mailboxes' directories."""
    import shutil

    try:
        entries = list(os.scandir(mdir))
    except FileNotFoundError:
        return
    for e in entries:
        if e.is_dir(follow_symlinks=False) and is_bucket(e.name):
            shutil.rmtree(e.path)
        elif not e.is_dir(follow_symlinks=False) and (e.name in index.INDEX_FILES
                                                       or e.name.startswith(TEMP_PREFIX)):
            os.unlink(e.path)
    with contextlib.suppress(OSError):
        os.rmdir(mdir)


def _refuse_symlinks(base: str, path: str) -> None:
    rel = os.path.relpath(path, base)
    cur = base
    for comp in rel.split(os.sep):
        cur = os.path.join(cur, comp)
        if os.path.islink(cur):
            raise StoreError(f"{cur} is a symlink; refusing to use it")


def _copy_tree_durable(src: str, dst: str) -> None:
    """Copy a mailbox tree to another partition: into a temp directory,
    fsync every file, then rename into place."""
    import shutil

    tmp = os.path.join(os.path.dirname(dst), f"{TEMP_PREFIX}{os.path.basename(dst)}")
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp, symlinks=True)
    for dirpath, _dirs, files in os.walk(tmp):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)
    os.rename(tmp, dst)


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(OSError):
        fsync_dir(os.path.dirname(path))


