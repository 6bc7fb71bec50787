"""Choose the mailboxes, spread the work over processes, gather findings,
and keep the database in step. Used by the reconstruct command."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .. import index, locks, logmsg
from ..crash import crashpoint
from ..db import FOLDER, Database, FolderEntry, QuotaEntry
from ..errors import EXIT_INTERRUPTED, CorruptionError, LockedError, StoreError, UsageError
from ..fsutil import Batch, refuse_symlinks
from ..mailbox import Store, quota_root_for, quota_root_mailbox
from ..mailbox.lifecycle import delete_pending, finish_delete, finish_renames
from ..proc import die_with_parent
from . import dbsync
from .apply import apply_plan
from .findings import Act, Finding, Summary, advice
from .plan import DB_KINDS, SYMLINK_ADVICE, header_db_fields, plan_mailbox
from .scan import scan_mailbox
from .select import Task, select_mailboxes

Progress = Callable[[int, int, int], None]  # mailboxes done, total, messages so far
CHUNK = 32
BATCH_FILES, BATCH_BYTES = 96, 64 << 20  # commit a batch early past either


class Interrupted(StoreError):
    """Ctrl-C stopped the run; every mailbox is as it was or rebuilt."""

    exit_code = EXIT_INTERRUPTED


@dataclass
class Options:
    """What a reconstruct run over mailboxes is asked to do (the command's flags)."""

    names: list[str] = field(default_factory=list)
    recursive: bool = False
    check_only: bool = False
    force: bool = False
    zero_index: bool = False
    remove_exp: bool = False
    check_content: bool = False  # -G: hash every message file against its GUID
    partition: str | None = None
    jobs: int = 1

    def __post_init__(self) -> None:
        if self.check_only and (self.force or self.zero_index or self.remove_exp):
            raise UsageError("a check (-n) changes nothing: it cannot go with force (-f), "
                             "zero_index (-i) or remove_exp (-e)")


@dataclass
class BoxResult:
    """What visiting one mailbox found and did, for the runner to gather."""

    name: str
    partition: str
    findings: list[Finding]
    db_fields: FolderEntry | None  # the folder entry the index says, or None
    messages: int
    rebuilt: bool
    quotaroot: str = ""
    # what the rebuild changed (or, checking only, would change) in the
    # mailbox's (bytes, messages), counted under its lock; None when the old
    # header's counts were not to be trusted
    usage_delta: tuple[int, int] | None = None
    would_rebuild: bool = False  # checking only: the plan rebuilds it
    usage: tuple[int, int] | None = None  # (bytes, messages) after the rebuild


# ---- one mailbox (runs in a worker) ---------------------------------------------

def visit_mailbox(store: Store, task: Task, opts: Options, batch: Batch | None = None,
                  held: contextlib.ExitStack | None = None) -> BoxResult:
    """Plan one mailbox's repair and, unless checking only, apply it. With
    `batch` and `held`, a rebuilt mailbox's new files wait in the batch and
    its lock moves to `held`, to be released once the batch is committed."""
    name, mdir, part, entry = task
    try:
        refuse_symlinks(store.layout.partition_path(part), mdir.rstrip("/"))
    except CorruptionError as e:  # the mailbox's directory, or one above it
        f = Finding(name, "symlink", e.message, SYMLINK_ADVICE)
        return BoxResult(name, part, [f], None, 0, False)
    if not os.path.isdir(mdir):
        f = Finding(name, "mailbox-missing", f"folder entry but no directory {mdir}",
                    advice("left for reconstruct -m"))
        return BoxResult(name, part, [f], None, 0, False)
    with contextlib.ExitStack() as mine:
        mine.enter_context(store.lock(name))
        if delete_pending(mdir):
            f = Finding(name, "delete-pending", f"a delete of the mailbox was cut off ({mdir})",
                        Act("finish the delete", "delete finished"))
            if not opts.check_only:
                finish_delete(store, name, mdir)
                f = f.applying()
            return BoxResult(name, part, [f], None, 0, False)
        zero = opts.force and opts.zero_index
        # -f -i never looks at the old records: only the header's UIDNEXT floor
        scan = scan_mailbox(name, mdir, read_index=not zero, check_content=opts.check_content)
        floor, zeroed = 0, None
        if zero:
            zeroed = _header_or_none(mdir, name)
            floor = zeroed.uidnext if zeroed else 0
            entry = entry or header_db_fields(zeroed, part)
        plan = plan_mailbox(scan, entry, part, force=opts.force, remove_exp=opts.remove_exp,
                            uidnext_floor=floor, zeroed=zeroed,
                            root_quota=_root_quota(store, name, scan.header or zeroed, entry))
        qroot = scan.header.quotaroot if scan.header else ""
        if not plan.rebuild:
            return BoxResult(name, part, plan.findings, plan.db_fields, len(scan.records), False,
                             qroot)
        trusted = scan.header is not None and not any(
            p.kind in ("idx-count-mismatch", "idx-size-mismatch") for p in scan.index_problems)
        before = (scan.header.total_bytes, scan.header.exists) if trusted else None
        if opts.check_only:  # what the usage would become, for -n to announce
            after = plan.usage(scan)
            delta = None if before is None else (after[0] - before[0], after[1] - before[1])
            return BoxResult(name, part, plan.findings, plan.db_fields, len(scan.records), False,
                             plan.quotaroot, delta, True, after)
        done = apply_plan(plan, scan, batch)
        if batch is not None:  # locked until the batch is committed
            held.enter_context(mine.pop_all())
    delta = None if before is None else (done.header.total_bytes - before[0],
                                         done.header.exists - before[1])
    return BoxResult(name, part, plan.findings, plan.db_fields, done.messages, True,
                     done.header.quotaroot, delta)


def _root_quota(store: Store, name: str, header: index.Header | None,
                entry: FolderEntry | None) -> QuotaEntry | None:
    """The quota entry of the root whose own mailbox `name` is, when its
    header does not keep the limit itself (one read, root mailboxes only)."""
    if header is not None and header.carries_limit:
        return None
    root = header.quotaroot if header else entry.quotaroot if entry else quota_root_for(name)
    if not root or name != quota_root_mailbox(root):
        return None
    try:
        return store.db.record(QuotaEntry, root)
    except CorruptionError:
        return None


def _header_or_none(mdir: str, name: str) -> index.Header | None:
    try:
        return index.read_header(mdir, name)
    except (OSError, StoreError):
        return None


def visit_chunk(store: Store, tasks: list[Task], opts: Options,
                stop: Callable[[], bool] = lambda: False) -> list[BoxResult]:
    """Visit mailboxes in name order (the order every lock taker uses).
    Rebuilt mailboxes' new files are committed in batches (fsutil.Batch: two
    filesystem syncs per batch instead of several fsyncs per mailbox), each
    mailbox locked until its batch is committed. When this returns every
    rebuilt mailbox is durable; after an exception each one is either as it
    was or rebuilt. `stop` is asked after each mailbox (Ctrl-C noted)."""
    batch = None if opts.check_only else Batch()
    out: list[BoxResult] = []
    with contextlib.ExitStack() as held:
        try:
            for t in tasks:
                out.append(visit_mailbox(store, t, opts, batch=batch, held=held))
                if batch is not None and (len(batch) >= BATCH_FILES or batch.bytes >= BATCH_BYTES):
                    batch.commit()
                    held.close()
                if stop():
                    break
            if batch is not None:
                batch.commit()
        except BaseException:
            if batch is not None:
                batch.abort()
            raise
    return out


def _work(root: str, tasks: list[Task], opts: Options) -> list[BoxResult]:
    store = Store.open(root)
    try:
        return visit_chunk(store, tasks, opts)
    finally:
        store.close()


def worker_init() -> None:
    """Pool workers finish their chunk on Ctrl-C (the parent stops the run),
    and die with a parent killed outright."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()


class _CtrlC:
    """Ctrl-C noted instead of raised while mailboxes are rebuilt in this
    process, so that no write is cut in half: the run stops after the
    mailbox at hand. Where a handler cannot be installed (not the main
    thread) Ctrl-C stays an exception."""

    def __init__(self) -> None:
        self.seen = False
        self._old: Any = None  # the SIGINT handler before ours

    def __enter__(self) -> _CtrlC:
        with contextlib.suppress(ValueError):
            self._old = signal.signal(signal.SIGINT, self._note)
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)

    def _note(self, *_args) -> None:
        self.seen = True


# ---- the runs -----------------------------------------------------------------

def reconstruct_mailboxes(store: Store, opts: Options, progress: Progress | None = None
                          ) -> tuple[list[Finding], Summary]:
    """Check the selected mailboxes and (unless opts.check_only) repair what
    their plans say, then bring their folder entries and quota usage in
    step. Each finding is returned once, with its action applied or not."""
    t0 = time.monotonic()
    store.check_readable()
    if not opts.check_only:
        finish_renames(store)  # a rename cut off by a kill: finished first
    tasks, elsewhere = select_mailboxes(store, opts.names, recursive=opts.recursive,
                                        partition=opts.partition)
    results: list[BoxResult] = []
    total = len(tasks)
    msgs = 0

    def collect(batch: list[BoxResult]) -> None:
        nonlocal msgs
        results.extend(batch)
        msgs += sum(r.messages for r in batch)
        if progress:
            progress(len(results), total, msgs)

    # each task carries its folder entry: workers need only the spool and the locks
    size = max(1, min(CHUNK, total // (max(opts.jobs, 1) * 4)))
    chunks = [tasks[i:i + size] for i in range(0, total, size)]
    interrupted = False
    if opts.jobs <= 1 or len(chunks) <= 1:
        with _CtrlC() as ctrl_c:
            for c in chunks:
                collect(visit_chunk(store, c, opts, stop=lambda: ctrl_c.seen))
                if ctrl_c.seen:
                    break
        interrupted = ctrl_c.seen
    else:
        import concurrent.futures as cf  # only here: one mailbox needs no pool
        import multiprocessing as mp

        store.close()  # no LMDB handle may cross a fork
        ex = cf.ProcessPoolExecutor(max_workers=opts.jobs, mp_context=mp.get_context("fork"),
                                    initializer=worker_init)
        futs, collected = [], set()
        try:
            futs = [ex.submit(_work, store.layout.root, c, opts) for c in chunks]
            for fut in cf.as_completed(futs):
                collect(fut.result())
                collected.add(fut)
        except KeyboardInterrupt:
            interrupted = True
        except cf.BrokenExecutor:  # a worker killed (OOM killer, kill -9)
            raise StoreError(f"a worker process died after {len(results)} of {total} mailboxes; "
                             "each is either as it was or rebuilt: run reconstruct again") from None
        finally:
            ex.shutdown(wait=True, cancel_futures=True)  # chunks under way run to their end
        if interrupted:  # what finished while the pool wound down counts too
            for fut in futs:
                if fut not in collected and not fut.cancelled() and fut.exception() is None:
                    collect(fut.result())
    findings, summary = _apply_db(store, results, opts)
    findings[:0] = [Finding(n, "other-partition", f"on partition {p}, not {opts.partition}: "
                                                  "left out") for n, p in elsewhere]
    for f in findings:
        logmsg.log("reconstruct", logmsg.RECONSTRUCT_FINDING, line=f.line())
    summary.elapsed_seconds = round(time.monotonic() - t0, 3)
    if interrupted:  # the database already knows what was rebuilt
        raise Interrupted(f"interrupted after {len(results)} of {total} mailboxes; each is "
                          "either as it was or rebuilt")
    return findings, summary


def _apply_db(store: Store, results: list[BoxResult], opts: Options
              ) -> tuple[list[Finding], Summary]:
    """The folder entries of the visited mailboxes and their quota usage,
    in one transaction (plus the usage updates); the summary."""
    s = Summary()
    findings: list[Finding] = []
    updates: dict[str, FolderEntry] = {}
    deltas: dict[str, tuple[int, int]] = {}
    recount: set[str] = set()
    for r in sorted(results, key=lambda r: r.name):
        s.mailboxes_checked += 1
        s.messages_checked += r.messages
        if r.rebuilt:
            s.mailboxes_rebuilt += 1
            s.messages_indexed += r.messages
        if r.rebuilt or r.would_rebuild:
            if r.usage_delta is None:
                recount.add(r.quotaroot)
            else:
                b, m = deltas.get(r.quotaroot, (0, 0))
                deltas[r.quotaroot] = (b + r.usage_delta[0], m + r.usage_delta[1])
        if not opts.check_only and r.db_fields is not None and any(
                f.kind in DB_KINDS for f in r.findings):
            updates[r.name] = r.db_fields
            r.findings = [f.applying() if f.kind in DB_KINDS else f for f in r.findings]
        if any(f.problem for f in r.findings):
            s.mailboxes_with_problems += 1
        findings.extend(r.findings)
    if updates:
        def txn(t):
            for name, fields in updates.items():
                t.put(FOLDER, name, fields.keeping_reserved(t.record(FolderEntry, name)))
        store.db.write(txn)
    # a delta commutes with deliveries' own usage updates, so it needs no
    # lock; a mailbox whose old counts were unknown has its root recounted.
    # Checking only, the same is announced from what the plans would write.
    apply = not opts.check_only
    recount.discard("")
    added, unreadable = dbsync.add_usage(store, {r: d for r, d in deltas.items()
                                                 if r and r not in recount and d != (0, 0)},
                                         apply=apply)
    findings += added
    recount |= unreadable
    if recount:
        planned = {r.name: r.usage for r in results if r.would_rebuild}
        findings += dbsync.sync_usage(store, apply, from_records=False, only=recount,
                                      planned=planned)
    s.count(findings)
    return findings, s


def _repair_lock(store: Store) -> int:
    """The store-wide lock of -m, -q and -l: the descriptor holding it."""
    os.makedirs(store.layout.lock_dir, exist_ok=True)
    path = os.path.join(store.layout.lock_dir, locks.REPAIR_LOCK)
    fd = locks.acquire(path, timeout=0)
    if fd is None:
        raise LockedError("another reconstruct -m, -q or -l is running on this store "
                          f"({locks.held_by(path)})")
    return fd


class DbMode(StrEnum):
    """What reconstruct_db brings back from the spool (the CLI's -m, -q, -l)."""

    MAILBOXES = "m"  # folder entries and quota (and lright, without -p)
    QUOTA = "q"  # quota roots and usage
    LRIGHT = "l"  # the lright index of the ACLs


def reconstruct_db(store: Store, *, partition: str | None, user: str | None, apply: bool = True,
                   mode: DbMode = DbMode.MAILBOXES, verify_first: bool = True,
                   checkpoint: Callable[[], None] | None = None) -> tuple[list[Finding], Summary]:
    """The database from the spool, as `mode` says. `verify_first`: read every page
    in a child before opening the database here (stored has verified it
    already when it calls this). apply=False runs the very same repair on
    a scratch copy of the database and reports its findings unapplied, so
    that each step sees what the steps before it would have changed.
    `checkpoint` is called between bounded pieces of work (every few hundred
    mailboxes read, every quota root counted): stored pings its watchdog
    there, and stops the run by raising Interrupted from it (every step is
    idempotent: the next run does the whole job again)."""
    mode = DbMode(mode)  # a caller's "m" too; anything else is a ValueError, not a silent no-op
    t0 = time.monotonic()
    lock = _repair_lock(store)
    try:
        if verify_first:
            store.check_readable()
        if apply:
            finish_renames(store)  # a rename cut off by a kill: finished first
            findings, s = _sync_db(store, partition, user, mode, header_writes=True,
                                   checkpoint=checkpoint)
        else:
            import tempfile  # here: a check only

            with tempfile.TemporaryDirectory(prefix="msgstore-check-") as scratch:
                store.db.copy_to(scratch)
                with Store.over(store.layout, Database(scratch)) as trial:
                    findings, s = _sync_db(trial, partition, user, mode, header_writes=False,
                                           checkpoint=checkpoint)
            findings = [f.unapplied() for f in findings]
        s.count(findings)
        for f in findings:
            logmsg.log("reconstruct", logmsg.RECONSTRUCT_FINDING, line=f.line())
        s.elapsed_seconds = round(time.monotonic() - t0, 3)
        return findings, s
    finally:
        locks.release(lock)


def _sync_db(store: Store, partition: str | None, user: str | None, mode: DbMode, *,
             header_writes: bool, checkpoint: Callable[[], None] | None = None
             ) -> tuple[list[Finding], Summary]:
    s = Summary()
    findings: list[Finding] = []
    if mode is DbMode.MAILBOXES:
        spool = dbsync.read_spool(store, partition, user, checkpoint=checkpoint)
        s.mailboxes_checked = len(spool)
        s.messages_checked = sum(b.exists for b in spool)
        findings += store.db.write(lambda t: dbsync.sync_folder(t, spool, partition, user, True,
                                                                 store.layout))
        crashpoint("resync:after-folders")
    writes: dbsync.HeaderWrites = []
    scope = dbsync.Scope(partition, user)
    if mode is DbMode.MAILBOXES:
        findings += store.db.write(lambda t: dbsync.sync_quota_limits(t, spool, True, writes))
    if mode in (DbMode.MAILBOXES, DbMode.QUOTA):
        findings += store.db.write(lambda t: dbsync.sync_quota_roots(t, True, writes, scope))
        if header_writes:
            dbsync.apply_header_writes(store, writes)
        crashpoint("resync:after-quota-roots")
        roots = None if scope.everything else dbsync.roots_in_scope(store, scope)
        findings += dbsync.sync_usage(store, True, from_records=(mode is DbMode.QUOTA), only=roots,
                                      summary=s if mode is DbMode.QUOTA else None, checkpoint=checkpoint)
    if mode is DbMode.LRIGHT or (mode is DbMode.MAILBOXES and not partition):
        findings += store.db.write(lambda t: dbsync.sync_lright(t, True))
    return findings, s
