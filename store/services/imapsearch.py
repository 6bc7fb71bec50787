"""IMAP SEARCH (RFC 3501 6.4.4) over a session's view: every search key.

Twisted's own search misses keys (KEYWORD never matches, TEXT skips the
header) and reads every message for any key. Here flag, date, UID and
sequence keys are answered from the index records alone; a message file
is read only for a key on its header, body or size, and only for the
messages still in the running after the cheaper keys (AND is evaluated
left to right, short-circuited).

Strings match as case-insensitive substrings (ASCII case folding, as
Dovecot and Cyrus); dates compare by day, INTERNALDATE for BEFORE, ON and
SINCE, the Date: header's own day for SENT*."""

from __future__ import annotations

import calendar
import email.utils
import time
from collections.abc import Callable
from typing import Any

from twisted.mail import imap4

from ..index import FLAG_ANSWERED, FLAG_DELETED, FLAG_DRAFT, FLAG_FLAGGED, FLAG_SEEN

_FLAG_KEYS = {"ANSWERED": FLAG_ANSWERED, "DELETED": FLAG_DELETED, "DRAFT": FLAG_DRAFT,
              "FLAGGED": FLAG_FLAGGED, "SEEN": FLAG_SEEN}
_HEADER_KEYS = {"BCC", "CC", "FROM", "SUBJECT", "TO"}
_DATE_KEYS = {"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"}


class SearchError(imap4.IllegalQueryError):
    """A malformed search: BAD."""


def _day(value: bytes) -> int:
    """A search date (d-Mon-yyyy) as days since the epoch."""
    try:
        t = time.strptime(value.decode("ascii"), "%d-%b-%Y")
    except (ValueError, UnicodeDecodeError):
        raise SearchError(f"bad date {value!r}") from None
    return calendar.timegm(t) // 86400


def _sent_day(m) -> int:
    """The day of the Date: header as written, its zone disregarded (RFC
    3501: SENT* compare the date only); the index's sentdate is in UTC."""
    date = next((v for k, v in m.header_fields() if k.lower() == "date"), None)
    t = email.utils.parsedate_tz(str(date)) if date else None
    if not t:
        return m.rec.sentdate // 86400
    return calendar.timegm((t[0], t[1], t[2], 0, 0, 0)) // 86400


def _fold(value) -> bytes:
    return (value if isinstance(value, bytes) else str(value).encode("utf-8")).lower()


Test = Callable[[int, Any], bool]  # (sequence number, imapbox.Message) -> matches


class Compiler:
    """Turns a parsed query (Twisted's list of tokens) into one test."""

    def __init__(self, box):
        self.box = box
        last_seq = len(box.records)
        self.last_seq = last_seq
        self.last_uid = box.records[-1].uid if box.records else 0

    def compile(self, tokens: list) -> Test:
        tokens = list(tokens)
        tests = []
        while tokens:
            tests.append(self._one(tokens))
        return lambda seq, m: all(t(seq, m) for t in tests)

    def _arg(self, tokens: list):
        if not tokens:
            raise SearchError("a search key lacks its argument")
        return tokens.pop(0)

    def _set(self, value: bytes, last: int):
        try:
            return imap4.parseIdList(value, last)
        except (imap4.IllegalIdentifierError, ValueError):
            raise SearchError(f"bad message set {value!r}") from None

    def _one(self, tokens: list) -> Test:  # noqa: C901 - one branch per search key
        tok = tokens.pop(0)
        if isinstance(tok, list):
            return self.compile(tok)
        key = tok.decode("ascii", "replace").upper()
        box = self.box
        if key == "ALL":
            return lambda seq, m: True
        if key in _FLAG_KEYS or key[2:] in _FLAG_KEYS and key.startswith("UN"):
            bit, want = (_FLAG_KEYS[key], True) if key in _FLAG_KEYS else (_FLAG_KEYS[key[2:]],
                                                                          False)
            name = {FLAG_SEEN: "\\Seen"}.get(bit)
            if name:  # \Seen may be the user's own (a shared mailbox)
                return lambda seq, m: ("\\Seen" in m.getFlags()) == want
            return lambda seq, m: bool(m.rec.flags & bit) == want
        if key in ("KEYWORD", "UNKEYWORD"):
            word = self._arg(tokens).decode("ascii", "replace").lower()
            want = key == "KEYWORD"
            return lambda seq, m: (word in (f.lower() for f in m.getFlags())) == want
        if key == "RECENT":
            return lambda seq, m: m.rec.uid >= box.first_recent
        if key == "OLD":
            return lambda seq, m: m.rec.uid < box.first_recent
        if key == "NEW":
            return lambda seq, m: m.rec.uid >= box.first_recent and "\\Seen" not in m.getFlags()
        if key == "NOT":
            inner = self._one(tokens)
            return lambda seq, m: not inner(seq, m)
        if key == "OR":
            a, b = self._one(tokens), self._one(tokens)
            return lambda seq, m: a(seq, m) or b(seq, m)
        if key == "UID":
            ids = self._set(self._arg(tokens), self.last_uid)
            return lambda seq, m: m.rec.uid in ids
        if key in _DATE_KEYS:
            day = _day(self._arg(tokens))
            sent = key.startswith("SENT")
            op = key[4:] if sent else key

            def when(m, sent=sent):
                return _sent_day(m) if sent else m.rec.internaldate // 86400
            if op == "BEFORE":
                return lambda seq, m: when(m) < day
            if op == "ON":
                return lambda seq, m: when(m) == day
            return lambda seq, m: when(m) >= day
        if key in ("LARGER", "SMALLER"):
            try:
                n = int(self._arg(tokens))
            except ValueError:
                raise SearchError(f"{key} needs a number") from None
            if key == "LARGER":
                return lambda seq, m: m.getSize() > n
            return lambda seq, m: m.getSize() < n
        if key in _HEADER_KEYS or key == "HEADER":
            field = key.lower() if key != "HEADER" else \
                self._arg(tokens).decode("ascii", "replace").lower()
            text = _fold(self._arg(tokens))

            def in_header(seq, m, field=field, text=text):
                values = [_fold(v) for k, v in m.header_fields() if k.lower() == field]
                return bool(values) and (not text or any(text in v for v in values))
            return in_header
        if key == "BODY":
            text = _fold(self._arg(tokens))
            return lambda seq, m: text in m.body_bytes().lower()
        if key == "TEXT":
            text = _fold(self._arg(tokens))
            return lambda seq, m: text in m.wire.lower()
        if tok[:1].isdigit() or tok[:1] == b"*":
            ids = self._set(tok, self.last_seq)
            return lambda seq, m: seq in ids
        raise SearchError(f"unknown search key {key}")
