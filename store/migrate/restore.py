"""imsrestore's engine: a backup stream (backup.py) back into mailboxes.

Each mailbox of the backup (those the objects name, renamed by `to`) is
restored as its frames arrive, in batches each made durable before the
next. Into a mailbox that does not exist or never held a message, its
UIDVALIDITY, UIDs and UIDNEXT are kept, with its ACL, keywords and quota
limit. Into one with the same UIDVALIDITY (a restore run again, or an
incremental backup over a full one), a message already there under its
UID gets the backup's flags and keywords, and new ones keep their UIDs
when still free. Anything else is appended under new UIDs and the
mapping reported. A message already there (same GUID and INTERNALDATE)
is never stored twice, and nothing is expunged: a restore never removes
mail. Every frame is checked (CRC, and SHA-256 of each message) before
its message is stored; at the first damage the restore stops with
everything before it stored, and says where."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from .. import index, logmsg
from ..crash import crashpoint
from ..fsutil import open_nofollow, write_file_atomic
from ..layout import INBOX, USER_NS, canonical, child_prefix, is_descendant, user_of
from ..mailbox import FlagMode, Incoming, Store, UidRanges
from . import backup, per_second
from .present import Present

BATCH_MESSAGES = 500
BATCH_BYTES = 32 << 20


@dataclass
class RestoredMailbox:
    name: str  # in the backup
    target: str
    messages: int = 0  # stored
    updated: int = 0  # already there: flags and keywords set from the backup
    skipped: int = 0  # already there
    uids_kept: bool = False
    complete: bool = False  # its MEND frame was read
    remapped: dict[int, int] = field(default_factory=dict)  # backup UID -> UID here
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {**self.__dict__, "remapped": {str(k): v for k, v in self.remapped.items()}}


@dataclass
class RestoreResult:
    source: str
    header: dict = field(default_factory=dict)
    mailboxes: list[RestoredMailbox] = field(default_factory=list)
    damage: str | None = None
    damage_offset: int | None = None
    damage_why: str | None = None
    seconds: float = 0.0
    config: list[tuple[str, str]] = field(default_factory=list)  # (file, what was done)

    def as_json(self) -> dict:
        n = sum(m.messages for m in self.mailboxes)
        return {"source": self.source, "backup": self.header, "seconds": round(self.seconds, 3),
                "messages": n, "messages_per_second": per_second(n, self.seconds),
                "damage": self.damage,
                "damage_offset": self.damage_offset,
                "config": [{"file": f, "action": a} for f, a in self.config],
                "mailboxes": [m.as_json() for m in self.mailboxes]}


def mapper(objects: list[str], to: str | None) -> Callable[[str], str | None]:
    """backup name -> target name, or None when the objects leave it out.
    With `to`, the one object's name is replaced by it (`user/joe` to
    `user/ann`: user/joe/Sent to user/ann/Sent)."""
    wanted = [canonical(o) for o in objects]
    if to is not None:
        to = canonical(to)

    def target(name: str) -> str | None:
        if wanted and not any(name == w or is_descendant(name, w) for w in wanted):
            return None
        if to is None:
            return name
        w = wanted[0]
        if name == w:
            return to
        return canonical(child_prefix(to) + name[len(child_prefix(w)):])
    return target


class _Target:
    """One mailbox being restored: its batch and what is already there."""

    def __init__(self, store: Store, meta: dict, target: str, check_quota: bool):
        self.store, self.meta, self.check_quota = store, meta, check_quota
        self.res = RestoredMailbox(meta["name"], target)
        self.keywords = meta.get("keywords", [])
        self.batch: list[Incoming] = []
        self.batch_uids: list[int] = []
        self.size = 0
        self.updates: dict[tuple[int, tuple[str, ...]], list[int]] = {}
        created = False
        if not store.exists(target):
            partition = meta.get("partition", "primary")
            if partition not in store.layout.config.partitions():
                partition = "primary"
            store.create(target, partition, acl=_acl_for(meta.get("acl") or None,
                                                         meta["name"], target))
            created = True
        idx = store.read_settled(target)
        # the same UIDVALIDITY: the mailbox restored before (a restore run
        # again, an incremental over a full) or one that took the same
        # second's; the first UID holding another message tells them apart
        keep = idx.header.uidvalidity == meta["uidvalidity"]
        if not keep:
            keep = store.adopt_uids(target, uidvalidity=meta["uidvalidity"])
        self.keep = keep
        self.present = Present(idx.records)
        self.created = created
        self.header = idx.header

    def add(self, m: backup.Message) -> None:
        kws = tuple(k for i, k in enumerate(self.keywords) if m.keywords >> i & 1)
        if self.keep and self.present.holds_other(m.uid, m.guid):
            self.keep = False  # the UIDVALIDITY was another mailbox's: new UIDs from here
        there = self.present.match(m.uid if self.keep else None, m.guid, m.internaldate)
        if there is not None:
            if there.uid != m.uid:
                self.res.remapped[m.uid] = there.uid
                self.res.skipped += 1
                return
            now = (there.flags, sorted(index.keyword_names(self.header, there.keywords)))
            if now != (m.flags, sorted(kws)):
                self.updates.setdefault((m.flags, kws), []).append(m.uid)
                self.res.updated += 1
            else:
                self.res.skipped += 1
            return
        self.batch.append(Incoming(m.data, m.flags, kws, m.internaldate,
                                   m.uid if self.keep and m.uid else None))
        self.batch_uids.append(m.uid)
        self.size += len(m.data)
        if len(self.batch) >= BATCH_MESSAGES or self.size >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        got = self.store.append_incoming(self.res.target, self.batch,
                                         check_quota=self.check_quota)
        for old, new in zip(self.batch_uids, got, strict=True):
            if old and old != new:  # (0: a UID the stream gave that no mailbox can hold)
                self.res.remapped[old] = new
        self.res.messages += len(got)
        self.batch, self.batch_uids, self.size = [], [], 0

    def finish(self) -> None:
        self.flush()
        crashpoint("restore:before-finish")
        for (flags, kws), uids in self.updates.items():
            self.store.store_flags(self.res.target, uids, flags, list(kws), FlagMode.SET)
        if self.keep:
            self.store.adopt_uids(self.res.target, uidnext=self.meta["uidnext"])
        uidvalidity = self.store.header(self.res.target).uidvalidity
        remapped = self.res.remapped
        for user, ranges in self.meta.get("seen_by", {}).items():
            # ranges stay ranges: only the few UIDs that moved are looked at one by one
            seen = UidRanges(ranges)
            moved = [u for u in remapped if u in seen]
            seen = seen.minus(moved).union(remapped[u] for u in moved)
            self.store.set_seen(user, self.res.target, uidvalidity, add=seen)
        self.res.uids_kept = self.keep and not self.res.remapped
        self._restore_limit()
        self.res.complete = True

    def _restore_limit(self) -> None:
        """The backup's quota limits (bytes, messages) on the target's quota
        root: each set when the root has none (or the mailbox is new here);
        an existing, different limit stays when it is the stricter one, and a
        note says so."""
        root = self.store.entry(self.res.target).quotaroot if self.meta.get("quotaroot") else ""
        if not root:
            return
        for key, column, unit in (("quota_limit", "limit_bytes", "bytes"),
                                 ("quota_messages", "limit_messages", "messages")):
            want = self.meta.get(key)
            if want is None:
                continue
            q = next(iter(self.store.quotas(root)), None)
            have = q[column] if q else None
            if have is None or self.created or want < have:
                if unit == "bytes":
                    self.store.set_quota(root, want)
                else:
                    self.store.set_quota(root, q["limit_bytes"] if q else None, want)
            elif have != want:
                self.res.notes.append(f"quota root {root} keeps its limit of {have} {unit}, "
                                      f"stricter than the backup's {want}")


def _acl_for(acl: dict[str, str] | None, name: str, target: str) -> dict[str, str] | None:
    """The backup's ACL, the owner's entry moved to the new owner when the
    mailbox changes users (None: the default ACL)."""
    if acl is None:
        return None
    old, new = user_of(name), user_of(target)
    if old and new and old != new and old in acl:
        acl = dict(acl)
        acl[new] = acl.pop(old)
    return acl


def restore(store: Store, f: BinaryIO, source: str, *, objects: list[str] | None = None,
            to: str | None = None, check_quota: bool = True,
            progress: Callable[[int], None] | None = None,
            with_config: bool = False) -> RestoreResult:
    res = RestoreResult(source)
    target_of = mapper(objects or [], to)
    start = time.monotonic()
    current: _Target | None = None
    skipping = False
    try:
        for offset, kind, value in backup.read_frames(f, source):
            if kind == backup.MAGIC:
                res.header = value
            elif kind == backup.MBOX:
                target = target_of(value["name"])
                skipping = target is None
                if target is not None:
                    current = _Target(store, value, target, check_quota)
                    res.mailboxes.append(current.res)
            elif kind == backup.MESG and not skipping:
                if current is None:
                    raise backup.Damaged("a message outside any mailbox", offset, source)
                current.add(value)
                if progress:
                    progress(1)
            elif kind == backup.MEND and current is not None and not skipping:
                current.finish()
                current = None
            elif kind == backup.SUBS:
                _subscriptions(store, value, target_of, res)
            elif kind == backup.CONF and with_config:
                _config(store, value["files"], res)
    except backup.Damaged as e:
        res.damage, res.damage_offset, res.damage_why = str(e), e.offset, e.why
        if current is not None:
            current.flush()  # every message before the damage verified: keep them
    finally:
        res.seconds = time.monotonic() - start
    n = sum(m.messages for m in res.mailboxes)
    if res.damage:
        logmsg.log("migrate", logmsg.RESTORE_DAMAGED, source=source, offset=res.damage_offset,
                   why=res.damage_why, messages=n)
    else:
        logmsg.log("migrate", logmsg.RESTORE_DONE, messages=n, mailboxes=len(res.mailboxes),
                   source=source)
    return res


def _config(store: Store, files: dict[str, str], res: RestoreResult) -> None:
    """The backup's config files: each written where the store has none; one
    the store has, different, is kept and the backup's written beside it as
    NAME.restored for the administrator to compare (never replaced)."""
    for name, text in sorted(files.items()):
        path = os.path.join(store.layout.config_dir, name)
        data = text.encode("utf-8", "surrogateescape")
        mode = 0o600 if name == "passwd" else 0o640
        try:
            with open_nofollow(path, "rb") as fh:
                have: bytes | None = fh.read()
        except FileNotFoundError:
            have = None
        if have is None:
            write_file_atomic(path, data, mode=mode)
            res.config.append((name, "restored"))
        elif have != data:
            write_file_atomic(path + ".restored", data, mode=mode)
            res.config.append((name, f"kept the store's; the backup's is {name}.restored"))
        else:
            res.config.append((name, "the same"))


def _subscriptions(store: Store, value: dict, target_of, res: RestoreResult) -> None:
    restored = {m.name: m.target for m in res.mailboxes}
    inbox = restored.get(f"{USER_NS}/{value['user']}/{INBOX}")
    if inbox is None:
        return
    user = user_of(inbox)
    if user is None:
        return
    for name in value.get("mailboxes", []):
        target = target_of(name)
        if target is not None and name in restored:
            store.set_subscribed(user, target, True)
