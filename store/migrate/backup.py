"""The backup stream (imsbackup writes it, imsrestore reads it): the one
owner of its layout, described byte by byte in docs/formats.md.

A backup is a sequence of frames, written front to back (so it streams
to a pipe or tape and is read the same way):

    offset  size  field
    0       4     kind: b"MSTB" b"CONF" b"MBOX" b"MESG" b"MEND" b"SUBS" b"TAIL"
    4       8     payload length (little-endian)
    12      4     CRC-32 of the payload
    16      ...   payload

The first frame is MSTB (a JSON object: format version, when, what), the
last TAIL (JSON: counts); a stream without TAIL was cut off. Each
mailbox is MBOX (JSON: everything the index and database know of it),
its messages as MESG frames (META below, then the message's bytes), and
MEND (JSON: counts). SUBS frames (JSON) carry a user's subscriptions. With
--with-config a CONF frame (JSON: {"files": {name: text}}) follows MSTB: the
files of config/ that make the server (CONFIG_FILES); an imsrestore from
before it reads such a stream as damaged at that frame."""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..errors import CorruptionError, InvalidNameError
from ..index import ALL_FLAGS, MAX_DATE, MAX_KEYWORDS, valid_keyword
from ..layout import canonical, check_userid
from ..mailbox import ALL_RIGHTS, MAX_UID, UidRanges

FORMAT_VERSION = 1
MAGIC = b"MSTB"
MBOX, MESG, MEND, SUBS, TAIL, CONF = b"MBOX", b"MESG", b"MEND", b"SUBS", b"TAIL", b"CONF"
KINDS = (MAGIC, MBOX, MESG, MEND, SUBS, TAIL, CONF)
# the files of <root>/config/ a CONF frame may carry: the settings, the users and their
# password hashes, the quota warning's text, the expiry rules and their exclusions
CONFIG_FILES = ("store.conf", "passwd", "quotawarn.msg", "store.expirerule",
                "expire_exclude_list")

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
MAX_MESSAGE = (1 << 31) - 1  # bytes: no message a mailbox holds is larger
MAX_MODSEQ = (1 << 63) - 1  # RFC 7162's mod-sequence-value


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
        if kind == MESG and length > MAX_MESSAGE + META.size:
            raise Damaged(f"a message of {length} bytes (a mailbox holds up to {MAX_MESSAGE})",
                          offset, source)
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
            # values a mailbox cannot hold are not kept: a UID outside 1-MAX_UID is given
            # a new one (the restore reports it remapped), an INTERNALDATE outside years
            # 1970-9999 the restore's time, flags other than the system flags dropped
            value: Any = Message(uid if 1 <= uid <= MAX_UID else 0, flags & ALL_FLAGS,
                                 idate if 0 <= idate <= MAX_DATE else int(time.time()),
                                 modseq, kws, digest, data)
        else:
            try:
                value = json.loads(payload)
            except (ValueError, RecursionError):
                raise Damaged(f"{kind.decode()} frame is not JSON (or nested too deep)",
                              offset, source) from None
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
           SUBS: {"user": str, "mailboxes": list},
           CONF: {"files": dict}}


def _unfit(kind: bytes, value: Any) -> str | None:
    """Why a JSON frame cannot be what its kind says, or None: every value
    restore uses is checked here, before anything is written."""
    if not isinstance(value, dict):
        return "is not a JSON object"
    fields = _FIELDS.get(kind, {})
    for name, typ in fields.items():
        if not isinstance(value.get(name), typ) or (typ is int and isinstance(value[name], bool)):
            return f"lacks {name!r} ({typ.__name__})"
    if kind == MBOX:
        return _mbox_unfit(value)
    if kind == SUBS:
        if _bad_user(value["user"]) or not all(isinstance(n, str) for n in value["mailboxes"]):
            return "holds a user id or mailbox names that are not ones"
    if kind == CONF:
        files = value["files"]
        if not all(k in CONFIG_FILES and isinstance(v, str) for k, v in files.items()):
            return f"carries files other than {', '.join(CONFIG_FILES)}, or not as text"
    return None


def _bad_user(user: Any) -> bool:
    try:
        check_userid(user)
    except (InvalidNameError, TypeError):
        return True
    return False


def _int_in(v: Any, low: int, high: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _mbox_unfit(v: dict) -> str | None:
    try:
        canonical(v["name"])
    except InvalidNameError as e:
        return f"names no mailbox ({e})"
    if not _int_in(v["uidvalidity"], 1, 0xFFFFFFFF):
        return f"has UIDVALIDITY {v['uidvalidity']}, not within 1-{0xFFFFFFFF}"
    if not _int_in(v["uidnext"], 1, MAX_UID + 1):
        return f"has UIDNEXT {v['uidnext']}, not within 1-{MAX_UID + 1}"
    if not _int_in(v["highest_modseq"], 0, MAX_MODSEQ):
        return f"has HIGHESTMODSEQ {v['highest_modseq']}, not within 0-{MAX_MODSEQ}"
    kws = v["keywords"]
    if len(kws) > MAX_KEYWORDS or not all(isinstance(k, str) and valid_keyword(k) for k in kws):
        return f"has keywords that are not IMAP atoms, or more than {MAX_KEYWORDS}"
    if not all(_int_in(u, 1, MAX_UID) for u in v["uids"]):
        return f"lists UIDs outside 1-{MAX_UID}"
    acl = v.get("acl")
    if acl is not None and not (isinstance(acl, dict) and all(
            isinstance(i, str) and isinstance(r, str) and _acl_entry_ok(i, r)
            for i, r in acl.items())):
        return f"has an ACL that is not identifiers with rights of {ALL_RIGHTS}"
    for name in ("partition", "quotaroot"):
        if name in v and not isinstance(v[name], str):
            return f"has a {name} that is not text"
    for key in ("quota_limit", "quota_messages"):
        limit = v.get(key)
        if limit is not None and not _int_in(limit, 0, MAX_MODSEQ):
            return f"has {key.replace('_', ' ')} {limit!r}"
    seen = v.get("seen_by", {})
    if not isinstance(seen, dict):
        return "has seen_by that is not an object"
    for user, ranges in seen.items():
        if _bad_user(user) or not isinstance(ranges, list):
            return f"has seen_by of {user!r}, not a user id with UID ranges"
        try:
            UidRanges(ranges)
        except (ValueError, TypeError):
            return f"has seen_by ranges of {user!r} that are not UID ranges within 1-{MAX_UID}"
    return None


def _acl_entry_ok(identifier: str, rights: str) -> bool:
    return (bool(identifier) and identifier.isprintable() and not set(identifier) & set("\t\n/")
            and set(rights) <= set(ALL_RIGHTS))


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
