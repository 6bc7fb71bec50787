"""The per-mailbox index files: store.idx, store.cache, store.exp.

This module is the one owner of their byte layout; the writer, imcheck,
reconstruct and stored all go through it. docs/formats.md mirrors the tables.
All integers are little-endian. Checksums are CRC-32 (zlib.crc32).
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import NamedTuple

from . import logmsg
from .crash import ARMED as _CRASH_ARMED
from .crash import crashpoint
from .errors import CorruptionError
from .fsutil import Batch, atomic_write, open_nofollow, put_file
from .message import CACHE_FIELDS, GUID_BYTES

IDX_FILE = "store.idx"
CACHE_FILE = "store.cache"
EXP_FILE = "store.exp"
INDEX_FILES = (IDX_FILE, CACHE_FILE, EXP_FILE)

IDX_MAGIC = b"MSTOREIX"
CACHE_MAGIC = b"MSTCACHE"
EXP_MAGIC = b"MSTEXPNG"
VERSION = 1  # of store.cache
EXP_VERSION = 2  # of store.exp: 2 keeps each record's expunge time (in cache_offset)
EXP_VERSIONS = (1, 2)  # read; version-1 records read as expunged at time 0
IDX_VERSION = 2  # of store.idx: 2 added keywords and recent_uid
IDX_VERSIONS = (1, 2)  # read; a version-1 header is upgraded in place (upgrade_header)
MAX_KEYWORDS = 32  # the bits of a record's keywords field

# store.idx fixed header, 128 bytes
#  off size field          meaning
#    0    8 magic          b"MSTOREIX"
#    8    2 version        format version (2; 1 reads as 2 without keywords)
#   10    2 header_size    size of this fixed header (128)
#   12    4 record_size    size of one record (96)
#   16    8 start_offset   file offset of the first record (after the variable section)
#   24   16 unique_id      mailbox unique id (UUID bytes), never reused
#   40    4 uidvalidity    IMAP UIDVALIDITY
#   44    4 uidnext        next UID to assign; always > every UID ever assigned
#   48    4 exists         number of records
#   52    4 hdr_flags      bit 0 (HDR_CARRIES_LIMIT): quota_limit holds the limit of this
#                          mailbox's quota root (set on the root's own mailbox only);
#                          bit 1 (HDR_CARRIES_MSG_LIMIT): quota_messages holds its message
#                          limit (written with bit 0 since message limits exist)
#   56    8 total_bytes    sum of the records' message sizes
#   64    8 highest_modseq highest modseq given to any record
#   72    8 last_update    seconds since the epoch of the last header write
#   80    2 name_len       bytes of mailbox name in the variable section
#   82    2 qroot_len      bytes of quota root name in the variable section
#   84    4 acl_len        bytes of ACL text in the variable section
#   88    8 quota_limit    with HDR_CARRIES_LIMIT: the quota root's limit in bytes,
#                          NO_LIMIT for none; else 0 (files from before it: zeros)
#   96    4 kw_len         bytes of keyword table in the variable section (v1: 0)
#  100    4 recent_uid     the lowest UID no session has yet reported as \Recent (v1: 0)
#  104    8 quota_messages with HDR_CARRIES_MSG_LIMIT: the quota root's message-count limit;
#                          else 0 (no message limit; files from before it: zeros)
#  112   12 reserved       zeros
#  124    4 crc            CRC-32 of bytes 0-123 followed by the variable section
# Variable section at 128: name (UTF-8), quota root (UTF-8), ACL
# ("identifier\trights\n" per entry, UTF-8), keyword table ("keyword\n" per
# keyword, bit 0 first, ASCII); zero padding to an 8-byte boundary.
HEADER = struct.Struct("<8sHHIQ16sIIIIQQQHHIQIIQ12sI")
assert HEADER.size == 128
HDR_CARRIES_LIMIT = 1
HDR_CARRIES_MSG_LIMIT = 2
NO_LIMIT = (1 << 64) - 1

# store.idx record and store.exp record, 96 bytes
#  off size field         meaning
#    0    4 uid           message UID
#    4    4 flags         system flags bit set (FLAG_* below)
#    8    8 internaldate  arrival time, seconds since the epoch
#   16    8 sentdate      Date: header, seconds since the epoch (0: unreadable)
#   24    8 size          message file size in bytes
#   32    4 header_size   bytes of the message header (body starts here)
#   36    4 cache_len     bytes of the cache entry
#   40    8 cache_offset  offset of the cache entry in store.cache
#   48    8 modseq        modification sequence of the last change
#   56   32 guid          SHA-256 of the message content
#   88    4 keywords      keyword bit set: bit n is the header's n-th keyword (v1: 0)
#   92    4 crc           CRC-32 of bytes 0-91
RECORD = struct.Struct(f"<IIqqQIIQQ{GUID_BYTES}sII")
assert RECORD.size == 96

# store.cache file header, 16 bytes: magic b"MSTCACHE" (8), version u16 (2), reserved (6)
CACHE_HEADER = struct.Struct("<8sH6s")
assert CACHE_HEADER.size == 16
# store.cache entry head, 12 bytes, followed by `payload_len` bytes of payload
#  off size field        meaning
#    0    4 uid          UID of the message this entry belongs to
#    4    4 payload_len  bytes of payload that follow
#    8    4 crc          CRC-32 of the uid and payload_len fields followed by the payload
CACHE_ENTRY = struct.Struct("<III")
assert CACHE_ENTRY.size == 12
# payload: one u32 length per field of message.CACHE_FIELDS (8 x 4 = 32 bytes),
# then the field values back to back (raw header bytes, unfolded).
CACHE_LENS = struct.Struct(f"<{len(CACHE_FIELDS)}I")
assert CACHE_LENS.size == 32

# store.exp file header, 16 bytes: magic b"MSTEXPNG" (8), version u16 (2),
# record_size u16 (2, = 96), reserved (4); then RECORDs of expunged messages. In them
# cache_len is 0 and cache_offset is the time of the expunge, seconds since the epoch
# (version 2; a version-1 file's records read as expunged at 0, long ago): their cache
# entries are gone, and store.cleanupage keeps files that long after the expunge.
EXP_HEADER = struct.Struct("<8sHH4s")
assert EXP_HEADER.size == 16

FLAG_SEEN, FLAG_ANSWERED, FLAG_FLAGGED, FLAG_DELETED, FLAG_DRAFT = 1, 2, 4, 8, 16
FLAG_NAMES = {FLAG_SEEN: "\\Seen", FLAG_ANSWERED: "\\Answered", FLAG_FLAGGED: "\\Flagged",
              FLAG_DELETED: "\\Deleted", FLAG_DRAFT: "\\Draft"}
ALL_FLAGS = sum(FLAG_NAMES)  # the system flags; a source's other bits mean nothing here
MAX_DATE = 253402300799  # 9999-12-31 23:59:59 UTC: IMAP's date-time has four-digit years


# RFC 3501 atom characters, less the backslash that starts a system flag
_KEYWORD_BAD = set('(){ %*"\\]') | {chr(c) for c in range(0x20)} | {"\x7f"}


def valid_keyword(name: str) -> bool:
    return (0 < len(name) <= 64 and name.isascii() and not set(name) & _KEYWORD_BAD)


def keyword_bits(header: Header, names: list[str]) -> tuple[int, list[str]]:
    """(the bits of the keywords of `names` that the table holds, the names
    it does not). Keywords match without regard to case (RFC 3501)."""
    pos = {k.lower(): i for i, k in enumerate(header.keywords)}
    bits, missing = 0, []
    for n in names:
        i = pos.get(n.lower())
        if i is None:
            missing.append(n)
        else:
            bits |= 1 << i
    return bits, missing


def keyword_names(header: Header, bits: int) -> list[str]:
    return [k for i, k in enumerate(header.keywords) if bits >> i & 1]


def flags_to_names(flags: int) -> list[str]:
    return [n for bit, n in FLAG_NAMES.items() if flags & bit]


def names_to_flags(names: str) -> int:
    lookup = {n.lower().lstrip("\\"): bit for bit, n in FLAG_NAMES.items()}
    out = 0
    for tok in names.replace(",", " ").split():
        key = tok.lower().lstrip("\\")
        if key not in lookup:
            raise ValueError(f"unknown flag {tok!r} (known: {' '.join(FLAG_NAMES.values())})")
        out |= lookup[key]
    return out


@dataclass
class Header:
    name: str
    unique_id: bytes
    uidvalidity: int
    uidnext: int = 1
    exists: int = 0
    total_bytes: int = 0
    highest_modseq: int = 0
    last_update: int = 0
    quotaroot: str = ""
    acl: dict[str, str] = field(default_factory=dict)
    start_offset: int = 0  # derived when packed
    # on a quota root's own mailbox (quota_root_mailbox): the spool's copy
    # of the root's limit (None: no limit), so a database rebuilt from the
    # spool keeps it; carries_limit False means this header says nothing
    carries_limit: bool = False
    quota_limit: int | None = None
    quota_messages: int | None = None  # the root's message-count limit, carried with it
    # the mailbox's keywords, bit n of a record's `keywords` naming keywords[n];
    # a keyword stays in the table once added (reconstruct keeps it too)
    keywords: list[str] = field(default_factory=list)
    recent_uid: int = 0  # UIDs from here on are \Recent to the next session that selects
    version: int = IDX_VERSION  # as read; pack() always writes IDX_VERSION

    def _texts(self) -> tuple[bytes, bytes]:
        acl = "".join(f"{k}\t{v}\n" for k, v in sorted(self.acl.items())).encode()
        return acl, "".join(f"{k}\n" for k in self.keywords).encode()

    def variable(self) -> bytes:
        acl, kws = self._texts()
        body = self.name.encode() + self.quotaroot.encode() + acl + kws
        return body + b"\0" * (-(HEADER.size + len(body)) % 8)

    def pack(self) -> bytes:
        var = self.variable()
        self.start_offset = HEADER.size + len(var)
        acl, kws = self._texts()
        limit = 0 if not self.carries_limit else (
            NO_LIMIT if self.quota_limit is None else self.quota_limit)
        # the message limit only where one is set: a header without one stays byte for
        # byte what it was before message limits existed
        msgs = 0 if not self.carries_limit or self.quota_messages is None else self.quota_messages
        hflags = (HDR_CARRIES_LIMIT if self.carries_limit else 0) | (
            HDR_CARRIES_MSG_LIMIT if self.carries_limit and self.quota_messages is not None
            else 0)
        fixed = HEADER.pack(IDX_MAGIC, IDX_VERSION, HEADER.size, RECORD.size, self.start_offset,
                            self.unique_id, self.uidvalidity, self.uidnext, self.exists,
                            hflags, self.total_bytes, self.highest_modseq, self.last_update,
                            len(self.name.encode()), len(self.quotaroot.encode()), len(acl),
                            limit, len(kws), self.recent_uid, msgs, b"\0" * 12, 0)
        crc = zlib.crc32(var, zlib.crc32(fixed[:-4]))
        return fixed[:-4] + struct.pack("<I", crc) + var


class Record(NamedTuple):
    """One message's record (a tuple: a rebuild makes hundreds of thousands)."""

    uid: int
    flags: int
    internaldate: int
    sentdate: int
    size: int
    header_size: int
    cache_len: int
    cache_offset: int
    modseq: int
    guid: bytes
    keywords: int = 0  # bit n: the header's keywords[n]

    def pack(self) -> bytes:
        body = _RECORD_BODY.pack(*self)
        return body + _CRC.pack(zlib.crc32(body))

    @classmethod
    def unpack(cls, raw: bytes) -> tuple[Record, int, int]:
        """(record, crc expected, crc found)."""
        f = RECORD.unpack(raw)
        return cls._make(f[:11]), f[11], zlib.crc32(raw[:-4])

    def with_flags(self, flags: int, modseq: int, keywords: int | None = None) -> Record:
        return self._replace(flags=flags, modseq=modseq,
                             keywords=self.keywords if keywords is None else keywords)


# the record without its trailing crc, and the crc alone: one owner (RECORD)
_RECORD_BODY = struct.Struct(RECORD.format[:-1])
_CRC = struct.Struct("<I")
assert _RECORD_BODY.size + _CRC.size == RECORD.size


def _corrupt(msg: logmsg.Msg, mailbox: str, path: str, where: str | None = None, **kw):
    return CorruptionError(msg.format(mailbox=mailbox, **kw), kind=msg.code,
                           mailbox=mailbox, path=path, where=where)


@dataclass
class Index:
    """A parsed store.idx: its header, records and every problem found."""

    header: Header
    records: list[Record]
    problems: list[CorruptionError]


def parse_header(data: bytes, mailbox: str, path: str) -> Header:
    if len(data) < HEADER.size or data[:8] != IDX_MAGIC:
        raise _corrupt(logmsg.IDX_MISSING_HEADER, mailbox, path,
                       f"file size {len(data)}, need {HEADER.size} bytes starting {IDX_MAGIC!r}")
    f = HEADER.unpack_from(data)
    (_magic, version, hsize, rsize, start, uniq, uidvalidity, uidnext, exists, hflags,
     total, modseq, last, nlen, qlen, alen, limit, klen, recent, msgs, _res, crc) = f
    if version not in IDX_VERSIONS or hsize != HEADER.size or rsize != RECORD.size:
        raise _corrupt(logmsg.IDX_MISSING_HEADER, mailbox, path,
                       f"version/header/record size {version}/{hsize}/{rsize}, "
                       f"expected {IDX_VERSION}/{HEADER.size}/{RECORD.size}")
    if start > len(data):
        raise _corrupt(logmsg.IDX_START_BEYOND_EOF, mailbox, path,
                       f"start_offset {start}, file size {len(data)}")
    var = data[HEADER.size:start]
    found = zlib.crc32(var, zlib.crc32(data[:HEADER.size - 4]))
    if found != crc or start < HEADER.size + nlen + qlen + alen + klen:
        raise _corrupt(logmsg.IDX_HEADER_CHECKSUM, mailbox, path, "offset 124",
                       expected=crc, found=found)
    try:
        name = var[:nlen].decode()
        qroot = var[nlen:nlen + qlen].decode()
        acl = dict(line.split("\t", 1) for line in var[nlen + qlen:nlen + qlen + alen]
                   .decode().splitlines() if "\t" in line)
        end = nlen + qlen + alen
        keywords = var[end:end + klen].decode("ascii").splitlines()
    except UnicodeDecodeError as e:
        raise _corrupt(logmsg.IDX_HEADER_CHECKSUM, mailbox, path, f"variable section: {e}",
                       expected=crc, found=found) from None
    carries = bool(hflags & HDR_CARRIES_LIMIT)
    return Header(name, uniq, uidvalidity, uidnext, exists, total, modseq, last, qroot, acl, start,
                  carries_limit=carries,
                  quota_limit=None if not carries or limit == NO_LIMIT else limit,
                  quota_messages=msgs if carries and hflags & HDR_CARRIES_MSG_LIMIT else None,
                  keywords=keywords, recent_uid=recent, version=version)


def symlinked_files(mailbox_dir: str) -> list[str]:
    """The index files of a mailbox that are symlinks (never read or written
    through: the store refuses them)."""
    return [p for p in (os.path.join(mailbox_dir, f) for f in INDEX_FILES) if os.path.islink(p)]


def read_header(mailbox_dir: str, mailbox: str) -> Header:
    """Read and verify only the header (O(1) in the number of messages)."""
    path = os.path.join(mailbox_dir, IDX_FILE)
    with open_nofollow(path, "rb") as f:
        data = f.read(4096)
        if len(data) >= HEADER.size and data[:8] == IDX_MAGIC:
            start = HEADER.unpack_from(data)[4]
            if start > len(data):
                f.seek(0)
                data = f.read(start)
        size = os.fstat(f.fileno()).st_size
    header = parse_header(data, mailbox, path)
    if header.start_offset > size:
        raise _corrupt(logmsg.IDX_START_BEYOND_EOF, mailbox, path,
                       f"start_offset {header.start_offset}, file size {size}")
    return header


def read_index(mailbox_dir: str, mailbox: str) -> Index:
    """Parse store.idx. Header damage raises CorruptionError; damage to the
    records is collected in `problems` (bad records are left out)."""
    path = os.path.join(mailbox_dir, IDX_FILE)
    with open_nofollow(path, "rb") as f:
        data = f.read()
    header = parse_header(data, mailbox, path)
    records: list[Record] = []
    problems: list[CorruptionError] = []
    start = header.start_offset
    body_len = len(data) - start
    nrec, extra = divmod(body_len, RECORD.size)
    if extra:
        problems.append(_corrupt(logmsg.IDX_PARTIAL_RECORD, mailbox, path,
                                 f"offset {start + nrec * RECORD.size}", extra=extra,
                                 offset=start + nrec * RECORD.size))
    prev = 0
    total = 0
    # iter_unpack over a view: no slice copied per record (1.5 -> 1.1 µs a record)
    view, crc, make, covered = memoryview(data), zlib.crc32, Record._make, RECORD.size - 4
    for i, f in enumerate(RECORD.iter_unpack(view[start:start + nrec * RECORD.size])):
        off = start + i * RECORD.size
        expected, found = f[11], crc(view[off:off + covered])
        if expected != found:
            problems.append(_corrupt(logmsg.IDX_RECORD_CHECKSUM, mailbox, path, f"offset {off}",
                                     recno=i, offset=off, expected=expected, found=found))
            continue
        rec = make(f[:11])
        if rec.uid <= prev:
            problems.append(_corrupt(logmsg.IDX_UID_ORDER, mailbox, path, f"record {i}",
                                     recno=i, uid=rec.uid, prev=prev))
            continue
        prev = rec.uid
        total += rec.size
        records.append(rec)
    if nrec != header.exists:
        problems.append(_corrupt(logmsg.IDX_COUNT_MISMATCH, mailbox, path, "header exists",
                                 expected=header.exists, found=nrec))
    elif total != header.total_bytes and len(records) == nrec:
        problems.append(_corrupt(logmsg.IDX_SIZE_MISMATCH, mailbox, path, "header total_bytes",
                                 expected=header.total_bytes, found=total))
    if prev and header.uidnext <= prev:
        problems.append(_corrupt(logmsg.IDX_UIDNEXT, mailbox, path, "header uidnext",
                                 uidnext=header.uidnext, uid=prev))
    return Index(header, records, problems)


def salvage_records(mailbox_dir: str) -> list[Record]:
    """The records of a store.idx whose header is damaged. Each record has
    its own checksum, so they are found without the header: the first
    8-byte-aligned offset after the fixed header where a record verifies
    (a random 96 bytes pass a CRC-32 once in 4 billion), then every record
    from there on that verifies and continues the UID order."""
    try:
        with open_nofollow(os.path.join(mailbox_dir, IDX_FILE), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    last = len(data) - RECORD.size
    start = next((off for off in range(HEADER.size, last + 1, 8)
                  if _verifies(data, off)), None)
    if start is None:
        return []
    out: list[Record] = []
    for off in range(start, last + 1, RECORD.size):
        rec, expected, found = Record.unpack(data[off:off + RECORD.size])
        if expected == found and rec.uid > (out[-1].uid if out else 0):
            out.append(rec)
    return out


def _verifies(data: bytes, off: int) -> bool:
    rec, expected, found = Record.unpack(data[off:off + RECORD.size])
    return expected == found and rec.uid > 0


# ---- cache ---------------------------------------------------------------

def pack_cache_entry(uid: int, fields: dict[str, bytes]) -> bytes:
    values = list(map(fields.get, CACHE_FIELDS, _NO_VALUES))
    payload = CACHE_LENS.pack(*map(len, values)) + b"".join(values)
    head = _CACHE_HEAD.pack(uid, len(payload))
    return head + _CRC.pack(zlib.crc32(payload, zlib.crc32(head))) + payload


def pack_cache(entries: list[tuple[Record, dict[str, bytes]]], start: int
               ) -> tuple[bytes, list[Record]]:
    """The cache entries of (record, fields) pairs laid out from file offset
    `start`, and the records pointing at them."""
    blobs, out, pos = [], [], start
    for r, fields in entries:
        blob = pack_cache_entry(r.uid, fields)
        out.append(r._replace(cache_len=len(blob), cache_offset=pos))
        blobs.append(blob)
        pos += len(blob)
    return b"".join(blobs), out


_NO_VALUES = (b"",) * len(CACHE_FIELDS)
_CACHE_HEAD = struct.Struct(CACHE_ENTRY.format[:-1])  # uid, payload_len: what the crc covers


def cache_entry_problem(cache_data: bytes, rec: Record) -> str | None:
    """Why the cache entry of `rec` does not verify, or None when it does."""
    off, length = rec.cache_offset, rec.cache_len
    if (off < CACHE_HEADER.size or off + length > len(cache_data)
            or length < CACHE_ENTRY.size + CACHE_LENS.size):
        return f"entry of {length} bytes outside the file of {len(cache_data)} bytes"
    uid, plen, crc = CACHE_ENTRY.unpack_from(cache_data, off)
    if uid != rec.uid or CACHE_ENTRY.size + plen != length:
        return (f"entry is for uid {uid} with {plen} bytes, expected uid {rec.uid} "
                f"with {length - CACHE_ENTRY.size}")
    view = memoryview(cache_data)
    found = zlib.crc32(view[off + CACHE_ENTRY.size:off + length], zlib.crc32(view[off:off + 8]))
    if found != crc:
        return f"checksum expected {crc:08x}, found {found:08x}"
    if CACHE_LENS.size + sum(CACHE_LENS.unpack_from(cache_data, off + CACHE_ENTRY.size)) != plen:
        return "field lengths do not add up to the payload"
    return None


def read_cache_entry(cache_data: bytes, rec: Record, mailbox: str, path: str) -> dict[str, bytes]:
    """Decode one cache entry, verifying it belongs to `rec` and its checksum."""
    why = cache_entry_problem(cache_data, rec)
    if why is not None:
        raise _corrupt(logmsg.CACHE_INVALID, mailbox, path, f"offset {rec.cache_offset}: {why}",
                       uid=rec.uid)
    start = rec.cache_offset + CACHE_ENTRY.size
    lens = CACHE_LENS.unpack_from(cache_data, start)
    out, pos = {}, start + CACHE_LENS.size
    for k, n in zip(CACHE_FIELDS, lens, strict=True):
        if n:
            out[k] = cache_data[pos:pos + n]
        pos += n
    return out


def read_cache_file(mailbox_dir: str, mailbox: str) -> bytes:
    path = os.path.join(mailbox_dir, CACHE_FILE)
    with open_nofollow(path, "rb") as f:
        data = f.read()
    if len(data) < CACHE_HEADER.size or data[:8] != CACHE_MAGIC:
        raise _corrupt(logmsg.CACHE_INVALID, mailbox, path, "file header", uid=0)
    return data


# ---- writers -------------------------------------------------------------

def empty_cache() -> bytes:
    return CACHE_HEADER.pack(CACHE_MAGIC, VERSION, b"\0" * 6)


def _empty_exp() -> bytes:
    return EXP_HEADER.pack(EXP_MAGIC, EXP_VERSION, RECORD.size, b"\0" * 4)


def write_index(mailbox_dir: str, header: Header, records: list[Record],
                cache: bytes | None = None, *, fsync_directory: bool = True,
                batch: Batch | None = None) -> None:
    """Atomically write a whole store.idx (and store.cache when given), now
    or as part of `batch`.

    The cache is swapped first. A crash between the two swaps leaves the old
    index over the new cache; its entries then fail their uid/checksum test
    ("Invalid cache data ... Needs reconstruct") rather than being misread."""
    header.exists = len(records)
    header.total_bytes = sum(r.size for r in records)
    if cache is not None:
        put_file(os.path.join(mailbox_dir, CACHE_FILE), cache if cache else empty_cache(), batch,
                 fsync_directory=False)
    put_file(os.path.join(mailbox_dir, IDX_FILE),
             header.pack() + b"".join(r.pack() for r in records), batch,
             fsync_directory=fsync_directory)


def create_index(mailbox_dir: str, header: Header) -> None:
    write_index(mailbox_dir, header, [], cache=empty_cache())
    with atomic_write(os.path.join(mailbox_dir, EXP_FILE)) as f:
        f.write(_empty_exp())


def append(mailbox_dir: str, header: Header, entries: list[tuple[Record, dict[str, bytes]]],
           *, durable: bool = True) -> list[Record]:
    """Append records (O(1): no rewrite): cache entries first, then records,
    then the fixed header in place. Caller holds the mailbox lock and has
    made the message files durable. Returns the records as written."""
    cpath = os.path.join(mailbox_dir, CACHE_FILE)
    ipath = os.path.join(mailbox_dir, IDX_FILE)
    with open_nofollow(cpath, "r+b") as cf:
        blobs, written = pack_cache(entries, cf.seek(0, os.SEEK_END))
        cf.write(blobs)
        if durable:
            os.fsync(cf.fileno())
    with open_nofollow(ipath, "r+b") as f:
        end = f.seek(0, os.SEEK_END)
        if end != header.start_offset + header.exists * RECORD.size:
            end = _roll_forward(f, header, end, ipath)
        f.seek(end)
        f.write(b"".join(r.pack() for r in written))
        if _CRASH_ARMED:
            f.flush()  # what a kill leaves: the records in the file, the header not
            crashpoint("append:after-records")
        header.exists += len(written)
        header.total_bytes += sum(r.size for r in written)
        header.uidnext = max(header.uidnext, max(r.uid for r in written) + 1)
        header.highest_modseq = max(header.highest_modseq, max(r.modseq for r in written))
        f.seek(0)
        f.write(header.pack()[:HEADER.size])
        if durable:
            os.fsync(f.fileno())
    return written


def settle(mailbox_dir: str, mailbox: str) -> bool:
    """Finish an append cut off between its records and its header update
    (as the next append would: _roll_forward), so that a writer that reads
    the whole index first does not take it for damage. The caller holds
    the mailbox lock. True when there was one to finish (never when the
    header itself is damaged: that is reconstruct's)."""
    try:
        header = read_header(mailbox_dir, mailbox)
    except CorruptionError:
        return False
    path = os.path.join(mailbox_dir, IDX_FILE)
    with open_nofollow(path, "r+b") as f:
        end = f.seek(0, os.SEEK_END)
        if end <= header.start_offset + header.exists * RECORD.size:
            return False
        _roll_forward(f, header, end, path)
        f.seek(0)
        f.write(header.pack()[:HEADER.size])
        os.fsync(f.fileno())
    return True


def _roll_forward(f, header: Header, end: int, path: str) -> int:
    """An append was cut off between its records and its header update.
    Whole records that verify and continue the UID sequence are adopted
    (their message files were made durable before them); a torn tail is cut
    off. Returns the new end of the records."""
    good_end = header.start_offset + header.exists * RECORD.size
    if end < good_end:
        raise _corrupt(logmsg.IDX_COUNT_MISMATCH, header.name, path,
                       f"file size {end}, expected {good_end}", expected=header.exists,
                       found=(end - header.start_offset) // RECORD.size)
    f.seek(good_end)
    tail = f.read(end - good_end)
    prev = header.uidnext - 1
    adopted = []
    for off in range(0, len(tail) - RECORD.size + 1, RECORD.size):
        rec, expected, found = Record.unpack(tail[off:off + RECORD.size])
        if expected != found or rec.uid <= prev:
            break
        adopted.append(rec)
        prev = rec.uid
    new_end = good_end + len(adopted) * RECORD.size
    if adopted:
        header.exists += len(adopted)
        header.total_bytes += sum(r.size for r in adopted)
        header.uidnext = prev + 1
        header.highest_modseq = max([header.highest_modseq] + [r.modseq for r in adopted])
    f.truncate(new_end)
    logmsg.log("index", logmsg.IDX_ROLLED_FORWARD, mailbox=header.name, adopted=len(adopted),
               dropped=end - new_end)
    return new_end


def update_records(mailbox_dir: str, header: Header, changes: list[tuple[int, Record]], *,
                   durable: bool = True) -> None:
    """Rewrite records in place, (position, record) each, then the fixed
    header; one fsync. Each record is 96 bytes with its own CRC: a crash
    leaves each one old or new. The keyword table must be unchanged (a new
    keyword rewrites the whole file: write_index)."""
    with open_nofollow(os.path.join(mailbox_dir, IDX_FILE), "r+b") as f:
        for pos, rec in changes:
            f.seek(header.start_offset + pos * RECORD.size)
            f.write(rec.pack())
            header.highest_modseq = max(header.highest_modseq, rec.modseq)
        f.seek(0)
        f.write(header.pack()[:HEADER.size])
        if durable:
            os.fsync(f.fileno())


def write_header(mailbox_dir: str, header: Header, *, durable: bool = True) -> None:
    """Rewrite the fixed header in place (128 bytes: one sector), the
    variable section being unchanged."""
    update_records(mailbox_dir, header, [], durable=durable)


def upgrade_header(mailbox_dir: str, mailbox: str) -> bool:
    """Bring a version-1 store.idx to the current version, in place: its
    fixed header is rewritten (its reserved zeros read as no keywords and
    no recent UID; records are unchanged, their reserved zeros being no
    keywords). The caller holds the mailbox lock. Returns whether it did."""
    path = os.path.join(mailbox_dir, IDX_FILE)
    with open_nofollow(path, "rb") as f:
        data = f.read(65536)
    header = parse_header(data, mailbox, path)
    if header.version == IDX_VERSION:
        return False
    if header.variable() == data[HEADER.size:header.start_offset]:
        write_header(mailbox_dir, header)
    else:  # laid out otherwise than this code lays it out: rewritten whole
        idx = read_index(mailbox_dir, mailbox)
        if idx.problems:
            raise idx.problems[0]
        write_index(mailbox_dir, idx.header, idx.records)
    return True


def read_expunged(mailbox_dir: str, mailbox: str) -> list[Record]:
    """Records of store.exp; damage raises its CorruptionError."""
    out, problems = read_expunged_tolerant(mailbox_dir, mailbox)
    if problems:
        raise problems[0]
    return out


def read_expunged_tolerant(mailbox_dir: str, mailbox: str
                           ) -> tuple[list[Record], list[CorruptionError]]:
    """Records of store.exp that verify, and the problems of the others."""
    path = os.path.join(mailbox_dir, EXP_FILE)
    out: list[Record] = []
    problems: list[CorruptionError] = []
    try:
        with open_nofollow(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return out, problems
    version = EXP_VERSION
    if len(data) < EXP_HEADER.size or data[:8] != EXP_MAGIC:
        problems.append(_corrupt(logmsg.EXP_CORRUPT, mailbox, path, "file header",
                                 detail="missing file header"))
        data = b""
    else:
        _magic, version, rsize, _reserved = EXP_HEADER.unpack_from(data)
        if version not in EXP_VERSIONS or rsize != RECORD.size:
            problems.append(_corrupt(logmsg.EXP_CORRUPT, mailbox, path, "file header",
                                     detail=f"version {version} record size {rsize}, expected "
                                            f"{EXP_VERSION} {RECORD.size}"))
            data = b""
    body = data[EXP_HEADER.size:]
    nrec, extra = divmod(len(body), RECORD.size)
    if extra:
        problems.append(_corrupt(logmsg.EXP_CORRUPT, mailbox, path, f"offset {len(data) - extra}",
                                 detail=f"{extra} trailing bytes"))
    for i in range(nrec):
        off = EXP_HEADER.size + i * RECORD.size
        rec, expected, found = Record.unpack(data[off:off + RECORD.size])
        if expected != found:
            problems.append(_corrupt(logmsg.EXP_CORRUPT, mailbox, path, f"offset {off}",
                                     detail=f"record {i} checksum expected {expected:08x}, "
                                            f"found {found:08x}"))
            continue
        out.append(rec if version == EXP_VERSION else rec._replace(cache_len=0, cache_offset=0))
    return out, problems


def as_expunged(rec: Record, when: int) -> Record:
    """The record as store.exp keeps it: expunged at `when`."""
    return rec._replace(cache_len=0, cache_offset=when)


def write_expunged(mailbox_dir: str, records: list[Record], *,
                   fsync_directory: bool = True, batch: Batch | None = None) -> None:
    put_file(os.path.join(mailbox_dir, EXP_FILE),
             _empty_exp() + b"".join(r.pack() for r in records), batch,
             fsync_directory=fsync_directory)

