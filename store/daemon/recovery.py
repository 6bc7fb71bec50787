"""stored's start-up check and recovery: verify the database in a child,
put a damaged one aside (the weekly `removed/` copy), restore the best
snapshot or rebuild from the spool, and resync from the spool."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

from .. import logmsg, snapshots
from ..db import lmdbfiles
from ..db import verify as dbverify
from ..errors import StoreError
from ..fsutil import fsync_dir, write_file_atomic
from ..layout import Layout
from ..mailbox import Store
from ..reconstruct.runner import DbMode, reconstruct_db
from . import state

REMOVED = "removed"
REMOVED_MARKER = "removed.json"
WEEK = 7 * 86400


@dataclass
class Recovery:
    verdict: dbverify.Verdict
    recovered: bool = False
    snapshot: str | None = None
    resync: list[str] | None = None


HELD = "damaged"  # mboxlist/damaged/: the damaged database while its replacement is made


def move_aside(layout: Layout, now: float) -> str:
    """Move the bad environment into mboxlist/removed/, unless the copy there
    is less than a week old: then that older copy stays and this one goes.
    Only a real database counts: without a data.mdb nothing is moved, kept
    or discarded. Returns "moved", "kept" (the older copy; this one discarded) or
    "nothing"."""
    if not hold(layout):
        return "nothing"
    return settle_removed(layout, now)


def _held_dir(layout: Layout) -> str:
    return os.path.join(layout.mboxlist_dir, HELD)


def hold(layout: Layout) -> bool:
    """Move the damaged data.mdb into mboxlist/damaged/ (nothing is discarded
    yet: see settle_removed). False when there was no data.mdb."""
    if not lmdbfiles.has_data(layout.mboxlist_dir):
        lmdbfiles.discard_lock_file(layout.mboxlist_dir)
        return False
    held = _held_dir(layout)
    shutil.rmtree(held, ignore_errors=True)
    os.makedirs(held)
    lmdbfiles.put_aside(layout.mboxlist_dir, held)
    fsync_dir(layout.mboxlist_dir)
    return True


def put_back(layout: Layout) -> None:
    """The held damaged database back in place (a recovery that failed must
    not leave less than it found), whatever the failed replacement left."""
    held = _held_dir(layout)
    if not lmdbfiles.has_data(held):
        return
    lmdbfiles.discard(layout.mboxlist_dir)
    os.rename(lmdbfiles.data_path(held), lmdbfiles.data_path(layout.mboxlist_dir))
    shutil.rmtree(held, ignore_errors=True)
    fsync_dir(layout.mboxlist_dir)


def settle_removed(layout: Layout, now: float) -> str:
    """Once a replacement is in place: the held damaged database becomes
    mboxlist/removed/, unless the copy there is less than a week old (then
    the held one is discarded). "moved", "kept" or "nothing" (none held)."""
    held = _held_dir(layout)
    if not lmdbfiles.has_data(held):
        shutil.rmtree(held, ignore_errors=True)
        return "nothing"
    removed = os.path.join(layout.mboxlist_dir, REMOVED)
    marker = os.path.join(removed, REMOVED_MARKER)
    try:
        with open(marker, encoding="utf-8") as f:
            since = json.load(f)["time"]
    except (OSError, ValueError, KeyError):
        since = None
    if since is not None and now - since < WEEK:
        shutil.rmtree(held)
        logmsg.log("stored", logmsg.DB_REMOVED_KEPT, path=removed)
        return "kept"
    write_file_atomic(os.path.join(held, REMOVED_MARKER), json.dumps({"time": now}).encode())
    shutil.rmtree(removed, ignore_errors=True)
    os.rename(held, removed)
    fsync_dir(layout.mboxlist_dir)
    logmsg.log("stored", logmsg.DB_REMOVED_COPY, path=removed)
    return "moved"


def check_and_recover(layout: Layout, now: float, status: Callable[[str], None],
                      run_resync: Callable[[], list[str]] | None = None) -> Recovery:
    """Steps 2-4 of startup: analyse the database in a child process and, if
    it is damaged, recover it from the best snapshot (or the spool;
    `run_resync`: how to run that rebuild, see rebuild_from_spool). The
    damaged database is held aside, never thrown away, until its replacement
    is installed and verifies; a recovery that fails puts it back."""
    status("checking the mailbox database")
    # a move into removed/ that a kill cut off (before hold/settle_removed, the copy was
    # made in removed.new/): what it held was a damaged database whose week had not begun
    shutil.rmtree(os.path.join(layout.mboxlist_dir, REMOVED + ".new"), ignore_errors=True)
    verdict = dbverify.verify(layout.mboxlist_dir)
    if verdict.ok:
        settle_removed(layout, now)  # one held by a recovery a kill cut off after its install
        return Recovery(verdict)
    logmsg.log("stored", logmsg.DB_DAMAGED, reason=verdict.reason)
    status("database damaged: recovering")
    held = hold(layout)
    try:
        snap = _install_snapshot(layout)
    except BaseException as e:
        if held and not isinstance(e, KeyboardInterrupt | SystemExit):
            put_back(layout)
            logmsg.log("stored", logmsg.DB_RECOVERY_FAILED, error=e)
        raise
    if snap is not None:
        settle_removed(layout, now)
        # the snapshot is a usable database: the spool resync runs right after
        # readiness (job "resync"), so a big store is ready within the minute
        return Recovery(verdict, True, snap, None)
    logmsg.log("stored", logmsg.DB_RECOVER_EMPTY)
    # once begun, a rebuild cut off is finished at the next start (its resync mark): the held
    # copy waits until then (settled when the database verifies)
    lines = rebuild_from_spool(layout, status, run_resync)
    settle_removed(layout, now)
    return Recovery(verdict, True, None, lines)


def _install_snapshot(layout: Layout) -> str | None:
    """The best snapshot installed and verified (its name), or None when
    there is none (the spool must do)."""
    try:
        snap, skipped = snapshots.best(layout)
    except OSError as e:
        # not "no snapshots": a rebuild from the spool would lose what a snapshot keeps
        # (subscriptions, other users' seen state), so the administrator decides
        raise StoreError(f"database snapshots in {e.filename} cannot be read "
                         f"({e.strerror or e}): fix local.store.snapshotpath, then start "
                         "stored again") from None
    for s, why in skipped:
        logmsg.log("stored", logmsg.DB_SNAPSHOT_SKIPPED, name=s.name, why=why)
    if snap is None:
        return None
    snapshots.restore_into(snap, layout.mboxlist_dir)
    installed = dbverify.verify(layout.mboxlist_dir)
    if not installed.ok:
        raise StoreError(f"the restored snapshot {snap.name} does not verify: {installed.reason}")
    logmsg.log("stored", logmsg.DB_RECOVER_SNAPSHOT)
    return snap.name


def rebuild_from_spool(layout: Layout, status: Callable[[str], None],
                       run_resync: Callable[[], list[str]] | None = None) -> list[str]:
    """The database (re)built from the spool before READY, marked pending
    first: a stored killed half-way finds the mark at its next start and
    finishes the rebuild before READY (the database then verifies, but lacks
    entries). `run_resync` runs the resync (stored: in a child that SIGTERM
    kills, which leaves the mark for the next start)."""
    status("rebuilding the database from the spool")
    state.mark_resync_pending(layout, state.SPOOL_REBUILD)
    lines = run_resync() if run_resync is not None else resync_from_spool(layout)
    state.clear_resync_pending(layout)
    return lines


def resync_from_spool(layout: Layout, store: Store | None = None,
                      checkpoint=None) -> list[str]:
    """The reconstruct -m engine over the whole spool. Each change is logged
    once, by the engine (`reconstruct: ...`); this logs one summary line.
    `store`: the daemon's open store (LMDB allows one environment handle per
    process)."""
    with contextlib.ExitStack() as stack:
        if store is None:
            store = stack.enter_context(Store(layout))
        findings, s = reconstruct_db(store, partition=None, user=None, apply=True, mode=DbMode.MAILBOXES,
                                     verify_first=False, checkpoint=checkpoint)
    changes = sum(1 for f in findings if f.applied)
    logmsg.log("stored", logmsg.DB_RESYNC,
               line=f"{s.mailboxes_checked} mailboxes checked, {changes} database entries "
                    f"changed ({s.db_added} added, {s.db_removed} removed, {s.db_changed} "
                    f"changed)" + ("" if changes else ": already up to date"))
    return [f.line() for f in findings]
