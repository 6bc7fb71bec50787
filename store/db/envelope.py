"""The value envelope: LMDB keeps no checksums, so every value carries its own.

The one verifier (`value_problem`) is used by the decoder, the database
verifier (verify.py) and the repair alike.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

from .. import logmsg
from ..errors import CorruptionError

# value envelope, 8 bytes, followed by the payload (compact JSON, UTF-8, sorted keys)
#  off size field    meaning
#    0    2 magic    b"MV"
#    2    1 version  envelope version (1)
#    3    1 reserved 0
#    4    4 crc      CRC-32 of the payload
VALUE_HEAD = struct.Struct("<2sBBI")
assert VALUE_HEAD.size == 8
VALUE_MAGIC = b"MV"
VALUE_VERSION = 1


def encode_value(value: dict[str, Any]) -> bytes:
    payload = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return VALUE_HEAD.pack(VALUE_MAGIC, VALUE_VERSION, 0, zlib.crc32(payload)) + payload


def value_problem(raw: bytes) -> str | None:
    """Why a stored value does not verify (envelope and checksum), or None.
    The payload was valid JSON when its checksum was taken, so verification
    need not parse it."""
    if len(raw) < VALUE_HEAD.size:
        return f"value of {len(raw)} bytes, shorter than its {VALUE_HEAD.size}-byte head"
    magic, version, _r, crc = VALUE_HEAD.unpack_from(raw)
    if magic != VALUE_MAGIC or version != VALUE_VERSION:
        return f"head {magic!r} v{version}, expected {VALUE_MAGIC!r} v{VALUE_VERSION}"
    found = zlib.crc32(memoryview(raw)[VALUE_HEAD.size:])
    if found != crc:
        return f"checksum expected {crc:08x}, found {found:08x}"
    return None


def corrupt_value(db: str, key: bytes, detail: str) -> CorruptionError:
    """The error a value (or key) that does not verify is reported with."""
    return CorruptionError(logmsg.DB_VALUE_CORRUPT.format(db=db, key=key, detail=detail),
                           kind=logmsg.DB_VALUE_CORRUPT.code, path=db, where=f"key {key!r}")


def decode_value(db: str, key: bytes, raw: bytes) -> dict[str, Any]:
    why = value_problem(raw)
    if why is not None:
        raise corrupt_value(db, key, why)
    try:
        value = json.loads(raw[VALUE_HEAD.size:])
    except (UnicodeDecodeError, ValueError) as e:
        raise corrupt_value(db, key, f"payload does not decode: {e}") from None
    if not isinstance(value, dict):
        raise corrupt_value(db, key, "payload is not an object")
    return value
