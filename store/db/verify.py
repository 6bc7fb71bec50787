"""Verify an LMDB mailbox database, and read one, in a crash-isolated child.

Opening or walking a damaged data.mdb can kill the process that does it
(SIGBUS on a truncated file, SIGABRT on a zeroed page), so both run in a
forked child (proc.run_isolated): a crash of the child is itself the
verdict "damaged". The walk opens read-only, visits every named database,
decodes every value and verifies its checksum.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .. import logmsg, proc
from ..errors import StoreError
from . import lmdbfiles
from .database import Database, Txn, open_env, unusable
from .envelope import value_problem
from .records import DATABASES

T = TypeVar("T")

MAX_ERRORS = 20
TIMEOUT = 300


@dataclass
class Verdict:
    """The outcome of verifying one database."""

    ok: bool
    path: str
    entries: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    crashed: str | None = None  # signal name when the child died

    @property
    def reason(self) -> str:
        if self.ok:
            return "verified"
        if self.crashed:
            return f"the verifying process died of {self.crashed}"
        return "; ".join(self.errors[:3]) + (f" (and {len(self.errors) - 3} more)"
                                              if len(self.errors) > 3 else "")

    def as_json(self) -> dict:
        return {"ok": self.ok, "path": self.path, "entries": self.entries, "errors": self.errors,
                "crashed": self.crashed, "reason": self.reason}


def verify(path: str, *, timeout: float = TIMEOUT) -> Verdict:
    """Verify the environment in directory `path` in a child process."""
    if not lmdbfiles.has_data(path):
        return Verdict(False, path, errors=[f"{lmdbfiles.data_path(path)} is missing"])
    try:
        ok, entries, errors = proc.run_isolated(walk, path, timeout=timeout)
    except proc.ChildDied as e:
        return Verdict(False, path, crashed=e.signame)
    except proc.ChildTimeout:
        return Verdict(False, path, errors=[f"verification took over {timeout:.0f} s"])
    except StoreError as e:
        return Verdict(False, path, errors=[f"the verifying process failed: {e}"])
    return Verdict(ok, path, entries, errors)


def walk(path: str) -> tuple[bool, dict[str, int], list[str]]:
    """The child's work: (ok, entries per database, errors)."""
    import lmdb

    entries: dict[str, int] = {}
    errors: list[str] = []
    why = lmdbfiles.data_file_problem(path)  # what every opener refuses, the verifier refuses
    if why is not None:
        return False, {}, [f"{lmdbfiles.DATA_FILE}: {why}"]
    try:
        env = open_env(path, readonly=True, lock=False)
    except StoreError as e:
        return False, {}, [f"cannot open: {e}"]
    with env.begin() as txn:
        names = {bytes(k) for k, _v in txn.cursor()}
        for n in DATABASES:
            if n.encode() not in names:
                errors.append(f"named database {n!r} is missing")
        extra = names - {n.encode() for n in DATABASES}
        if extra:
            errors.append(f"unexpected keys in the main database: {sorted(extra)[:5]}")
    for n in DATABASES:
        if n.encode() not in names:
            continue
        try:
            db = env.open_db(n.encode(), create=False)
        except lmdb.Error as e:
            errors.append(f"{n}: cannot open: {e}")
            continue
        count = 0
        with env.begin(db=db) as txn:
            try:
                for k, v in txn.cursor():
                    count += 1
                    why = value_problem(v)
                    if why is not None and len(errors) < MAX_ERRORS:
                        errors.append(logmsg.DB_VALUE_CORRUPT.format(db=n, key=bytes(k),
                                                                     detail=why))
            except lmdb.Error as e:
                errors.append(f"{n}: walk failed after {count} entries: {e}")
        entries[n] = count
    env.close()
    return not errors, entries, errors


def read_every_page(db: Database) -> int:
    """Every entry of every named database read through a cursor, values
    not decoded: each page a reader can reach is touched once. Run in a
    child (read_in_child) before a command opens the database itself: a
    damaged page can make LMDB abort (an assertion: SIGABRT) where a
    checked error is impossible. Returns the number of entries."""
    def count(t: Txn, n: str) -> int:
        return sum(1 for _ in t.raw_items(n))
    return sum(db.read(functools.partial(count, n=n)) for n in DATABASES if db.dbs.get(n) is not None)


def check_readable(path: str) -> None:
    """Read every page of the database in `path` in a child before this
    process maps it (read_every_page): for the administrator's commands,
    which a damaged page must not abort. A no-op without a data.mdb (the
    command creates one, or reads an empty one). The caller must not have
    the environment open (Store.check_readable refuses when it has)."""
    if lmdbfiles.has_data(path):
        read_in_child(path, read_every_page)


def read_in_child(path: str, fn: Callable[[Database], T]) -> T:
    """fn(the database at `path`, opened read-only), run in a forked child.
    A damaged data.mdb can kill the process that reads it; then the child
    dies and this raises a CorruptionError (db-unusable) naming the signal,
    instead of the caller dying. A StoreError in the child is raised here
    as it was; anything else becomes a StoreError naming the database."""
    try:
        return proc.run_isolated(_read, path, fn)
    except proc.ChildDied as e:
        raise unusable(path, f"the process reading it died of {e.signame}") from None
    except proc.ChildFailed as e:
        raise StoreError(f"mailbox database {path}: {e}") from None


def _read(path: str, fn: Callable[[Database], T]) -> T:
    with Database(path, readonly=True) as db:
        return fn(db)
