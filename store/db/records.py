"""The schema of every database record: the one owner of each value's fields.

Named databases of `<root>/mboxlist/` (keys UTF-8):

  folder   mailbox name        -> FolderEntry
  quota    quota root          -> QuotaEntry
  lright   identifier          -> LrightEntry (the mailboxes whose ACL names it)
  subscr   user id             -> SubscrEntry
  peruser  "<user>\\0<mailbox>" -> PeruserEntry

Each value is stored as compact JSON inside the checksummed envelope
(envelope.py); `to_value` gives the JSON object, `from_value` reads one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Self

FOLDER, QUOTA, LRIGHT, SUBSCR, PERUSER = "folder", "quota", "lright", "subscr", "peruser"
DATABASES = (FOLDER, QUOTA, LRIGHT, SUBSCR, PERUSER)


class Record:
    """A value of one named database (subclasses are dataclasses)."""

    db: ClassVar[str]

    def to_value(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_value(cls, value: dict[str, Any]) -> Self:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in value.items() if k in names})


@dataclass
class FolderEntry(Record):
    """A mailbox: where it lives and what the index header keeps a copy of."""

    db: ClassVar[str] = FOLDER
    FIELDS: ClassVar[tuple[str, ...]] = ("partition", "uniqueid", "uidvalidity", "acl", "quotaroot")

    partition: str
    uniqueid: str
    uidvalidity: int
    acl: dict[str, str] = field(default_factory=dict)
    quotaroot: str = ""
    # a high-water mark, not a copy of the header (so not in FIELDS): no modseq above it was
    # given out; the mailbox layer raises it a block ahead of the header, and a rebuilt index
    # starts above it, so that HIGHESTMODSEQ never goes backwards (absent in records written
    # before it: 0)
    modseq_reserved: int = 0

    def differences(self, other: FolderEntry) -> list[str]:
        """The fields in which `other` differs from this entry."""
        return [k for k in self.FIELDS if getattr(self, k) != getattr(other, k)]

    def keeping_reserved(self, old: FolderEntry | None) -> FolderEntry:
        """This entry, its modseq mark never below `old`'s (an entry made again
        from an index header must not lower it)."""
        if old is not None and old.modseq_reserved > self.modseq_reserved:
            return replace(self, modseq_reserved=old.modseq_reserved)
        return self


@dataclass
class QuotaEntry(Record):
    """A quota root: its limit (None: no limit) and what its mailboxes use.
    over_since: when a delivery was first refused for want of space (the
    grace period runs from there), None once one fits again; warned: the
    user has had the warning for the current crossing of store.quotawarn."""

    db: ClassVar[str] = QUOTA

    limit_bytes: int | None = None
    used_bytes: int = 0
    used_messages: int = 0
    over_since: int | None = None
    warned: bool = False
    limit_messages: int | None = None  # None: no message-count limit

    def to_value(self) -> dict[str, Any]:
        # the delivery state and the message limit only when set: a root
        # without them keeps the value it had before these fields existed
        v = super().to_value()
        for k in ("over_since", "warned"):
            if not v[k]:
                del v[k]
        if v["limit_messages"] is None:
            del v["limit_messages"]
        return v

    def added(self, nbytes: int, nmsgs: int) -> QuotaEntry:
        """Usage moved by a delta, never below zero."""
        return replace(self, used_bytes=max(0, self.used_bytes + nbytes),
                       used_messages=max(0, self.used_messages + nmsgs))

    def as_json(self, root: str) -> dict[str, Any]:
        return {"root": root, "used_bytes": self.used_bytes, "used_messages": self.used_messages,
                "limit_bytes": self.limit_bytes, "limit_messages": self.limit_messages}


@dataclass
class LrightEntry(Record):
    db: ClassVar[str] = LRIGHT

    mailboxes: list[str] = field(default_factory=list)


@dataclass
class SubscrEntry(Record):
    db: ClassVar[str] = SUBSCR

    mailboxes: list[str] = field(default_factory=list)


@dataclass
class PeruserEntry(Record):
    db: ClassVar[str] = PERUSER

    seen: list[list[int]] = field(default_factory=list)  # [[first_uid, last_uid], ...]
    uidvalidity: int = 0  # of the mailbox the UIDs are of


SCHEMA: dict[str, type[Record]] = {c.db: c for c in
                                   (FolderEntry, QuotaEntry, LrightEntry, SubscrEntry, PeruserEntry)}
assert tuple(SCHEMA) == DATABASES
