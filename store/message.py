"""Message files: header parsing for the cache, size, GUID.

The parser works on raw bytes and never raises on message content: any
message, however broken, yields a (possibly empty) set of cache fields.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass

GUID_BYTES = 32  # SHA-256 of the full message content

CACHE_FIELDS = ("date", "from", "to", "cc", "subject", "message-id", "in-reply-to", "content-type")


def guid(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass
class ParsedHeader:
    header_size: int  # bytes up to and including the blank separator line
    fields: dict[str, bytes]  # the cache fields found, unfolded, raw bytes
    sent_date: int  # seconds since the epoch from Date:, 0 when unreadable


# a run of header lines: fields ("Name: value") and continuations (leading
# white space); the first line that is neither ends the header
_HEADER_LINES = re.compile(rb"(?:[\x21-\x39\x3b-\x7e]+[ \t]*:[^\n]*(?:\n|\Z)"
                           rb"|[ \t][^\n]*(?:\n|\Z))*")
_MBOX_FROM = re.compile(rb"From [^\n]*\n")


def _any_case(name: str) -> bytes:
    """`[Dd][Aa][Tt][Ee]`: what re.I matches, spelled out. With re.I the
    whole pattern loses the fast search for its leading newline: findall
    took 4.8 µs a header instead of 2.8 (20,000 headers measured)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c)
                   for c in name).encode("ascii")


_WANTED = re.compile(rb"\n(" + b"|".join(_any_case(f) for f in CACHE_FIELDS) + rb")[ \t]*:"
                     rb"([^\n]*(?:\n[ \t][^\n]*)*)")
_FOLD = re.compile(rb"\r?\n[ \t]+")
# the usual spellings of the wanted names; any other goes through lower()
_KEYS = {s: f for f in CACHE_FIELDS
         for s in (f.encode(), f.title().encode(), f.upper().encode(),
                   f.title().replace("-Id", "-ID").encode())}


def header_end(data: bytes) -> int:
    """Offset where the body starts. A message without a blank separator
    line ends its header at the first line that is neither a field nor a
    continuation (or at end of data). An mbox `From ` line heading the
    file is part of the header."""
    start = 0
    if data.startswith(b"From "):
        m = _MBOX_FROM.match(data)
        if m:
            start = m.end()
    if data[start:start + 1] in (b" ", b"\t"):  # a continuation needs a field before it
        return start
    end = _HEADER_LINES.match(data, start).end()  # type: ignore[union-attr]  # matches empty
    if data[end:end + 1] == b"\n":  # the blank separator line
        return end + 1
    if data[end:end + 2] == b"\r\n":
        return end + 2
    return end


def parse_header(data: bytes) -> ParsedHeader:
    size = header_end(data)
    fields: dict[str, bytes] = {}
    # "\n" + name over the header with a newline in front: the same matches
    # as "^" + name in MULTILINE mode (tests/reference_parser.py), a little
    # faster; what made the parser faster is the work per field below
    for name, v in _WANTED.findall(b"\n" + data[:size]):  # tuples: no match objects
        key = _KEYS.get(name) or name.decode("ascii").lower()
        if key not in fields:  # the first occurrence wins
            fields[key] = (_FOLD.sub(b" ", v) if b"\n" in v else v).strip()
    ct = fields.get("content-type")
    if ct is not None:
        fields["content-type"] = content_type_summary(ct)
    return ParsedHeader(size, fields, parse_date(fields.get("date", b"")))


# values seen before and their summaries: without a boundary (unique to
# its message) a mailbox has few distinct ones; a hit saves ~1.5 µs
_CT_SEEN: dict[bytes, bytes] = {}


def content_type_summary(value: bytes) -> bytes:
    """`type/subtype` plus charset and boundary when present."""
    out = _CT_SEEN.get(value)
    if out is None:
        out = _content_type_summary(value)
        if len(_CT_SEEN) < 4096 and b"oundary" not in value:
            _CT_SEEN[value] = out
    return out


def _content_type_summary(value: bytes) -> bytes:
    if b";" not in value:
        return value.strip().lower() or b"text/plain"
    mime, *params = value.split(b";")
    out = [mime.strip().lower() or b"text/plain"]
    for p in params:
        k, _, v = p.partition(b"=")
        k = k.strip().lower()
        if k == b"charset" or k == b"boundary":
            out.append(k + b"=" + v.strip())
    return b"; ".join(out)


_MONTHS = {m: i for i, m in enumerate(
    (b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
     b"dec"), 1)}
_DATE = re.compile(rb"^\s*(?:[A-Za-z]{3},?\s*)?(\d{1,2})\s+([A-Za-z]{3})\s+(\d{4})\s+"
                   rb"(\d{2}):(\d{2})(?::(\d{2}))?\s*([+-]\d{4})?")


_MONTH_START: dict[tuple[int, int], int | None] = {}
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()


def _month_start(year: int, mon: int) -> int | None:
    """Days from the epoch to the first of the month (what calendar.timegm
    computes, memoised: sent dates cluster in few months)."""
    try:
        return _MONTH_START[year, mon]
    except KeyError:
        try:
            days = datetime.date(year, mon, 1).toordinal() - _EPOCH_ORDINAL
        except ValueError:
            days = None
        if len(_MONTH_START) < 100_000:
            _MONTH_START[year, mon] = days
        return days


def parse_date(value: bytes) -> int:
    """Seconds since the epoch from a Date: value; 0 when unreadable. The
    common RFC 5322 form is read directly; anything else goes to email.utils."""
    if not value:
        return 0
    m = _DATE.match(value)
    if m:
        d, mo, y, h, mi, s, tz = m.groups()
        mon = _MONTHS.get(mo.lower())
        day, year, hh, mm = int(d), int(y), int(h), int(mi)
        if mon and tz and 1 <= day <= 31 and hh < 24 and mm < 60:
            ss = int(s or 0)
            off = (1 if tz[:1] == b"+" else -1) * (int(tz[1:3]) * 3600 + int(tz[3:5]) * 60)
            first = _month_start(year, mon)
            after = _month_start(year + mon // 12, mon % 12 + 1)
            if first is None or after is None or day > after - first:
                return 0  # 31 Feb is no date, not 2 March
            return (first + day - 1) * 86400 + hh * 3600 + mm * 60 + min(ss, 59) - off
    import email.utils  # rare forms only; the import costs a command's start-up ~8 ms

    try:
        dt = email.utils.parsedate_to_datetime(value.decode("latin-1"))
        if dt.tzinfo is None:  # no zone (or -0000): UTC, whatever this process's TZ
            dt = dt.replace(tzinfo=datetime.UTC)
        return int(dt.timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0


def split_mbox_from(data: bytes) -> tuple[bytes | None, bytes]:
    """(the mbox `From ` line an MTA's pipe put in front, the message without it)."""
    if data.startswith(b"From "):
        m = _MBOX_FROM.match(data)
        if m:
            return data[:m.end()], data[m.end():]
    return None, data


def envelope_sender(from_line: bytes | None) -> str | None:
    """The sender of a `From sender date` line."""
    if not from_line:
        return None
    words = from_line.split()
    return words[1].decode("utf-8", "surrogateescape") if len(words) > 1 else None


_RECEIVED = re.compile(rb"(?:\A|\n)" + _any_case("received") + rb"[ \t]*:((?:[^\n]*\n[ \t])*[^\n]*)")


def internaldate_of(spec: str, data: bytes, from_line: bytes | None) -> int:
    """An arrival date: 'from' (the date of the `From ` line, local time as
    MTAs write it), 'received' (the date after the last ';' of the newest
    Received: field), else `spec` itself (seconds since the epoch, ISO 8601
    or an RFC 5322 date). ValueError says what was missing."""
    if spec == "from":
        words = (from_line or b"").split()
        if len(words) < 7:
            raise ValueError("no 'From sender date' line heads the message")
        import time
        try:
            return int(time.mktime(time.strptime(b" ".join(words[2:7]).decode("ascii"),
                                                  "%a %b %d %H:%M:%S %Y")))
        except (ValueError, UnicodeDecodeError):
            raise ValueError(f"the 'From ' line has no date: {from_line!r}") from None
    if spec == "received":
        m = _RECEIVED.search(data, 0, header_end(data))
        when = parse_date(m.group(1).rpartition(b";")[2].strip()) if m else 0
        if not when:
            raise ValueError("no Received: field with a date")
        return when
    if spec.isdigit():
        return int(spec)
    try:
        dt = datetime.datetime.fromisoformat(spec)
        return int((dt if dt.tzinfo else dt.replace(tzinfo=datetime.UTC)).timestamp())
    except ValueError:
        pass
    when = parse_date(spec.encode("utf-8", "replace"))
    if not when:
        raise ValueError(f"{spec!r} is not 'from', 'received' or a date")
    return when


def to_crlf(data: bytes) -> bytes:
    """The message with CRLF line ends, as IMAP and POP3 send it (the store
    keeps what was delivered: LF from lmtpd and most MTAs' pipes)."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def crlf_size(data: bytes) -> int:
    """len(to_crlf(data)) without making the copy."""
    return len(data) + data.count(b"\n") - data.count(b"\r\n")
