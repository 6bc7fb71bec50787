"""Quota: which root a mailbox counts against, usage deltas, the one recount,
and setting a limit.

The spool keeps a copy of each root's limit in the index header of the
root's own mailbox (quota_root_mailbox), so a database rebuilt from the
spool keeps it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .. import index, logmsg
from ..db import FOLDER, QUOTA, FolderEntry, QuotaEntry, Txn
from ..errors import CorruptionError, OverQuotaError, UsageError
from ..layout import USER_NS, canonical, check_userid, user_of

# the index header keeps the limit in 64 bits with all ones for "none" (index.NO_LIMIT)
MAX_LIMIT = index.NO_LIMIT - 1

if TYPE_CHECKING:
    from .store import Store


def quota_root_for(name: str) -> str:
    """The quota root a user's mailbox counts against (`user/<id>`); "" for others."""
    user = user_of(name)
    return f"{USER_NS}/{user}" if user else ""


def quota_root_mailbox(root: str) -> str:
    """The mailbox whose index header keeps the spool's copy of a quota
    root's limit: a user's INBOX for `user/<id>`, else the root's own
    mailbox (which may not exist: then only the database has the limit)."""
    return canonical(root)


def check_quota_root(root: str) -> str:
    """A quota root's canonical spelling, or UsageError."""
    if root.startswith(USER_NS + "/") and root.count("/") == 1:
        check_userid(root.split("/")[1])
        return root
    c = canonical(root)
    if c.startswith(USER_NS + "/"):
        raise UsageError(f"quota root {root!r}: user quota roots are spelled user/<id>")
    return c


def quota_add(t: Txn, root: str, nbytes: int, nmsgs: int) -> None:
    """Move a root's usage by a delta (a root without an entry gets one)."""
    if not root:
        return
    t.put(QUOTA, root, (t.record(QuotaEntry, root) or QuotaEntry()).added(nbytes, nmsgs))


def quota_add_delivered(t: Txn, root: str, nbytes: int, nmsgs: int) -> None:
    """A delivery's usage; mail fits again, so the grace period of an
    earlier refusal is over (it starts afresh at the next one)."""
    q = (t.record(QuotaEntry, root) or QuotaEntry()).added(nbytes, nmsgs)
    t.put(QUOTA, root, replace(q, over_since=None))


def note_over_quota(t: Txn, root: str, now: int) -> int:
    """Record the first refusal of a run of them for want of space; returns
    when that run began (the start of the grace period)."""
    q = t.record(QuotaEntry, root) or QuotaEntry()
    if q.over_since is None:
        t.put(QUOTA, root, replace(q, over_since=now))
        return now
    return q.over_since


def check_room(store: Store, root: str, name: str, need: int, count: int = 1) -> None:
    """OverQuotaError (with when its run of refusals began) when `count`
    more messages of `need` bytes do not fit in the root's limits: a
    delivery into `name`, or the MTA asking before it queues one (policyd)."""
    q = store.db.record(QuotaEntry, root)
    if q is None:
        return
    if q.limit_bytes is not None and q.used_bytes + need > q.limit_bytes:
        why = f"uses {q.used_bytes} of {q.limit_bytes} bytes, message needs {need}"
    elif q.limit_messages is not None and q.used_messages + count > q.limit_messages:
        why = f"holds {q.used_messages} of {q.limit_messages} messages"
    else:
        return
    since = store.db.write(lambda t: note_over_quota(t, root, int(time.time())), durable=False)
    raise OverQuotaError(f"mailbox {name} is over quota: root {root} {why}", since=since)


def warning_due(q: QuotaEntry | None, percent: int) -> bool:
    """Whether usage crossed `percent` of the limit (either way) since the
    warning state was last set: a warning to send, or one to re-arm."""
    if q is None or q.limit_bytes is None or not percent:
        return False
    return (q.used_bytes * 100 >= q.limit_bytes * percent) != q.warned


def claim_warning(t: Txn, root: str, percent: int) -> QuotaEntry | None:
    """The root's entry when its usage has just reached `percent` of its
    limit and no warning went out for this crossing (it is marked sent in
    the same transaction, so concurrent deliveries send one); None
    otherwise. Usage back below the threshold re-arms the warning."""
    q = t.record(QuotaEntry, root)
    if q is None or not warning_due(q, percent):
        return None
    t.put(QUOTA, root, replace(q, warned=not q.warned))
    return None if q.warned else q


def mailbox_usage(store: Store, name: str, entry: FolderEntry, *, from_records: bool = False
                  ) -> tuple[int, int]:
    """(bytes, messages) of a mailbox: from its index header, or summed over
    its records (which must all verify)."""
    mdir = store.layout.mailbox_dir(name, entry.partition)
    if from_records:
        idx = index.read_index(mdir, name)
        if idx.problems:
            raise idx.problems[0]
        return sum(r.size for r in idx.records), len(idx.records)
    h = index.read_header(mdir, name)
    return h.total_bytes, h.exists


def root_mailboxes(t: Txn, root: str) -> list[tuple[str, FolderEntry]]:
    """The folder entries whose quota root is `root`. A root contains its
    mailboxes (`user/<id>` its user's, a shared root itself and what is
    below it), so a prefix scan finds them all."""
    return [(n, e) for n, e in t.records(FolderEntry, prefix=root) if e.quotaroot == root]


@dataclass
class Usage:
    """What one count of a quota root found."""

    bytes: int = 0
    messages: int = 0
    mailboxes: int = 0
    unreadable: list[tuple[str, Exception]] = field(default_factory=list)  # (mailbox, why)


def count_usage(store: Store, boxes: list[tuple[str, FolderEntry]], *,
                from_records: bool = False,
                planned: dict[str, tuple[int, int]] | None = None) -> Usage:
    """The one recount of a quota root's usage over its mailboxes. A mailbox
    whose index cannot be read is not counted and is named in `unreadable`:
    each caller reports it (reconstruct as a finding, the API in the log).
    `planned`: (bytes, messages) to count for some mailboxes instead of
    their index (what a repair being planned would write). The caller holds
    the mailboxes' locks."""
    u = Usage()
    for n, e in boxes:
        try:
            if planned and n in planned:
                b, m = planned[n]
            else:
                b, m = mailbox_usage(store, n, e, from_records=from_records)
        except (OSError, CorruptionError) as err:
            u.unreadable.append((n, err))
            continue
        u.bytes, u.messages, u.mailboxes = u.bytes + b, u.messages + m, u.mailboxes + 1
    return u


def recount_in(store: Store, t: Txn, root: str) -> QuotaEntry:
    """Recount a root inside the caller's write transaction (its mailboxes
    locked) and write the result; unreadable mailboxes go to the log."""
    u = count_usage(store, root_mailboxes(t, root))
    for name, err in u.unreadable:
        logmsg.log("mailbox", logmsg.QUOTA_UNCOUNTED, root=root, mailbox=name, error=err)
    q = t.record(QuotaEntry, root) or QuotaEntry()
    q.used_bytes, q.used_messages = u.bytes, u.messages
    t.put(QUOTA, root, q)
    return q


def quotas(store: Store, root: str | None = None) -> list[dict]:
    """Every quota root (or one) with its usage and limit, as JSON objects."""
    return [q.as_json(r) for r, q in store.db.records(QuotaEntry) if root is None or r == root]


KEEP = -1  # set_quota: leave the message limit as it is


def set_quota(store: Store, root: str, limit_bytes: int | None,
              limit_messages: int | None = KEEP) -> dict:
    """Set a quota root's limit in bytes (None: no limit) and, given, its
    message-count limit (None: none). Mailboxes under the root take it as
    their quota root unless they have a deeper one."""
    root = check_quota_root(root)
    if limit_bytes is not None and not 0 <= limit_bytes <= MAX_LIMIT:
        raise UsageError(f"quota limit must be 0 to {MAX_LIMIT} bytes, or 'none'")
    if limit_messages not in (None, KEEP) and not 0 <= limit_messages <= MAX_LIMIT:
        raise UsageError(f"message limit must be 0 to {MAX_LIMIT} messages, or 'none'")
    if limit_messages == KEEP:
        old = store.db.record(QuotaEntry, root)
        limit_messages = old.limit_messages if old is not None else None
    under = [n for n, e in store.db.records(FolderEntry, prefix=root)
             if n == root or n.startswith(root + "/") or quota_root_for(n) == root]
    with store.lock(*under):
        for n in under:
            e = store.db.record(FolderEntry, n)
            if e is None or len(e.quotaroot) > len(root):  # deleted meanwhile, or its own root
                continue
            if e.quotaroot != root:
                mdir = store.layout.mailbox_dir(n, e.partition)
                idx = store.read_clean(n, mdir)
                idx.header.quotaroot = root
                index.write_index(mdir, idx.header, idx.records)
                e.quotaroot = root

                def moved(t: Txn, n: str = n, e: FolderEntry = e) -> None:
                    t.put(FOLDER, n, e)
                store.db.write(moved)

        holder = quota_root_mailbox(root)
        e = store.db.record(FolderEntry, holder) if holder in under else None
        if e is not None:  # the spool's copy of the limit, written first
            mdir = store.layout.mailbox_dir(holder, e.partition)
            idx = store.read_clean(holder, mdir)
            idx.header.carries_limit, idx.header.quota_limit = True, limit_bytes
            idx.header.quota_messages = limit_messages
            index.write_index(mdir, idx.header, idx.records)

        def txn(t: Txn) -> dict:
            q = t.record(QuotaEntry, root) or QuotaEntry()
            q.limit_bytes, q.limit_messages = limit_bytes, limit_messages
            t.put(QUOTA, root, q)
            new = recount_in(store, t, root)
            return {"root": root, **new.to_value()}
        return store.db.write(txn)
