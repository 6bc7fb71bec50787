"""The backup stream (imsbackup writes it, imsrestore reads it): the one
owner of its layout, described byte by byte in docs/formats.md.

A backup is a sequence of frames, written front to back (so it streams
to a pipe or tape and is read the same way):

    offset  size  field
    0       4     kind: b"MSTB" b"MBOX" b"MESG" b"MEND" b"SUBS" b"TAIL"
    4       8     payload length (little-endian)
    12      4     CRC-32 of the payload
    16      ...   payload

The first frame is MSTB (a JSON object: format version, when, what), the
last TAIL (JSON: counts); a stream without TAIL was cut off. Each
mailbox is MBOX (JSON: everything the index and database know of it),
its messages as MESG frames (META below, then the message's bytes), and
MEND (JSON: counts). SUBS frames (JSON) carry a user's subscriptions."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..errors import CorruptionError

FORMAT_VERSION = 1
MAGIC = b"MSTB"
MBOX, MESG, MEND, SUBS, TAIL = b"MBOX", b"MESG", b"MEND", b"SUBS", b"TAIL"
KINDS = (MAGIC, MBOX, MESG, MEND, SUBS, TAIL)

# offset size field
# 0      4    kind
# 4      8    payload length
# 12     4    CRC-32 (zlib.crc32) of the payload
FRAME = struct.Struct("<4sQI")
assert FRAME.size == 16

# a MESG payload starts with META, the message's bytes follow:
# offset size field
# 0      4    UID
# 4      4    system flags (index.FLAG_*)
# 8      8    INTERNALDATE, seconds since the epoch (signed)
# 16     8    modseq
# 24     4    keywords: bit n names the MBOX frame's keywords[n]
# 28     32   SHA-256 of the message's bytes (its GUID)
META = struct.Struct("<IIqQI32s")
assert META.size == 60

MAX_JSON = 64 << 20  # a JSON frame longer than this is damage, not data


@dataclass
class Message:
    uid: int
    flags: int
    internaldate: int
    modseq: int
    keywords: int
    guid: bytes
    data: bytes


def frame(kind: bytes, payload: bytes) -> bytes:
    return FRAME.pack(kind, len(payload), zlib.crc32(payload)) + payload


def json_frame(kind: bytes, obj: dict) -> bytes:
    return frame(kind, json.dumps(obj, sort_keys=True, ensure_ascii=False).encode())


def message_frame(m: Message) -> bytes:
    meta = META.pack(m.uid, m.flags, m.internaldate, m.modseq, m.keywords, m.guid)
    return FRAME.pack(MESG, len(meta) + len(m.data), zlib.crc32(m.data, zlib.crc32(meta))) \
        + meta + m.data


class Damaged(CorruptionError):
    """The stream is damaged or cut off at `offset`: what came before it is good."""

    def __init__(self, message: str, offset: int, source: str):
        super().__init__(f"backup {source} is damaged at offset {offset}: {message}",
                         kind="backup")
        self.offset, self.why = offset, message


def read_frames(f: BinaryIO, source: str, *, messages: bool = True
                ) -> Iterator[tuple[int, bytes, Any]]:
    """(offset, kind, value) of each frame: a dict for JSON frames, a
    Message for MESG (None with messages=False: their bytes are passed
    over unchecked). Raises Damaged at the first frame that is cut off,
    fails its CRC or its message's SHA-256, or is not a frame; the frames
    before it have been given. Ends after TAIL."""
    import hashlib

    offset = 0
    first = True
    while True:
        head = _read(f, FRAME.size)
        if not head:
            raise Damaged("the stream ends without its TAIL frame (cut off)", offset, source)
        if len(head) < FRAME.size:
            raise Damaged("cut off inside a frame header", offset, source)
        kind, length, crc = FRAME.unpack(head)
        if kind not in KINDS or (first and kind != MAGIC):
            why = "not a backup (no MSTB frame first)" if first else f"unknown frame kind {kind!r}"
            raise Damaged(why, offset, source)
        if kind != MESG and length > MAX_JSON:
            raise Damaged(f"a {kind.decode()} frame of {length} bytes", offset, source)
        if kind == MESG and not messages:
            if _skip(f, length) < length:
                raise Damaged("cut off inside a MESG frame", offset, source)
            yield offset, kind, None
            offset += FRAME.size + length
            continue
        payload = _read(f, length)
        if len(payload) < length:
            raise Damaged(f"cut off inside a {kind.decode()} frame", offset, source)
        if zlib.crc32(payload) != crc:
            raise Damaged(f"{kind.decode()} frame fails its CRC", offset, source)
        if kind == MESG:
            if length < META.size:
                raise Damaged("MESG frame shorter than its metadata", offset, source)
            uid, flags, idate, modseq, kws, digest = META.unpack_from(payload)
            data = payload[META.size:]
            if hashlib.sha256(data).digest() != digest:
                raise Damaged(f"message UID {uid} fails its SHA-256", offset, source)
            value: Any = Message(uid, flags, idate, modseq, kws, digest, data)
        else:
            try:
                value = json.loads(payload)
            except ValueError:
                raise Damaged(f"{kind.decode()} frame is not JSON", offset, source) from None
            unfit = _unfit(kind, value)
            if unfit:
                raise Damaged(f"{kind.decode()} frame {unfit}", offset, source)
            if first and value.get("format") != FORMAT_VERSION:
                raise Damaged(f"backup format {value.get('format')!r}, this imsrestore reads "
                              f"{FORMAT_VERSION}", offset, source)
        first = False
        yield offset, kind, value
        offset += FRAME.size + length
        if kind == TAIL:
            return


# what restore reads of each JSON frame, and its type
_FIELDS: dict[bytes, dict[str, type]] = {
    MBOX: {"name": str, "uidvalidity": int, "uidnext": int, "highest_modseq": int,
           "keywords": list, "uids": list},
           MEND: {"name": str},
           SUBS: {"user": str, "mailboxes": list}}


def _unfit(kind: bytes, value: Any) -> str | None:
    """Why a JSON frame cannot be what its kind says, or None."""
    if not isinstance(value, dict):
        return "is not a JSON object"
    fields = _FIELDS.get(kind, {})
    for name, typ in fields.items():
        if not isinstance(value.get(name), typ) or (typ is int and isinstance(value[name], bool)):
            return f"lacks {name!r} ({typ.__name__})"
    return None


def _skip(f: BinaryIO, n: int) -> int:
    """Pass over n bytes (seeking when the file can); the number passed."""
    if f.seekable():
        here = f.tell()
        end = f.seek(0, 2)
        return f.seek(min(here + n, end)) - here
    return sum(len(_read(f, min(n - k, 1 << 24))) for k in range(0, n, 1 << 24))


def _read(f: BinaryIO, n: int) -> bytes:
    """n bytes, fewer only at the end (a pipe gives short reads)."""
    chunks, left = [], n
    while left:
        b = f.read(min(left, 1 << 24))
        if not b:
            break
        chunks.append(b)
        left -= len(b)
    return b"".join(chunks)
