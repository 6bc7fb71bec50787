"""Splitting an mbox file into its messages (issue 15, imsimport's reader).

A message starts at a `From ` line at the start of the file or of a line.
Three variants, told apart per message:
- **Content-Length** (Netscape, Solaris mail): a `Content-Length:` header
  that, counted from the end of the header, lands exactly at the end of the
  file or at the newline before the next `From ` line is trusted, so a
  body line starting `From ` does not split the message, and the body is
  taken as it is (these files are not escaped);
- **mboxrd**: body lines `>From `, `>>From `... were escaped by one `>`;
- **mboxo**: only `From ` was escaped as `>From `.
Without Content-Length a body's `>+From ` lines lose one `>` (`unescape`):
right for mboxrd, and for mboxo too except a line that was `>From ` in the
original, which mboxo cannot tell from an escaped one anyway.

Offsets are those MimeKit gives (its test data is our ground truth): a
message runs from the end of its `From ` line to the newline before the
next one (that one line end is the separator), or to the end of the file.
CRLF files split the same way."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_MARKER = re.compile(rb"(?:\A(?:\xef\xbb\xbf)?|(?<=\n))From ")  # a UTF-8 BOM may lead
_BOM = b"\xef\xbb\xbf"
_CONTENT_LENGTH = re.compile(rb"^content-length:[ \t]*([0-9]+)[ \t]*\r?$", re.I | re.M)
_ESCAPED = re.compile(rb"^>(>*From )", re.M)


@dataclass
class MboxMessage:
    marker_offset: int  # the `From ` line
    begin: int  # the message's first byte
    end: int  # one past its last
    from_line: bytes  # without its line end
    trusted_length: bool  # split by its Content-Length

    def data(self, raw: bytes) -> bytes:
        """The message as it was before it went into the mbox."""
        body = raw[self.begin:self.end]
        return body if self.trusted_length else _ESCAPED.sub(rb"\1", body)


def _line_end(raw: bytes, at: int) -> int:
    nl = raw.find(b"\n", at)
    return len(raw) if nl < 0 else nl + 1


def _separator_before(raw: bytes, marker: int) -> int:
    """Where the message before `marker` ends: before the one line end
    (LF or CRLF) that ends the line before the marker."""
    if raw[marker - 2:marker] == b"\r\n":
        return marker - 2
    return marker - 1 if marker and raw[marker - 1:marker] == b"\n" else marker


def _header_end(raw: bytes, begin: int, limit: int) -> int | None:
    m = re.compile(rb"\r?\n\r?\n").search(raw, begin, limit)
    return m.end() if m else None


def split(raw: bytes) -> Iterator[MboxMessage]:
    """The messages of an mbox file's bytes, in order. Bytes before the
    first `From ` line (not an mbox there) are ValueError."""
    markers = [m.end() - 5 for m in _MARKER.finditer(raw)]
    if not markers or markers[0] != (len(_BOM) if raw.startswith(_BOM) else 0):
        start = raw[:64]
        raise ValueError(f"not an mbox: it does not start with a 'From ' line ({start!r})")
    i = 0
    while i < len(markers):
        marker = markers[i]
        begin = _line_end(raw, marker)
        from_line = raw[marker:begin].rstrip(b"\r\n")
        nxt = markers[i + 1] if i + 1 < len(markers) else len(raw)
        trusted = False
        head_end = _header_end(raw, begin, len(raw))
        if head_end is not None:
            m = _CONTENT_LENGTH.search(raw, begin, head_end)
            if m:
                stop = head_end + int(m.group(1))
                # the length may count the line end before the next marker, or not
                after = [j for j in range(i + 1, len(markers))
                         if stop in (markers[j], _separator_before(raw, markers[j]))]
                if stop == len(raw) or after:
                    trusted = True
                    i = after[0] - 1 if after else len(markers) - 1
                    nxt = markers[after[0]] if after else len(raw)
        end = _separator_before(raw, nxt) if nxt < len(raw) else len(raw)
        yield MboxMessage(marker, begin, end, from_line, trusted)
        i += 1
