"""What became of one message for one recipient, in the three languages
that need it: an LMTP reply (RFC 2033, with RFC 3463 enhanced codes), a
sysexits.h status for `deliver`, and a reason tag for the log.

The one place where errors become replies: an MTA retries a 4xx reply and
an exit status of 75, and bounces the rest, so every condition that can
clear by itself must land on the temporary side."""

from __future__ import annotations

import errno
from dataclasses import dataclass

from ..errors import (
    CorruptionError,
    EmptyMessageError,
    LockedError,
    NoSuchMailboxError,
    NotAStoreError,
    OverQuotaError,
    SettingError,
    StoreError,
)
from .address import AddressError
from .sysexits import (
    EX_CONFIG,
    EX_DATAERR,
    EX_NOPERM,
    EX_NOUSER,
    EX_OK,
    EX_SOFTWARE,
    EX_TEMPFAIL,
    EX_USAGE,
)


class TooBigError(StoreError):
    pass


class NotReadyError(StoreError):
    """stored is not running, or not ready: the database may be under repair."""


@dataclass(frozen=True)
class Outcome:
    code: int
    enhanced: str
    text: str
    reason: str  # log tag: delivered, duplicate, unknown-user, over-quota, locked, ...
    sysexit: int
    mailbox: str | None = None
    uid: int | None = None

    @property
    def ok(self) -> bool:
        return self.code < 300

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    def reply(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"


def delivered(mailbox: str, uid: int, *, duplicate: bool = False) -> Outcome:
    text = f"{mailbox} already has this message" if duplicate else f"{mailbox} UID {uid} stored"
    return Outcome(250, "2.0.0", text, "duplicate" if duplicate else "delivered", EX_OK,
                   mailbox, uid)


def admitted(addr: str, mailbox: str) -> Outcome:
    """A recipient the store would take a message for now (policyd's answer)."""
    return Outcome(250, "2.1.5", f"<{addr}> has room", "admitted", EX_OK, mailbox)


def too_big(size: int, limit: int) -> Outcome:
    return Outcome(552, "5.3.4", f"message of {size} bytes exceeds the limit of {limit}",
                   "too-big", EX_DATAERR)


def refused(exc: BaseException, *, grace_hours: int, now: int) -> Outcome:
    """The outcome of a delivery that raised `exc`."""
    if isinstance(exc, AddressError):
        if exc.reason == "recovering":
            return Outcome(451, "4.2.0", str(exc), exc.reason, EX_TEMPFAIL)
        if exc.reason == "unknown-user":
            return Outcome(550, "5.1.1", str(exc), exc.reason, EX_NOUSER)
        if exc.reason == "not-local":
            return Outcome(550, "5.1.2", str(exc), exc.reason, EX_NOUSER)
        return Outcome(553, "5.1.3", str(exc), exc.reason, EX_USAGE)
    if isinstance(exc, NoSuchMailboxError):  # deleted between RCPT and DATA
        return Outcome(550, "5.1.1", str(exc), "unknown-user", EX_NOUSER)
    if isinstance(exc, OverQuotaError):
        since = exc.since if exc.since is not None else now
        if now - since < grace_hours * 3600:
            return Outcome(452, "4.2.2", f"{exc}; deferred", "over-quota", EX_TEMPFAIL)
        return Outcome(552, "5.2.2", f"{exc}; grace period of {grace_hours} h over",
                       "over-quota-expired", EX_NOPERM)
    if isinstance(exc, TooBigError):
        return Outcome(552, "5.3.4", str(exc), "too-big", EX_DATAERR)
    if isinstance(exc, EmptyMessageError):
        return Outcome(554, "5.6.0", "empty message refused", "empty", EX_DATAERR)
    if isinstance(exc, LockedError):
        return Outcome(451, "4.2.0", f"{exc}; try again later", "locked", EX_TEMPFAIL)
    if isinstance(exc, NotReadyError):
        return Outcome(451, "4.3.0", str(exc), "not-ready", EX_TEMPFAIL)
    if isinstance(exc, CorruptionError):
        return Outcome(451, "4.3.0", f"store damaged: {exc.message}", "damaged", EX_TEMPFAIL)
    if isinstance(exc, SettingError | NotAStoreError):
        return Outcome(451, "4.3.5", f"configuration error: {exc}", "config", EX_CONFIG)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return Outcome(452, "4.3.1", "insufficient system storage", "disk-full", EX_TEMPFAIL)
    if isinstance(exc, StoreError | OSError):
        return Outcome(451, "4.3.0", f"local error: {' '.join(str(exc).split())}", "error",
                       EX_TEMPFAIL)
    return Outcome(451, "4.3.0", f"internal error: {type(exc).__name__}", "internal",
                   EX_SOFTWARE)
