"""The mailbox database: an LMDB environment in `<root>/mboxlist/`.

Every lmdb error becomes a store error here: damage (`db-unusable`, exit 4)
or an operational error (exit 8). Nothing above this module imports lmdb.
The records and their schema are in records.py, the value envelope in
envelope.py, the files in lmdbfiles.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import lmdb

from .. import logmsg
from ..errors import CorruptionError, StoreError
from ..proc import pid_alive
from . import lmdbfiles
from .envelope import corrupt_value, decode_value, encode_value
from .records import DATABASES, Record

INITIAL_MAP_SIZE = 64 << 20
MAX_DBS = 8
R = TypeVar("R", bound=Record)

# what LMDB raises when the pages themselves are damaged (as opposed to a
# full map, a held lock or a bad argument)
# (MDB_BAD_TXN: a transaction LMDB gave up on after such an error)
DAMAGE_ERRORS = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError,
                 lmdb.VersionMismatchError, lmdb.BadTxnError)


def unusable(path: str, detail: object) -> CorruptionError:
    """The error every command reports a damaged database with (db-unusable)."""
    return CorruptionError(logmsg.DB_UNUSABLE.format(path=path, detail=detail),
                           kind=logmsg.DB_UNUSABLE.code, path=lmdbfiles.data_path(path))


def _on_readonly_fs(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def open_env(path: str, *, readonly: bool, create: bool = False, lock: bool = True):
    """The one way an environment is opened (the same max_dbs for every
    opener). Errors come back as store errors."""
    if readonly and lock and _on_readonly_fs(path):
        lock = False  # lock.mdb cannot be written there, and no writer can exist
    if create and not os.path.isdir(path):
        # LMDB makes a missing directory with the files' mode (0640): one its non-root owner
        # cannot enter. 0750, narrowed by the store's umask (0700 without group access).
        os.makedirs(path, 0o750, exist_ok=True)
    try:
        return lmdb.open(path, map_size=INITIAL_MAP_SIZE, max_dbs=MAX_DBS, subdir=True,
                         readonly=readonly, create=create, lock=lock, sync=False,
                         mode=0o640)  # data.mdb and lock.mdb; the umask narrows it further
    except DAMAGE_ERRORS as e:
        raise unusable(path, e) from None
    except lmdb.Error as e:
        raise StoreError(f"cannot open mailbox database {path}: {e}") from None


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
        exists = lmdbfiles.has_data(path)
        if not create and not exists:
            if not readonly:
                create = True
            else:
                raise StoreError(f"no mailbox database in {path}")
        if exists:
            why = lmdbfiles.data_file_problem(path)
            if why is not None:
                raise unusable(path, why)
        self.env = open_env(path, readonly=readonly, create=create)
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
        except lmdb.Error as e:
            self.env.close()
            raise StoreError(f"mailbox database {path}: {e}") from None

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
            except lmdb.Error as e:
                raise StoreError(f"mailbox database {self.path}: {e}") from None
        raise StoreError(f"mailbox database {self.path}: map could not be grown")

    def read(self, fn: Callable[[Txn], Any]) -> Any:
        for _attempt in range(4):
            try:
                with self.env.begin() as txn:
                    return fn(Txn(self, txn))
            except lmdb.MapResizedError:
                self.env.set_mapsize(0)
            except DAMAGE_ERRORS as e:
                raise unusable(self.path, e) from None
            except lmdb.Error as e:
                raise StoreError(f"mailbox database {self.path}: {e}") from None
        raise StoreError(f"mailbox database {self.path}: map resized repeatedly")

    def _env_call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except DAMAGE_ERRORS as e:
            raise unusable(self.path, e) from None
        except lmdb.Error as e:
            raise StoreError(f"mailbox database {self.path}: {e}") from None

    def sync(self) -> None:
        """Make every committed transaction durable (after durable=False writes)."""
        self._env_call(lambda: self.env.sync(True))

    def clear_stale_readers(self) -> int:
        """Free the reader slots of dead processes; returns how many."""
        return self._env_call(self.env.reader_check)

    def copy_to(self, directory: str) -> None:
        """A consistent copy of the environment (through one read transaction)."""
        self._env_call(lambda: self.env.copy(directory))

    # -- raw values (dicts; tools and tests) -----------------------------------
    def get(self, db: str, key: str) -> dict[str, Any] | None:
        return self.read(lambda t: t.get(db, key))

    def items(self, db: str, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
        return self.read(lambda t: list(t.items(db, prefix)))

    # -- typed records: the kind is the record class (db.record(FolderEntry, name)) --
    def record(self, kind: type[R], key: str) -> R | None:
        return self.read(lambda t: t.record(kind, key))

    def records(self, kind: type[R], prefix: str = "") -> list[tuple[str, R]]:
        return self.read(lambda t: list(t.records(kind, prefix)))

    def good_records(self, kind: type[R], prefix: str = "") -> list[tuple[str, R]]:
        """The entries whose value verifies; the others are reconstruct -m's business."""
        return self.read(lambda t: list(t.good_records(kind, prefix)))

    def stat(self) -> dict[str, Any]:
        return self._env_call(self._stat)

    def health(self) -> dict[str, int]:
        """What msprobe watches (LMDB's equivalent of Berkeley DB's log files
        piling up): the map and how much of it the data uses, the reader
        slots and how many belong to dead processes (not cleared here)."""
        return self._env_call(self._health)

    def _health(self) -> dict[str, int]:
        info, psize = self.env.info(), self.env.stat()["psize"]
        pids = [int(line.split()[0]) for line in self.env.readers().splitlines()[1:]
                if line.split() and line.split()[0].isdigit()]
        return {"map_bytes": info["map_size"], "used_bytes": (info["last_pgno"] + 1) * psize,
                "file_bytes": lmdbfiles.data_size(self.path), "readers": len(pids),
                "stale_readers": sum(1 for pid in pids if not pid_alive(pid)),
                "max_readers": info["max_readers"]}

    def _stat(self) -> dict[str, Any]:
        info = self.env.info()
        out = {"path": self.path, "map_size": info["map_size"], "last_txnid": info["last_txnid"],
               "readers": info["num_readers"], "max_readers": info["max_readers"],
               "file_bytes": lmdbfiles.data_size(self.path), "databases": {}}
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
    """One transaction, with checksummed values: raw (dicts) or typed records."""

    def __init__(self, db: Database, txn):
        self.db = db
        self.txn = txn

    def _handle(self, name: str):
        handle = self.db.dbs[name]
        if handle is None:
            raise StoreError(f"mailbox database has no {name!r} database")
        return handle

    def _absent(self, db: str) -> bool:
        """A read-only environment that never had this named database."""
        return self.db.dbs.get(db) is None and self.db.readonly

    def get(self, db: str, key: str) -> dict[str, Any] | None:
        if self._absent(db):
            return None
        raw = self.txn.get(_key(key), db=self._handle(db))
        return None if raw is None else decode_value(db, _key(key), bytes(raw))

    def put(self, db: str, key: str, value: dict[str, Any] | Record) -> None:
        if isinstance(value, Record):
            value = value.to_value()
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
        if self._absent(db):
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
                yield k.decode("utf-8", "surrogateescape"), corrupt_value(db, k,
                                                                          "key is not UTF-8")

    def raw_items(self, db: str) -> Iterator[tuple[bytes, bytes]]:
        for k, v in self.txn.cursor(db=self._handle(db)):
            yield bytes(k), bytes(v)

    # -- typed records: the kind is the record class (t.record(QuotaEntry, root)) --
    def record(self, kind: type[R], key: str) -> R | None:
        """The record under `key`, or None."""
        v = self.get(kind.db, key)
        return None if v is None else kind.from_value(v)

    def records(self, kind: type[R], prefix: str = "") -> Iterator[tuple[str, R]]:
        for k, v in self.items(kind.db, prefix):
            yield k, kind.from_value(v)

    def records_tolerant(self, kind: type[R], prefix: str = ""
                         ) -> Iterator[tuple[str, R | CorruptionError]]:
        """Records, with a value that does not verify as its CorruptionError."""
        for k, v in self.items_tolerant(kind.db, prefix):
            yield k, v if isinstance(v, CorruptionError) else kind.from_value(v)

    def good_records(self, kind: type[R], prefix: str = "") -> Iterator[tuple[str, R]]:
        """The records whose value verifies; the others are skipped."""
        for k, v in self.items_tolerant(kind.db, prefix):
            if not isinstance(v, CorruptionError):
                yield k, kind.from_value(v)
