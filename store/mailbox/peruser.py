"""Per-user \\Seen on mailboxes a user does not own (shared folders, other
users' folders shared with them): one `peruser` record per (user, mailbox),
db/records.py. The owner's \\Seen is the index's flag, as in Cyrus's
seen state for the owner and Dovecot's private flags for the others.

Writes are not synced one by one (durable=False): stored's per-user job
syncs the database every local.store.peruserinterval seconds, so a crash
may forget the last seconds of reading, never mail."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..db import PERUSER
from ..db.records import PeruserEntry
from ..layout import canonical, check_userid
from .uidranges import UidRanges

if TYPE_CHECKING:
    from .store import Store


def _key(user: str, name: str) -> str:
    return f"{check_userid(user)}\0{canonical(name)}"


def seen(store: Store, user: str, name: str, uidvalidity: int) -> UidRanges:
    """The UIDs `user` has seen in `name`; none when the record is of an
    earlier mailbox of that name (another UIDVALIDITY)."""
    e = store.db.record(PeruserEntry, _key(user, name))
    if e is None or e.uidvalidity != uidvalidity:
        return UidRanges()
    return _ranges(e)


def _ranges(e: PeruserEntry) -> UidRanges:
    try:
        return UidRanges(e.seen)
    except (TypeError, ValueError):  # a record no code of ours wrote: as if never read
        return UidRanges()


def set_seen(store: Store, user: str, name: str, uidvalidity: int,
             add: Iterable[int] | UidRanges = (),
             remove: Iterable[int] | UidRanges = ()) -> UidRanges:
    """Mark UIDs seen or unseen for `user`. Returns the new seen ranges."""
    key = _key(user, name)
    add, remove = UidRanges.of(add), UidRanges.of(remove)

    def txn(t):
        e = t.record(PeruserEntry, key)
        now = _ranges(e) if e is not None and e.uidvalidity == uidvalidity else UidRanges()
        now = now.union(add).minus(remove)
        if now:
            t.put(PERUSER, key, PeruserEntry(now.as_list(), uidvalidity))
        elif e is not None:
            t.delete(PERUSER, key)
        return now
    return store.db.write(txn, durable=False)


def by_mailbox(store: Store) -> dict[str, dict[str, tuple[int, list[list[int]]]]]:
    """Every record, as mailbox -> user -> (UIDVALIDITY, seen ranges): for
    imsbackup, which keeps them with each mailbox."""
    out: dict[str, dict[str, tuple[int, list[list[int]]]]] = {}
    for key, e in store.db.records(PeruserEntry):
        user, _, name = key.partition("\0")
        out.setdefault(name, {})[user] = (e.uidvalidity, e.seen)
    return out
