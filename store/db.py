"""The mailbox database: an LMDB environment in `<root>/mboxlist/`.

Named databases (all keys UTF-8):
  folder   mailbox name -> {partition, uniqueid, uidvalidity, acl, quotaroot}
  quota    quota root   -> {limit_bytes (null: none), used_bytes, used_messages}
  lright   identifier   -> {mailboxes: [names on whose ACL it appears]}
  subscr   user id      -> {mailboxes: [subscribed names]}
  peruser  "<user>\\0<mailbox>" -> {seen: [[first_uid, last_uid], ...]}

LMDB has no checksums, so every value carries its own: see VALUE_HEAD.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import lmdb

from . import logmsg
from .errors import CorruptionError, StoreError

DATABASES = ("folder", "quota", "lright", "subscr", "peruser")
INITIAL_MAP_SIZE = 64 << 20
MAX_DBS = 8

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

# LMDB's meta page, twice at the head of data.mdb (page 0 and page 1), as
# lmdb 0.9 lays it out on a 64-bit machine (mdb.c: MDB_page header, MDB_meta).
# Read only to check, before mapping the file, that it is as long as its
# newest transaction says: pages mapped past the end of a truncated file
# kill the reader with SIGBUS.
#  off size field
#    0   16 page header  pgno (8), pad (2), flags (2), lower/upper (4)
#   16    4 mm_magic     0xBEEFC0DE
#   20    4 mm_version
#   24    8 mm_address
#   32    8 mm_mapsize
#   40    4 md_pad       of the free-page DB: the page size (mm_psize)
#   44   44 rest of the free-page DB record (MDB_db, 48 bytes in all)
#   88   48 main DB record
#  136    8 mm_last_pg   last page in use
#  144    8 mm_txnid     transaction that wrote this meta
LMDB_META = struct.Struct("<16sIIQQI44s48sQQ")
assert LMDB_META.size == 152
LMDB_MAGIC = 0xBEEFC0DE

log = logging.getLogger("store.db")

# what LMDB raises when the pages themselves are damaged (as opposed to a
# full map, a held lock or a bad argument)
# (MDB_BAD_TXN: a transaction LMDB gave up on after such an error)
DAMAGE_ERRORS = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError,
                 lmdb.VersionMismatchError, lmdb.BadTxnError)


def unusable(path: str, detail: object) -> CorruptionError:
    """The error every command reports a damaged database with (db-unusable)."""
    return CorruptionError(logmsg.DB_UNUSABLE.format(path=path, detail=detail),
                           kind=logmsg.DB_UNUSABLE.code, path=os.path.join(path, "data.mdb"))


def data_file_problem(path: str) -> str | None:
    """Why data.mdb in `path` cannot be mapped safely (shorter than its
    newest transaction's last page), or None. Anything else odd about the
    meta pages is left for LMDB's own open to report."""
    fpath = os.path.join(path, "data.mdb")
    with open(fpath, "rb") as f:
        first = f.read(LMDB_META.size)
        if not first:
            return None  # a new, empty file: LMDB initialises it
        if len(first) < LMDB_META.size:
            return f"{len(first)} bytes, shorter than one meta page"
        m0 = LMDB_META.unpack(first)
        psize = m0[5]
        if m0[1] != LMDB_MAGIC or psize < 512 or psize > 65536 or psize & (psize - 1):
            return None
        f.seek(psize)
        second = f.read(LMDB_META.size)
        size = os.fstat(f.fileno()).st_size  # after the metas: the file only grows before them
    if len(second) < LMDB_META.size:
        return f"{size} bytes, shorter than its two meta pages ({2 * psize} bytes)"
    m1 = LMDB_META.unpack(second)
    newest = max((m for m in (m0, m1) if m[1] == LMDB_MAGIC), key=lambda m: m[9])
    need = (newest[8] + 1) * psize
    if size < need:
        return (f"{size} bytes, but its last transaction ({newest[9]}) uses pages up to "
                f"{newest[8]}: expected at least {need} bytes")
    return None


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


def decode_value(db: str, key: bytes, raw: bytes) -> dict[str, Any]:
    def bad(detail: str) -> CorruptionError:
        return CorruptionError(logmsg.DB_VALUE_CORRUPT.format(db=db, key=key, detail=detail),
                               kind=logmsg.DB_VALUE_CORRUPT.code, path=db, where=f"key {key!r}")

    if len(raw) < VALUE_HEAD.size:
        raise bad(f"value of {len(raw)} bytes, shorter than its {VALUE_HEAD.size}-byte head")
    magic, version, _r, crc = VALUE_HEAD.unpack_from(raw)
    if magic != VALUE_MAGIC or version != VALUE_VERSION:
        raise bad(f"head {magic!r} v{version}, expected {VALUE_MAGIC!r} v{VALUE_VERSION}")
    payload = raw[VALUE_HEAD.size:]
    found = zlib.crc32(payload)
    if found != crc:
        raise bad(f"checksum expected {crc:08x}, found {found:08x}")
    try:
        value = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as e:
        raise bad(f"payload does not decode: {e}") from None
    if not isinstance(value, dict):
        raise bad("payload is not an object")
    return value


class Database:
    """An open mailbox database. Write through `write()`, which grows the
    map when it fills and retries the transaction.

    The environment is opened without per-commit sync; `write()` syncs
    after each transaction unless told the data is rebuildable. A process
    crash loses nothing either way (the pages are in the OS cache); an OS
    crash can lose only unsynced usage counters, which `reconstruct -q`
    recomputes."""

    def __init__(self, path: str, *, readonly: bool = False, create: bool = False):
        self.path = path
        self.readonly = readonly
        if not create and not os.path.isfile(os.path.join(path, "data.mdb")):
            if not readonly:
                create = True
            else:
                raise StoreError(f"no mailbox database in {path}")
        if not create or os.path.isfile(os.path.join(path, "data.mdb")):
            why = data_file_problem(path)
            if why is not None:
                raise unusable(path, why)
        try:
            self.env = lmdb.open(path, map_size=INITIAL_MAP_SIZE, max_dbs=MAX_DBS, subdir=True,
                                 readonly=readonly, create=create, lock=True, sync=False)
        except DAMAGE_ERRORS as e:
            raise unusable(path, e) from None
        except lmdb.Error as e:
            raise StoreError(f"cannot open mailbox database {path}: {e}") from None
        self.dbs = {}
        try:
            for n in DATABASES:
                try:
                    self.dbs[n] = self.env.open_db(n.encode(), create=not readonly)
                except lmdb.NotFoundError:
                    self.dbs[n] = None  # read-only, and never written
        except DAMAGE_ERRORS as e:
            self.env.close()
            raise unusable(path, e) from None

    def close(self) -> None:
        self.env.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transactions --------------------------------------------------------
    def write(self, fn: Callable[[Txn], Any], *, durable: bool = True) -> Any:
        """Run `fn` in a write transaction, then sync. durable=False skips the
        sync, for data the spool can rebuild (quota usage): the environment
        runs without per-commit sync, so a process crash loses nothing, an OS
        crash at most unsynced usage counters (`reconstruct -q` recomputes
        them), and stored's checkpoint syncs them."""
        for _attempt in range(32):
            try:
                with self.env.begin(write=True) as txn:
                    result = fn(Txn(self, txn))
                if durable:
                    self.env.sync(True)
                return result
            except lmdb.MapFullError:
                old = self.env.info()["map_size"]
                self.env.set_mapsize(old * 2)
                logmsg.log("db", logmsg.DB_MAP_GROWN, old=old, new=old * 2)
            except lmdb.MapResizedError:
                self.env.set_mapsize(0)  # adopt the size another process chose
            except DAMAGE_ERRORS as e:
                raise unusable(self.path, e) from None
        raise StoreError(f"mailbox database {self.path}: map could not be grown")

    def sync(self) -> None:
        """Make every committed transaction durable (after durable=False writes)."""
        self.env.sync(True)

    def read(self, fn: Callable[[Txn], Any]) -> Any:
        for _attempt in range(4):
            try:
                with self.env.begin() as txn:
                    return fn(Txn(self, txn))
            except lmdb.MapResizedError:
                self.env.set_mapsize(0)
            except DAMAGE_ERRORS as e:
                raise unusable(self.path, e) from None
        raise StoreError(f"mailbox database {self.path}: map resized repeatedly")

    def get(self, db: str, key: str) -> dict[str, Any] | None:
        return self.read(lambda t: t.get(db, key))

    def items(self, db: str, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
        return self.read(lambda t: list(t.items(db, prefix)))

    def stat(self) -> dict[str, Any]:
        try:
            return self._stat()
        except DAMAGE_ERRORS as e:
            raise unusable(self.path, e) from None

    def _stat(self) -> dict[str, Any]:
        info = self.env.info()
        out = {"path": self.path, "map_size": info["map_size"], "last_txnid": info["last_txnid"],
               "readers": info["num_readers"], "max_readers": info["max_readers"],
               "file_bytes": os.path.getsize(os.path.join(self.path, "data.mdb")),
               "databases": {}}
        with self.env.begin() as txn:
            for n, handle in self.dbs.items():
                if handle is None:
                    continue
                st = txn.stat(handle)
                out["databases"][n] = {"entries": st["entries"], "depth": st["depth"],
                                       "pages": st["branch_pages"] + st["leaf_pages"]
                                       + st["overflow_pages"]}
        return out


def _key(key: str) -> bytes:
    """A key's bytes. Keys are UTF-8; a damaged one that is not comes back
    from items_tolerant() with its bytes kept as surrogates, so that it can
    still be deleted."""
    return key.encode("utf-8", "surrogateescape")


def printable_key(key: str) -> str:
    """A key as it may be shown or logged (a damaged key's bytes as \\x..)."""
    return _key(key).decode("utf-8", "backslashreplace")


class Txn:
    """One transaction, with typed, checksummed values."""

    def __init__(self, db: Database, txn: lmdb.Transaction):
        self.db = db
        self.txn = txn

    def _handle(self, name: str):
        handle = self.db.dbs[name]
        if handle is None:
            raise StoreError(f"mailbox database has no {name!r} database")
        return handle

    def get(self, db: str, key: str) -> dict[str, Any] | None:
        if self.db.dbs.get(db) is None and self.db.readonly:
            return None
        raw = self.txn.get(_key(key), db=self._handle(db))
        return None if raw is None else decode_value(db, _key(key), bytes(raw))

    def put(self, db: str, key: str, value: dict[str, Any]) -> None:
        self.txn.put(_key(key), encode_value(value), db=self._handle(db))

    def delete(self, db: str, key: str) -> bool:
        return self.txn.delete(_key(key), db=self._handle(db))

    def items(self, db: str, prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
        for k, v in self.items_tolerant(db, prefix):
            if isinstance(v, CorruptionError):
                raise v
            yield k, v

    def items_tolerant(self, db: str, prefix: str = ""
                       ) -> Iterator[tuple[str, dict[str, Any] | CorruptionError]]:
        """Like items(), but a value that does not verify comes back as its error."""
        if self.db.dbs.get(db) is None and self.db.readonly:
            return
        cur = self.txn.cursor(db=self._handle(db))
        p = prefix.encode()
        if not cur.set_range(p):
            return
        for k, v in cur:
            if not k.startswith(p):
                break
            k = bytes(k)
            try:
                yield k.decode(), decode_value(db, k, bytes(v))
            except CorruptionError as e:
                yield k.decode("utf-8", "surrogateescape"), e
            except UnicodeDecodeError:  # the key itself is damaged
                yield k.decode("utf-8", "surrogateescape"), CorruptionError(
                    logmsg.DB_VALUE_CORRUPT.format(db=db, key=k, detail="key is not UTF-8"),
                    kind=logmsg.DB_VALUE_CORRUPT.code, path=db, where=f"key {k!r}")

    def raw_items(self, db: str) -> Iterator[tuple[bytes, bytes]]:
        for k, v in self.txn.cursor(db=self._handle(db)):
            yield bytes(k), bytes(v)
