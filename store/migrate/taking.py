"""imsbackup's engine: mailboxes into a backup stream (backup.py's format).

Hot: each mailbox's index is read under its lock (a moment), and its
messages are then read without it, so lmtpd and imapd go on; the backup
holds each mailbox as it was at that moment (a message expunged and
erased before its file was read is left out and counted). Incremental:
since a date (messages whose INTERNALDATE is at or after it, which for
delivered mail is when it arrived), or since a previous backup (every
message new or changed since: its modseq is above the mailbox's modseq
in that backup; a mailbox whose UIDVALIDITY changed goes in whole)."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from ..db import FolderEntry, QuotaEntry
from ..errors import NoSuchMailboxError, UsageError
from ..fsutil import open_nofollow
from ..layout import canonical, is_descendant, is_inbox, user_of
from ..mailbox import Store
from ..mailbox.quota import quota_root_mailbox
from . import backup, per_second


@dataclass
class BackupResult:
    mailboxes: int = 0
    messages: int = 0
    bytes: int = 0
    vanished: int = 0
    seconds: float = 0.0
    names: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {**self.__dict__, "seconds": round(self.seconds, 3),
                "messages_per_second": per_second(self.messages, self.seconds)}


def select(store: Store, objects: list[str]) -> list[str]:
    """The mailboxes the objects name, in name order: `/` all of them,
    `/<partition>` those on a partition, `/<partition>/<mailbox>` or
    `<mailbox>` a mailbox with the folders below it (`user/joe`: all of
    joe's mailboxes)."""
    every = dict(store.db.records(FolderEntry))
    partitions = store.layout.config.partitions()
    out: set[str] = set()
    for obj in objects:
        partition = None
        if obj.startswith("/"):
            head, _, rest = obj[1:].partition("/")
            if not head:
                out.update(every)
                continue
            if head not in partitions:
                raise UsageError(f"{obj}: no partition {head!r} (partitions: "
                                 f"{' '.join(partitions)})")
            partition, obj = head, rest
            if not obj:
                out.update(n for n, e in every.items() if e.partition == partition)
                continue
        name = canonical(obj)
        found = [n for n in every if n == name or is_descendant(n, name)]
        if partition:
            found = [n for n in found if every[n].partition == partition]
        if not found:
            raise NoSuchMailboxError(f"mailbox {name} does not exist"
                                     + (f" on partition {partition}" if partition else ""))
        out.update(found)
    return sorted(out)


def read_base(f: BinaryIO, source: str) -> dict[str, tuple[int, int]]:
    """A previous backup's mailboxes: name -> (UIDVALIDITY, modseq)."""
    base = {}
    for _off, kind, value in backup.read_frames(f, source, messages=False):
        if kind == backup.MBOX:
            base[value["name"]] = (value["uidvalidity"], value["highest_modseq"])
    return base


def take(store: Store, names: list[str], out: BinaryIO, *, since: int | None = None,
         base: dict[str, tuple[int, int]] | None = None,
         progress: Callable[[int], None] | None = None,
         with_config: bool = False) -> BackupResult:
    res = BackupResult(names=names)
    start = time.monotonic()
    out.write(backup.json_frame(backup.MAGIC, {
        "format": backup.FORMAT_VERSION, "created": int(time.time()),
        "host": socket.gethostname(), "since": since,
        "incremental": since is not None or base is not None, "mailboxes": names}))
    if with_config:
        out.write(backup.json_frame(backup.CONF, {"files": _config_files(store)}))
    users: list[str] = []
    seen = store.seen_by_mailbox()
    for name in names:
        _one_mailbox(store, name, out, since, (base or {}).get(name) if base is not None
                     else None, seen.get(name, {}), res, progress)
        user = user_of(name)
        if is_inbox(name) and user is not None:
            users.append(user)
    for user in users:
        out.write(backup.json_frame(backup.SUBS, {"user": user,
                                                  "mailboxes": store.subscriptions(user)}))
    out.write(backup.json_frame(backup.TAIL, {"mailboxes": res.mailboxes,
                                              "messages": res.messages, "bytes": res.bytes}))
    out.flush()
    res.seconds = time.monotonic() - start
    return res


def _config_files(store: Store) -> dict[str, str]:
    """The server's own files of config/ (backup.CONFIG_FILES) that exist,
    as text; never through a symlink."""
    out = {}
    for name in backup.CONFIG_FILES:
        try:
            with open_nofollow(os.path.join(store.layout.config_dir, name), "rb") as f:
                out[name] = f.read().decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            continue
    return out


def _one_mailbox(store: Store, name: str, out: BinaryIO, since: int | None,
                 prev: tuple[int, int] | None, seen: dict[str, tuple[int, list[list[int]]]],
                 res: BackupResult, progress) -> None:
    with store.lock(name):  # the moment this mailbox is taken at
        entry = store.entry(name)
        idx = store.read_clean(name, store.mailbox_dir(name, entry))
    h = idx.header
    records = idx.records
    base_modseq = None
    if prev is not None and prev[0] == h.uidvalidity:
        base_modseq = prev[1]
        records = [r for r in records if r.modseq > base_modseq]
    if since is not None:
        records = [r for r in records if r.internaldate >= since]
    limit = msg_limit = None
    if entry.quotaroot and quota_root_mailbox(entry.quotaroot) == name:
        q = store.db.record(QuotaEntry, entry.quotaroot)
        limit, msg_limit = (q.limit_bytes, q.limit_messages) if q else (None, None)
    out.write(backup.json_frame(backup.MBOX, {
        "name": name, "partition": entry.partition, "uidvalidity": h.uidvalidity,
        "uidnext": h.uidnext, "highest_modseq": h.highest_modseq, "acl": entry.acl,
        "quotaroot": entry.quotaroot, "quota_limit": limit,
        **({"quota_messages": msg_limit} if msg_limit is not None else {}),
        "keywords": h.keywords,
        "uids": [r.uid for r in idx.records], "base_modseq": base_modseq, "since": since,
        # other users' \\Seen (peruser records of this mailbox's UIDVALIDITY), as UID ranges
        "seen_by": {u: ranges for u, (uv, ranges) in sorted(seen.items())
                    if uv == h.uidvalidity}}))
    reader = store.message_reader(name)
    n = size = 0
    for r, data in reader.each(records):
        # the SHA-256 of the bytes read, not the record's: a file damaged
        # on disk is still backed up, as it is, in a backup that verifies
        digest = hashlib.sha256(data).digest()
        out.write(backup.message_frame(backup.Message(r.uid, r.flags, r.internaldate,
                                                      r.modseq, r.keywords, digest, data)))
        n += 1
        size += len(data)
        if progress:
            progress(1)
    out.write(backup.json_frame(backup.MEND, {"name": name, "messages": n, "bytes": size}))
    res.vanished += reader.gone
    res.mailboxes += 1
    res.messages += n
    res.bytes += size
