"""Verify an LMDB mailbox database in a child process.

Opening or walking a damaged data.mdb can kill the process that does it
(SIGBUS on a truncated file, SIGABRT on a zeroed page), so the walk runs in
a child (`python -m store.dbverify PATH`): a crash of the child is itself
the verdict "damaged". The walk opens read-only, visits every named
database, decodes every value and verifies its checksum.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

MAX_ERRORS = 20
TIMEOUT = 300


@dataclass
class Verdict:
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
    if not os.path.isfile(os.path.join(path, "data.mdb")):
        return Verdict(False, path, errors=[f"{os.path.join(path, 'data.mdb')} is missing"])
    try:
        r = subprocess.run([sys.executable, "-m", "store.dbverify", path], capture_output=True,
                           text=True, timeout=timeout,
                           env={**os.environ, "PYTHONFAULTHANDLER": ""})
    except subprocess.TimeoutExpired:
        return Verdict(False, path, errors=[f"verification took over {timeout:.0f} s"])
    if r.returncode < 0:
        return Verdict(False, path, crashed=signal.Signals(-r.returncode).name)
    try:
        d = json.loads(r.stdout)
    except ValueError:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return Verdict(False, path, errors=[f"the verifying process failed ({r.returncode}): {tail}"])
    return Verdict(d["ok"], path, d["entries"], d["errors"])


def walk(path: str) -> dict:
    """The child's work: returns {"ok", "entries", "errors"}."""
    import lmdb

    from . import logmsg
    from .db import DATABASES, value_problem
    entries: dict[str, int] = {}
    errors: list[str] = []
    try:
        env = lmdb.open(path, readonly=True, lock=False, max_dbs=16, subdir=True)
    except lmdb.Error as e:
        return {"ok": False, "entries": {}, "errors": [f"cannot open: {e}"]}
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
    return {"ok": not errors, "entries": entries, "errors": errors}


def read_every_page(db) -> int:
    """Every entry of every named database read through a cursor, values
    not decoded: each page a reader can reach is touched once. Run in a
    child (read_in_child) before a repair opens the database itself: a
    damaged page can make LMDB abort (an assertion: SIGABRT) where a
    checked error is impossible. Returns the number of entries."""
    from .db import DATABASES
    return sum(db.read(lambda t, n=n: sum(1 for _ in t.raw_items(n)))
               for n in DATABASES if db.dbs.get(n) is not None)


def check_readable(store) -> None:
    """Read every page of the store's database in a child before this
    process maps it (read_every_page): for the administrator's commands,
    which a damaged page must not abort. A no-op without a data.mdb (the
    command creates one, or reads an empty one). Closes the store's handle
    first; it reopens on next use."""
    path = store.layout.mboxlist_dir
    if os.path.isfile(os.path.join(path, "data.mdb")):
        store.close()
        read_in_child(path, read_every_page)


def read_in_child(path: str, fn: Callable[[Any], T]) -> T:
    """fn(the database at `path`, opened read-only), run in a forked child
    whose result comes back pickled through a pipe. A damaged data.mdb can
    kill the process that reads it; then the child dies and this raises a
    CorruptionError naming the signal, instead of the caller dying. The
    caller must not have the environment open (no LMDB handle crosses a
    fork)."""
    import pickle

    from .db import Database, unusable
    from .errors import CorruptionError, StoreError
    from .fsutil import write_all

    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            import faulthandler
            faulthandler.disable()  # its death is reported by the parent, in one line
            os.close(rfd)
            db = Database(path, readonly=True)
            try:
                out = ("ok", fn(db))
            finally:
                db.close()
        except CorruptionError as e:  # sent as its parts: it does not pickle whole
            out = ("corrupt", (e.message, e.kind, e.mailbox, e.path, e.where))
        except BaseException as e:  # noqa: BLE001 - reported to the parent as text
            out = ("error", f"mailbox database {path}: {e or type(e).__name__}")
        try:
            write_all(wfd, pickle.dumps(out))
        except BaseException:  # noqa: BLE001 - the parent sees no result
            code = 1
        finally:
            os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        raw = f.read()
    _pid, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        raise unusable(path, f"the process reading it died of {sig}")
    try:
        kind, value = pickle.loads(raw)
    except Exception:  # noqa: BLE001 - a child that could not report
        raise StoreError(f"reading mailbox database {path} failed (the reading process "
                         f"exited {os.waitstatus_to_exitcode(status)})") from None
    if kind == "corrupt":
        message, code, mailbox, fpath, where = value
        raise CorruptionError(message, kind=code, mailbox=mailbox, path=fpath, where=where)
    if kind == "error":
        raise StoreError(value)
    return value


if __name__ == "__main__":
    json.dump(walk(sys.argv[1]), sys.stdout)
