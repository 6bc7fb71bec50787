"""Subscriptions (IMAP SUBSCRIBE/LSUB): per user, the mailbox names they
follow, one `subscr` database record per user (db/records.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import settings
from ..db import SUBSCR
from ..db.records import SubscrEntry
from ..errors import LimitError
from ..layout import canonical, check_userid

if TYPE_CHECKING:
    from .store import Store


def subscriptions(store: Store, user: str) -> list[str]:
    e = store.db.record(SubscrEntry, check_userid(user))
    return list(e.mailboxes) if e else []


def set_subscribed(store: Store, user: str, name: str, on: bool) -> None:
    """Subscribe or unsubscribe; a name need not exist (RFC 3501 6.3.6), so
    the count is limited (local.user.maxsubscriptions): each costs database
    space."""
    check_userid(user)
    name = canonical(name)
    limit = store.layout.config.get_int(settings.MAX_SUBSCRIPTIONS)

    def txn(t):
        e = t.record(SubscrEntry, user) or SubscrEntry()
        names = set(e.mailboxes)
        if on and name not in names and limit and len(names) >= limit:
            raise LimitError(f"{user} has {limit} subscriptions, the most "
                             "local.user.maxsubscriptions allows")
        names.add(name) if on else names.discard(name)
        if names:
            t.put(SUBSCR, user, SubscrEntry(sorted(names)))
        else:
            t.delete(SUBSCR, user)
    store.db.write(txn)
