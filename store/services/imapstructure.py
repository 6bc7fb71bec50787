"""BODY and BODYSTRUCTURE (RFC 3501 7.4.2), and the s-expression writer
they need. Twisted's own puts a space between the parts of a multipart
(the grammar has none: `1*body SP media-subtype`), lower-cases parameter
values (a boundary is case-sensitive), and gives NIL for the encoding of
a part without Content-Transfer-Encoding (RFC 2045: 7BIT)."""

from __future__ import annotations

import email.message
import email.utils
import re

from ..message import to_crlf


class Parts(list):
    """The bodies of a multipart: written back to back."""


def _quoted(b: bytes) -> bytes:
    if b"\r" in b or b"\n" in b or any(c > 0x7E or c == 0 for c in b):
        return b"{%d}\r\n%s" % (len(b), b)
    return b'"' + b.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def sexp(v) -> bytes:
    if v is None:
        return b"NIL"
    if isinstance(v, bool):
        raise TypeError(v)
    if isinstance(v, int):
        return b"%d" % v
    if isinstance(v, str):
        return _quoted(v.encode("utf-8", "surrogateescape"))
    if isinstance(v, bytes):
        return _quoted(v)
    if isinstance(v, Parts):
        return b"".join(sexp(p) for p in v)
    return b"(" + b" ".join(sexp(x) for x in v) + b")"


_UNFOLD = re.compile(rb"\r\n[ \t]+")
_ENVELOPE_FIELDS = (b"date", b"subject", b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc",
                    b"in-reply-to", b"message-id")


def _envelope_fields(header: bytes) -> dict[bytes, str]:
    """The first value of each envelope field, unfolded, as sent (RFC 2047
    words stay encoded: ENVELOPE gives the header's own text)."""
    out: dict[bytes, str] = {}
    for line in _UNFOLD.sub(b" ", header).split(b"\r\n"):
        name, colon, value = line.partition(b":")
        key = name.strip().lower()
        if colon and key in _ENVELOPE_FIELDS and key not in out:
            out[key] = value.strip().decode("utf-8", "surrogateescape")
    return out


def _addresses(value: str | None) -> list | None:
    """RFC 3501's address list: (name adl mailbox host) each."""
    if not value:
        return None
    out = []
    for name, addr in email.utils.getaddresses([value]):
        if not addr and not name:
            continue
        mailbox, at, host = addr.rpartition("@") if "@" in addr else (addr, "", "")
        out.append([name or None, None, mailbox or None, host if at else None])
    return out or None


def envelope(header: bytes) -> list:
    """ENVELOPE (RFC 3501 7.4.2) of a header (CRLF bytes), as values for sexp."""
    f = _envelope_fields(header)
    sender = f.get(b"from")
    return [
        f.get(b"date"), f.get(b"subject"), _addresses(sender),
        _addresses(f.get(b"sender") or sender), _addresses(f.get(b"reply-to") or sender),
        _addresses(f.get(b"to")), _addresses(f.get(b"cc")), _addresses(f.get(b"bcc")),
        f.get(b"in-reply-to"), f.get(b"message-id")]


def _params(part: email.message.Message) -> list | None:
    params = part.get_params(failobj=None, header="content-type")
    out = []
    for k, val in (params or [])[1:]:  # the first is the type itself
        out += [k.upper() if k.lower() == "charset" else k, email.utils.collapse_rfc2231_value(val)]
    if not out and part.get_content_maintype() == "text":
        out = ["CHARSET", "us-ascii"]
    return out or None


def _disposition(part: email.message.Message):
    d = part.get("content-disposition")
    if d is None:
        return None
    params = part.get_params(failobj=None, header="content-disposition") or []
    rest = [x for k, v in params[1:] for x in (k, email.utils.collapse_rfc2231_value(v))]
    return [params[0][0] if params else str(d).split(";")[0].strip(), rest or None]


def _body_bytes(part: email.message.Message) -> bytes:
    payload = part.get_payload(decode=False)
    if isinstance(payload, list):
        payload = "".join(p.as_string() for p in payload)
    return payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else payload


def structure(part: email.message.Message, extended: bool) -> list:
    """A part's BODYSTRUCTURE (extended) or BODY as nested values for sexp."""
    if part.is_multipart() and not _is_message(part):
        out: list = [Parts(structure(p, extended) for p in part.get_payload()),
                     part.get_content_subtype()]
        if extended:
            out += [_params(part), _disposition(part), part.get("content-language"),
                    part.get("content-location")]
        return out
    body = _body_bytes(part) if not _is_message(part) else split_header(
        to_crlf(part.as_bytes()))[1]
    lines = body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)
    main, sub = part.get_content_maintype(), part.get_content_subtype()
    out = [main, sub, _params(part), part.get("content-id"), part.get("content-description"),
           (part.get("content-transfer-encoding") or "7BIT").upper(), len(body)]
    if main == "message" and sub == "rfc822":
        inner = email.message_from_bytes(body)
        out += [envelope(split_header(body)[0]), structure(inner, extended), lines]
    elif main == "text":
        out.append(lines)
    if extended:
        out += [part.get("content-md5"), _disposition(part), part.get("content-language"),
                part.get("content-location")]
    return out


# -- BODY[section]<partial> ------------------------------------------------------------

def split_header(raw: bytes) -> tuple[bytes, bytes]:
    """(header with its blank line, body) of CRLF bytes."""
    i = raw.find(b"\r\n\r\n")
    if raw.startswith(b"\r\n"):
        return b"\r\n", raw[2:]
    return (raw, b"") if i < 0 else (raw[:i + 4], raw[i + 4:])


def _fields(header: bytes, names: list[str], negate: bool) -> bytes:
    """The header's fields named in `names` (or all others), as written,
    folding kept, and the blank line."""
    want = {n.lower() for n in names}
    out, keep = [], False
    for line in header.split(b"\r\n")[:-2]:
        if line[:1] not in (b" ", b"\t"):
            keep = (line.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
                    in want) != negate
        if keep:
            out.append(line + b"\r\n")
    return b"".join(out) + b"\r\n"


def _is_message(m: email.message.Message) -> bool:
    return m.get_content_type() == "message/rfc822" and isinstance(m.get_payload(), list)


def section_bytes(wire: bytes, msg, spec) -> bytes:
    """The bytes of a FETCH BODY[section] (Twisted's parsed `spec`) of a
    message whose CRLF bytes are `wire`; empty for a part that is not there.
    `msg()` gives the parsed message: only a section inside a part needs it."""
    if not spec.part:  # BODY[], [HEADER...], [TEXT] of the message: no parse
        head, body = split_header(wire)
        if spec.header:
            return head if spec.header.fields is None else _fields(
                head, [f.decode() if isinstance(f, bytes) else f for f in spec.header.fields],
                spec.header.negate)
        return body if spec.text else wire
    m, raw = msg(), wire
    for n, p in enumerate(spec.part):
        if _is_message(m) and n:
            m = m.get_payload()[0]
        if m.is_multipart():
            parts = m.get_payload()
            if not 0 <= p < len(parts):
                return b""
            m = parts[p]
        elif p != 0:  # a single-part message's only part is 1
            return b""
        raw = None
    if raw is None:
        if (spec.header or spec.text) and _is_message(m):
            m = m.get_payload()[0]  # n.HEADER, n.TEXT of a message/rfc822 part
        raw = to_crlf(m.as_bytes())
        if not (spec.header or spec.text) and not spec.mime:
            return split_header(raw)[1]  # BODY[n]: the part's content
    head, body = split_header(raw)
    if spec.header:
        if spec.header.fields is None:
            return head
        names = [f.decode() if isinstance(f, bytes) else f for f in spec.header.fields]
        return _fields(head, names, spec.header.negate)
    if spec.mime:
        return head
    if spec.text:
        return body
    return raw


def section_label(spec) -> bytes:
    """`BODY[...]` as the response names it, `<origin>` for a partial."""
    begin, length = spec.partialBegin, spec.partialLength
    spec.partialBegin = spec.partialLength = None
    try:
        label = spec.getBytes().upper()  # Twisted title-cases field names; clients send upper
    finally:
        spec.partialBegin, spec.partialLength = begin, length
    return label if begin is None else label + b"<%d>" % begin


def fetch_section(wire: bytes, msg, spec) -> bytes:
    """The whole `BODY[...]<...> {n}\\r\\n<bytes>` item."""
    data = section_bytes(wire, msg, spec)
    if spec.partialBegin is not None:
        data = data[spec.partialBegin:spec.partialBegin + spec.partialLength]
    return section_label(spec) + b" {%d}\r\n" % len(data) + data
