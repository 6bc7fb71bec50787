"""The first header parser (one regex pass per concern), kept as the
specification the fast parser in store.message must agree with."""

import re

from store.message import CACHE_FIELDS, header_end

_WANTED = re.compile(rb"^(" + b"|".join(f.encode() for f in CACHE_FIELDS) + rb")[ \t]*:"
                     rb"([^\n]*(?:\n[ \t][^\n]*)*)", re.M | re.I)
_FOLD = re.compile(rb"\r?\n[ \t]+")


def reference_content_type(value: bytes) -> bytes:
    parts = value.split(b";")
    mime = parts[0].strip().lower() or b"text/plain"
    out = [mime]
    for p in parts[1:]:
        k, _, v = p.strip().partition(b"=")
        if k.strip().lower() in (b"charset", b"boundary"):
            out.append(k.strip().lower() + b"=" + v.strip())
    return b"; ".join(out)


def reference_fields(data: bytes) -> tuple[int, dict[str, bytes]]:
    size = header_end(data)
    fields: dict[str, bytes] = {}
    for m in _WANTED.finditer(data, 0, size):
        key = m.group(1).decode("ascii").lower()
        if key not in fields:
            v = m.group(2)
            fields[key] = (_FOLD.sub(b" ", v) if b"\n" in v else v).strip()
    if "content-type" in fields:
        fields["content-type"] = reference_content_type(fields["content-type"])
    return size, fields
