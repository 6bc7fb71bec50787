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

if TYPE_CHECKING:
    from .store import Store


def _key(user: str, name: str) -> str:
    return f"{check_userid(user)}\0{canonical(name)}"


def to_ranges(uids: Iterable[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for u in sorted(set(uids)):
        if out and u == out[-1][1] + 1:
            out[-1][1] = u
        else:
            out.append([u, u])
    return out


def from_ranges(ranges: list[list[int]]) -> set[int]:
    return {u for first, last in ranges for u in range(first, last + 1)}


def seen(store: Store, user: str, name: str, uidvalidity: int) -> set[int]:
    """The UIDs `user` has seen in `name`; none when the record is of an
    earlier mailbox of that name (another UIDVALIDITY)."""
    e = store.db.record(PeruserEntry, _key(user, name))
    if e is None or e.uidvalidity != uidvalidity:
        return set()
    return from_ranges(e.seen)


def set_seen(store: Store, user: str, name: str, uidvalidity: int, add: Iterable[int] = (),
             remove: Iterable[int] = ()) -> set[int]:
    """Mark UIDs seen or unseen for `user`. Returns the new seen set."""
    key = _key(user, name)
    add, remove = set(add), set(remove)

    def txn(t):
        e = t.record(PeruserEntry, key)
        now = from_ranges(e.seen) if e is not None and e.uidvalidity == uidvalidity else set()
        now = (now | add) - remove
        if now:
            t.put(PERUSER, key, PeruserEntry(to_ranges(now), uidvalidity))
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
