"""What a mailbox already holds, for an import or a restore run again: each
incoming message is matched to at most one message there, so a run that
was killed finishes without storing anything twice, and a source holding
the same message twice (the same bytes and date: one message appended
twice in a second) keeps both."""

from __future__ import annotations

from collections import defaultdict

from .. import index


class Present:
    def __init__(self, records: list[index.Record]):
        self.by_uid = {r.uid: r for r in records}
        self.copies: dict[tuple[bytes, int], list[index.Record]] = defaultdict(list)
        for r in records:
            self.copies[(r.guid, r.internaldate)].append(r)
        self.matched: set[int] = set()

    def match(self, uid: int | None, guid: bytes, date: int) -> index.Record | None:
        """The message here that is this one, if any: the one under its UID
        (when UIDs are kept and it holds the same bytes), else a copy not
        matched yet (same bytes and INTERNALDATE)."""
        r = self.by_uid.get(uid) if uid is not None else None
        if r is None or r.guid != guid or r.uid in self.matched:
            pool = [c for c in self.copies.get((guid, date), ()) if c.uid not in self.matched]
            r = pool[0] if pool else None
        if r is not None:
            self.matched.add(r.uid)
        return r

    def holds_other(self, uid: int, guid: bytes) -> bool:
        """Whether `uid` here is another message (a mailbox that only
        shares its UIDVALIDITY with the source)."""
        r = self.by_uid.get(uid)
        return r is not None and r.guid != guid
