"""Subscriptions (IMAP SUBSCRIBE/LSUB): per user, the mailbox names they
follow, one `subscr` database record per user (db/records.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..db import SUBSCR
from ..db.records import SubscrEntry
from ..layout import canonical, check_userid

if TYPE_CHECKING:
    from .store import Store


def subscriptions(store: Store, user: str) -> list[str]:
    e = store.db.record(SubscrEntry, check_userid(user))
    return list(e.mailboxes) if e else []


def set_subscribed(store: Store, user: str, name: str, on: bool) -> None:
    """Subscribe or unsubscribe; a name need not exist (RFC 3501 6.3.6)."""
    check_userid(user)
    name = canonical(name)

    def txn(t):
        e = t.record(SubscrEntry, user) or SubscrEntry()
        names = set(e.mailboxes)
        names.add(name) if on else names.discard(name)
        if names:
            t.put(SUBSCR, user, SubscrEntry(sorted(names)))
        else:
            t.delete(SUBSCR, user)
    store.db.write(txn)
