"""Message files: header parsing for the cache, size, GUID.

The parser works on raw bytes and never raises on message content: any
message, however broken, yields a (possibly empty) set of cache fields.
"""

from __future__ import annotations

import email.utils
import hashlib
import re
from dataclasses import dataclass

GUID_BYTES = 32  # SHA-256 of the full message content

CACHE_FIELDS = ("date", "from", "to", "cc", "subject", "message-id", "in-reply-to", "content-type")
_FIELD_RE = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:")


def guid(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass
class ParsedHeader:
    header_size: int  # bytes up to and including the blank separator line
    fields: dict[str, bytes]  # the cache fields found, unfolded, raw bytes
    sent_date: int  # seconds since the epoch from Date:, 0 when unreadable


def header_end(data: bytes) -> int:
    """Offset where the body starts. A message without a blank separator
    line ends its header at the first line that is neither a field nor a
    continuation (or at end of data)."""
    pos = 0
    n = len(data)
    while pos < n:
        nl = data.find(b"\n", pos)
        line_end = n if nl < 0 else nl + 1
        line = data[pos:line_end]
        if line in (b"\n", b"\r\n"):
            return line_end
        if pos == 0 and line.startswith(b"From "):  # mbox separator kept in the file
            pos = line_end
            continue
        if not (line[:1] in (b" ", b"\t") and pos > 0) and not _FIELD_RE.match(line):
            return pos
        pos = line_end
    return n


def parse_header(data: bytes) -> ParsedHeader:
    size = header_end(data)
    fields: dict[str, bytes] = {}
    current: str | None = None
    for raw in data[:size].splitlines():
        if raw[:1] in (b" ", b"\t"):
            if current is not None:
                fields[current] += b" " + raw.strip()
            continue
        m = _FIELD_RE.match(raw)
        if not m:
            current = None
            continue
        key = m.group(1).decode("ascii").lower()
        if key in CACHE_FIELDS and key not in fields:  # the first occurrence wins
            fields[key] = raw[m.end():].strip()
            current = key
        else:
            current = None
    if "content-type" in fields:
        fields["content-type"] = content_type_summary(fields["content-type"])
    return ParsedHeader(size, fields, parse_date(fields.get("date", b"")))


def content_type_summary(value: bytes) -> bytes:
    """`type/subtype` plus charset and boundary when present."""
    parts = value.split(b";")
    mime = parts[0].strip().lower() or b"text/plain"
    out = [mime]
    for p in parts[1:]:
        k, _, v = p.strip().partition(b"=")
        if k.strip().lower() in (b"charset", b"boundary"):
            out.append(k.strip().lower() + b"=" + v.strip())
    return b"; ".join(out)


def parse_date(value: bytes) -> int:
    if not value:
        return 0
    try:
        dt = email.utils.parsedate_to_datetime(value.decode("latin-1"))
        return int(dt.timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0
