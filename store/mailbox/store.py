"""Store: one open store (its layout, settings and mailbox database) and the
facade every command uses. The work is in lifecycle.py, messages.py,
acl.py and quota.py; this class holds what they share: the database
handle, the per-mailbox locks and the folder lookups."""

from __future__ import annotations

import builtins
import re
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

from .. import index, locks
from ..db import FOLDER, Database, FolderEntry
from ..db import verify as dbverify
from ..db.lmdbfiles import has_data
from ..errors import NoSuchMailboxError, StoreError
from ..fsutil import refuse_symlinks
from ..layout import Layout, canonical
from . import acl, lifecycle, messages, peruser, quota, subscriptions
from .uidranges import UidRanges

LOCK_TIMEOUT = locks.MAILBOX_TIMEOUT


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
        self._empty_db_dir: Any = None  # a tempfile.TemporaryDirectory while one is open

    @classmethod
    def open(cls, root: str, *, readonly: bool = False) -> Store:
        return cls(Layout.open(root), readonly=readonly)

    @classmethod
    def over(cls, layout: Layout, db: Database) -> Store:
        """A store working on another copy of its database (a check's
        scratch copy): closing it closes `db`."""
        store = cls(layout)
        store._db = db
        return store

    @classmethod
    def init(cls, root: str) -> Store:
        return cls(Layout.init(root))

    @property
    def db(self) -> Database:
        """The mailbox database, opened on first use. A read-only store
        (check-only runs) never creates one: a missing database reads as empty."""
        if self._db is None:
            path = self.layout.mboxlist_dir
            if self.readonly and not has_data(path):
                import tempfile  # here, like shutil and uuid: start-up (docs/performance.md)

                self._empty_db_dir = tempfile.TemporaryDirectory(prefix="msgstore-empty-db-")
                self._db = Database(self._empty_db_dir.name, create=True)
            else:
                self._db = Database(path, readonly=self.readonly)
        return self._db

    def check_readable(self) -> None:
        """Read every page of the database in a child before this process
        maps it (db.verify.check_readable), for commands that must not be
        aborted by a damaged page. A caller that has opened the database
        already has mapped it: the check is skipped, and its handle is left
        open (no LMDB handle may cross the fork, so checking would mean
        closing it behind the caller's back)."""
        if self._db is None:
            dbverify.check_readable(self.layout.mboxlist_dir)

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

    def lock(self, *names: str, timeout: float = LOCK_TIMEOUT):
        """Per-mailbox locks, taken in sorted order so two callers never
        deadlock (locks.mailboxes)."""
        return locks.mailboxes(self.layout.lock_dir, names, timeout)

    # -- lookup -----------------------------------------------------------------
    def entry(self, name: str) -> FolderEntry:
        name = canonical(name)
        e = self.db.record(FolderEntry, name)
        if e is None:
            raise NoSuchMailboxError(f"mailbox {name} does not exist")
        return e

    def mailbox_dir(self, name: str, entry: FolderEntry | None = None) -> str:
        """The mailbox's directory; a symlink anywhere on the way from its
        partition is refused (symlink_error): the store is never a way out
        of the store."""
        entry = entry or self.entry(name)
        mdir = self.layout.mailbox_dir(name, entry.partition)
        refuse_symlinks(self.layout.partition_path(entry.partition), mdir.rstrip("/"))
        return mdir

    def exists(self, name: str) -> bool:
        return self.db.get(FOLDER, canonical(name)) is not None

    def header(self, name: str) -> index.Header:
        name = canonical(name)
        return index.read_header(self.mailbox_dir(name), name)

    def read(self, name: str) -> index.Index:
        name = canonical(name)
        return index.read_index(self.mailbox_dir(name), name)

    def read_clean(self, name: str, mdir: str) -> index.Index:
        """The index, or its first problem raised: for writers that rewrite it
        (under the mailbox lock). An append cut off before its header update
        is finished first, as the next append would (looked for only when
        the index shows a problem: no extra read for every flag change)."""
        idx = index.read_index(mdir, name)
        if idx.problems and index.settle(mdir, name):
            idx = index.read_index(mdir, name)
        if idx.problems:
            raise idx.problems[0]
        return idx

    def settle(self, name: str) -> bool:
        """Finish an append a kill cut off before its header update (under
        the lock), as the next append would; True when there was one."""
        name = canonical(name)
        with self.lock(name):
            return index.settle(self.mailbox_dir(name), name)

    def read_settled(self, name: str) -> index.Index:
        """The index after any cut-off append is finished (under the lock):
        for a reader that goes on to write, as an import or restore run again."""
        name = canonical(name)
        with self.lock(name):
            return self.read_clean(name, self.mailbox_dir(name))

    def list(self, pattern: str | None = None) -> list[MailboxInfo]:
        rx = pattern_to_regex(pattern) if pattern else None
        out = []
        for name, e in self.db.records(FolderEntry):
            if rx and not rx.match(name):
                continue
            info = MailboxInfo(name, e.partition, e.uidvalidity, e.acl, e.quotaroot, None, None)
            try:
                h = index.read_header(self.layout.mailbox_dir(name, info.partition), name)
                info.messages, info.bytes = h.exists, h.total_bytes
            except (OSError, StoreError) as err:
                info.error = str(err)
            out.append(info)
        return out

    # -- the work, in its modules -----------------------------------------------
    def create(self, name: str, partition: str = "primary",
               acl: dict[str, str] | None = None, *, actor: str | None = None) -> FolderEntry:
        return lifecycle.create(self, name, partition, acl, actor=actor)

    def delete(self, name: str) -> None:
        lifecycle.delete(self, name)

    def children(self, name: str) -> builtins.list[str]:
        return lifecycle.children(self, name)

    def rename(self, old: str, new: str, partition: str | None = None, *,
               actor: str | None = None) -> builtins.list[tuple[str, str]]:
        return lifecycle.rename(self, old, new, partition, actor=actor)

    def append(self, name: str, data: bytes, *, flags: int = 0,
               internaldate: int | None = None) -> int:
        """Deliver one message durably (fsync per message). Returns its UID."""
        return messages.append_many(self, name, [data], flags=flags, internaldate=internaldate,
                                    batch=False)[0]

    def append_many(self, name: str, datas: Iterable[bytes], *, flags: int = 0,
                    internaldate: int | None = None, batch: bool = True,
                    lock_timeout: float | None = None) -> builtins.list[int]:
        return messages.append_many(self, name, datas, flags=flags, internaldate=internaldate,
                                    batch=batch, lock_timeout=lock_timeout)

    def append_steps(self, name: str, datas: Iterable[bytes], *, internaldate: int | None = None,
                     lock_timeout: float | None = None, check_quota: bool = True
                     ) -> Generator[str, None, builtins.list[int]]:
        """An append whose caller makes it durable (group commit): see
        messages.append_steps."""
        return messages.append_steps(self, name, datas, internaldate=internaldate,
                                     lock_timeout=lock_timeout, check_quota=check_quota)

    def append_stream(self, name: str, sources: Iterable[BinaryIO], *, flags: int = 0,
                      internaldate: int | None = None, batch: bool = False,
                      lock_timeout: float | None = None) -> builtins.list[int]:
        """Deliver messages read from file objects, streamed (never whole in
        memory); durable one by one, or with batch=True all with one sync."""
        return messages.append_stream(self, name, sources, flags=flags,
                                      internaldate=internaldate, batch=batch,
                                      lock_timeout=lock_timeout)

    def append_incoming(self, name: str, items: Iterable[messages.Incoming], *,
                        check_quota: bool = True) -> builtins.list[int]:
        """Append messages each with its own flags, keywords, date and UID
        (imports and restores); one sync for the lot."""
        return messages.append_incoming(self, name, items, check_quota=check_quota)

    def adopt_uids(self, name: str, *, uidvalidity: int | None = None,
                   uidnext: int | None = None) -> bool:
        return lifecycle.adopt_uids(self, name, uidvalidity=uidvalidity, uidnext=uidnext)

    def set_flags(self, name: str, uid: int, flags: int,
                  mode: messages.FlagMode = messages.FlagMode.SET) -> int:
        return messages.set_flags(self, name, uid, flags, mode)

    def store_flags(self, name: str, uids: Iterable[int], flags: int, keywords: builtins.list[str],
                    mode: messages.FlagMode = messages.FlagMode.SET, *, keep: int = 0
                    ) -> tuple[index.Header, builtins.list[index.Record]]:
        return messages.store_flags(self, name, uids, flags, keywords, mode, keep=keep)

    def claim_recent(self, name: str) -> tuple[index.Header, int]:
        return messages.claim_recent(self, name)

    def expunge(self, name: str, uids: Iterable[int] | None = None) -> builtins.list[int]:
        return messages.expunge(self, name, uids)

    def erase_expunged(self, name: str, expunged_before: int | None = None) -> int:
        return messages.erase_expunged(self, name, expunged_before)

    def message(self, name: str, uid: int, limit: int = -1) -> bytes:
        return messages.read_message(self, name, uid, limit)

    def message_reader(self, name: str) -> messages.MessageReader:
        return messages.MessageReader(self, name)

    def get_acl(self, name: str) -> dict[str, str]:
        return dict(self.entry(name).acl)

    def set_acl(self, name: str, identifier: str, rights: str) -> dict[str, str]:
        return acl.set_acl(self, name, identifier, rights)

    def rights(self, name: str, user: str) -> str:
        """`user`'s rights on `name` (RFC 4314 letters)."""
        name = canonical(name)
        return acl.rights(self.entry(name).acl, user, name)

    def shared_with(self, user: str) -> builtins.list[str]:
        return acl.shared_with(self, user)

    def seen(self, user: str, name: str, uidvalidity: int) -> UidRanges:
        return peruser.seen(self, user, name, uidvalidity)

    def set_seen(self, user: str, name: str, uidvalidity: int,
                 add: Iterable[int] | UidRanges = (),
                 remove: Iterable[int] | UidRanges = ()) -> UidRanges:
        return peruser.set_seen(self, user, name, uidvalidity, add, remove)

    def seen_by_mailbox(self) -> dict[str, dict[str, tuple[int, builtins.list[builtins.list[int]]]]]:
        """Every per-user \\Seen record: mailbox -> user -> (UIDVALIDITY, ranges)."""
        return peruser.by_mailbox(self)

    def subscriptions(self, user: str) -> builtins.list[str]:
        return subscriptions.subscriptions(self, user)

    def set_subscribed(self, user: str, name: str, on: bool) -> None:
        subscriptions.set_subscribed(self, user, name, on)

    def quotas(self, root: str | None = None) -> builtins.list[dict]:
        return quota.quotas(self, root)

    def set_quota(self, root: str, limit_bytes: int | None,
                  limit_messages: int | None = quota.KEEP) -> dict:
        return quota.set_quota(self, root, limit_bytes, limit_messages)
