"""Choose the mailboxes, spread the work over processes, gather findings,
and keep the database in step. Used by the reconstruct command."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from .. import dbverify, locks, logmsg
from ..errors import LockedError, NoSuchMailboxError, StoreError
from ..fsutil import Batch, pid_alive
from ..layout import canonical, walk_spool
from ..mailbox import Store
from . import dbsync
from .check import REBUILD_KINDS, check_mailbox, header_db_fields
from .findings import Finding, Summary
from .rebuild import rebuild_mailbox
from .scan import scan_mailbox

Progress = Callable[[int, int, int], None]  # mailboxes done, total, messages so far
CHUNK = 32
BATCH_FILES, BATCH_BYTES = 96, 64 << 20  # commit a batch early past either


class Interrupted(StoreError):
    exit_code = 32


@dataclass
class Options:
    names: list[str] = field(default_factory=list)
    recursive: bool = False
    check_only: bool = False
    force: bool = False
    zero_index: bool = False
    remove_exp: bool = False
    partition: str | None = None
    jobs: int = 1


@dataclass
class BoxResult:
    name: str
    partition: str
    findings: list[Finding]
    db_fields: dict | None
    messages: int
    rebuilt: bool
    quotaroot: str = ""
    # what the rebuild changed in the mailbox's (bytes, messages), counted
    # under its lock; None when the old header's counts were not to be trusted
    usage_delta: tuple[int, int] | None = None


# ---- selection ----------------------------------------------------------------

def select_mailboxes(store: Store, opts: Options) -> list[tuple[str, str, str, dict | None]]:
    """(name, directory, partition, folder entry) for each mailbox to visit."""
    parts = store.layout.config.partitions()
    if opts.partition:
        store.layout.partition_path(opts.partition)
        parts = {opts.partition: parts[opts.partition]}
    db = dict(store.db.read(lambda t: list(dbsync.good_items(t, "folder"))))
    found: dict[str, tuple[str, str, str, dict | None]] = {}

    def add(name: str, mdir: str, part: str) -> None:
        found.setdefault(name, (name, mdir, part, db.get(name)))

    if not opts.names:
        for part, ppath in parts.items():
            for name, mdir in walk_spool(ppath):
                add(name, mdir, part)
        for name, e in db.items():
            if e.get("partition") in parts and name not in found:
                add(name, store.layout.mailbox_dir(name, e["partition"]), e["partition"])
    for raw in opts.names:
        name = canonical(raw)
        e = db.get(name)
        places = ([e["partition"]] if e and e.get("partition") in parts
                  else [p for p in parts if os.path.isdir(store.layout.mailbox_dir(name, p))])
        if not places:
            raise NoSuchMailboxError(f"mailbox {name} is neither in the database nor in the spool")
        part = places[0]
        mdir = store.layout.mailbox_dir(name, part)
        if opts.recursive:
            for n, d in walk_spool(parts[part], mdir):
                add(n, d, part)
            for n, ce in db.items():
                if n.startswith(name.removesuffix("INBOX") if name.endswith("/INBOX")
                                else name + "/") and ce.get("partition") == part:
                    add(n, store.layout.mailbox_dir(n, part), part)
        add(name, mdir, part)
    return sorted(found.values())


# ---- one mailbox (runs in a worker) ---------------------------------------------

def visit_mailbox(store: Store, name: str, mdir: str, part: str, entry: dict | None,
                  opts: Options, batch: Batch | None = None,
                  held: contextlib.ExitStack | None = None) -> BoxResult:
    """Check one mailbox and rebuild it when needed. With `batch` and
    `held`, a rebuilt mailbox's new files wait in the batch and its lock
    moves to `held`, to be released once the batch is committed."""
    if not os.path.isdir(mdir):
        return BoxResult(name, part, [Finding(name, "mailbox-missing",
                                              f"folder entry but no directory {mdir}",
                                              "left for reconstruct -m")], None, 0, False)
    with contextlib.ExitStack() as mine:
        mine.enter_context(store.lock(name))
        # -f -i never looks at the old records: only the header's UIDNEXT floor
        scan = scan_mailbox(name, mdir, read_index=not (opts.force and opts.zero_index))
        if opts.force and opts.zero_index:
            scan.header = _header_or_none(mdir, name)
        findings = [] if opts.force else check_mailbox(scan, entry, part)
        needs = opts.force or any(f.kind in REBUILD_KINDS for f in findings)
        if opts.check_only or not needs:
            fields = header_db_fields(scan.header, part)
            return BoxResult(name, part, findings, fields, len(scan.records), False,
                             scan.header.quotaroot if scan.header else "")
        trusted = scan.header is not None and not any(
            p.kind in ("idx-count-mismatch", "idx-size-mismatch") for p in scan.index_problems)
        before = (scan.header.total_bytes, scan.header.exists) if trusted else None
        zeroed = None
        if opts.zero_index:
            floor = scan.header.uidnext if scan.header else 0
            entry = entry or header_db_fields(scan.header, part)
            zeroed = scan.header
            scan = replace(scan, header=None, records=[], cache=None, cache_bad={}, salvaged=False)
        else:
            floor = 0
        res = rebuild_mailbox(scan, entry, part, remove_exp=opts.remove_exp, uidnext_floor=floor,
                              batch=batch, zeroed=zeroed)
        if batch is not None:  # locked until the batch is committed
            held.enter_context(mine.pop_all())
    fixed = [f.fix("rebuilt") if f.kind in REBUILD_KINDS else f for f in findings]
    actions = res.findings if opts.force else [replace(f, problem=False) for f in res.findings]
    for f in fixed + actions:
        if f.problem or f.action != "none":
            logmsg.log("reconstruct", logmsg.RECONSTRUCT_FINDING, line=f.line())
    delta = None if before is None else (res.header.total_bytes - before[0],
                                         res.header.exists - before[1])
    return BoxResult(name, part, fixed + actions, res.db_fields, res.messages, True,
                     res.header.quotaroot, delta)


def _header_or_none(mdir: str, name: str):
    from .. import index
    try:
        return index.read_header(mdir, name)
    except (OSError, StoreError):
        return None


def visit_chunk(store: Store, tasks: list, opts: Options,
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
                out.append(visit_mailbox(store, *t, opts, batch=batch, held=held))
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


def _work(root: str, tasks: list, opts: Options) -> list[BoxResult]:
    store = Store.open(root)
    try:
        return visit_chunk(store, tasks, opts)
    finally:
        store.close()


def _ignore_sigint() -> None:
    """Pool workers finish their chunk on Ctrl-C; the parent stops the run."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _CtrlC:
    """Ctrl-C noted instead of raised while mailboxes are rebuilt in this
    process, so that no write is cut in half: the run stops after the
    mailbox at hand. Where a handler cannot be installed (not the main
    thread) Ctrl-C stays an exception."""

    def __init__(self) -> None:
        self.seen = False
        self._old = None

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
    t0 = time.monotonic()
    dbverify.check_readable(store)
    tasks = select_mailboxes(store, opts)
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
                                    initializer=_ignore_sigint)
        futs, collected = [], set()
        try:
            futs = [ex.submit(_work, store.layout.root, c, opts) for c in chunks]
            for fut in cf.as_completed(futs):
                collect(fut.result())
                collected.add(fut)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            ex.shutdown(wait=True, cancel_futures=True)  # chunks under way run to their end
        if interrupted:  # what finished while the pool wound down counts too
            for fut in futs:
                if fut not in collected and not fut.cancelled() and fut.exception() is None:
                    collect(fut.result())
    findings, summary = _apply_db(store, results, opts)
    summary.elapsed_seconds = round(time.monotonic() - t0, 3)
    if interrupted:  # the database already knows what was rebuilt
        raise Interrupted(f"interrupted after {len(results)} of {total} mailboxes; each is "
                          "either as it was or rebuilt")
    return findings, summary


def _apply_db(store: Store, results: list[BoxResult], opts: Options) -> tuple[list[Finding], Summary]:
    s = Summary()
    findings: list[Finding] = []
    updates: dict[str, dict] = {}
    deltas: dict[str, tuple[int, int]] = {}
    recount: set[str] = set()
    for r in sorted(results, key=lambda r: r.name):
        s.mailboxes_checked += 1
        s.messages_checked += r.messages
        if r.rebuilt:
            s.mailboxes_rebuilt += 1
            s.messages_indexed += r.messages
            if r.usage_delta is None:
                recount.add(r.quotaroot)
            else:
                b, m = deltas.get(r.quotaroot, (0, 0))
                deltas[r.quotaroot] = (b + r.usage_delta[0], m + r.usage_delta[1])
        db_kinds = {"db-missing", "db-mismatch"}
        want_db = r.db_fields is not None and (r.rebuilt or any(f.kind in db_kinds
                                                                for f in r.findings))
        if want_db and not opts.check_only:
            updates[r.name] = r.db_fields
            r.findings = [f.fix("database entry updated") if f.kind in db_kinds else f
                          for f in r.findings]
        if any(f.problem for f in r.findings):
            s.mailboxes_with_problems += 1
        findings.extend(r.findings)
    if updates:
        def txn(t):
            for name, fields in updates.items():
                old = t.get("folder", name)
                if old is None:
                    s.db_added += 1
                elif any(old.get(k) != v for k, v in fields.items()):
                    s.db_changed += 1
                else:
                    continue
                t.put("folder", name, {**(old or {}), **fields})
        store.db.write(txn)
    if not opts.check_only:
        # a delta commutes with deliveries' own usage updates, so it needs no
        # lock; a mailbox whose old counts were unknown has its root recounted
        recount.discard("")
        added, unreadable = dbsync.add_usage(store, {r: d for r, d in deltas.items()
                                                     if r and r not in recount and d != (0, 0)})
        findings += added
        recount |= unreadable
        if recount:
            findings += dbsync.sync_usage(store, True, from_records=False, only=recount)
    return findings, s


def _db_lock(store: Store) -> int:
    """The store-wide lock of -m, -q and -l: the descriptor holding it."""
    os.makedirs(store.layout.lock_dir, exist_ok=True)
    fd = locks.acquire(os.path.join(store.layout.lock_dir, "reconstruct-db.lock"), timeout=0)
    if fd is None:
        raise LockedError("another reconstruct -m, -q or -l is running on this store")
    return fd


def refuse_while_stored_recovers(store: Store) -> None:
    from ..stored import read_state  # stored imports this module's engine lazily too
    st = read_state(store.layout)
    if st and st["state"] == "init" and pid_alive(st["pid"]):
        raise StoreError(f"stored (pid {st['pid']}) is still checking or recovering the database; "
                         "run reconstruct -m once it is ready (stored -t)")


def reconstruct_db(store: Store, *, partition: str | None, user: str | None, apply: bool = True,
                   mode: str = "m", by_stored: bool = False) -> tuple[list[Finding], Summary]:
    """mode "m": folder + quota (+ lright without -p); "q": quota; "l": lright.
    by_stored: called by stored's own recovery, which holds the store."""
    t0 = time.monotonic()
    if mode == "m" and not by_stored:
        refuse_while_stored_recovers(store)
    lock = _db_lock(store)
    try:
        if not by_stored:  # stored verified it before calling this
            dbverify.check_readable(store)
        s = Summary()
        findings: list[Finding] = []
        if mode == "m":
            spool = dbsync.read_spool(store, partition, user)
            s.mailboxes_checked = len(spool)
            s.messages_checked = sum(b.exists for b in spool)
            f = _txn(store, apply, lambda t: dbsync.sync_folder(store, t, spool, partition, user,
                                                                 apply))
            findings += f
        header_writes: dbsync.HeaderWrites = []
        if mode == "m":
            findings += _txn(store, apply, lambda t: dbsync.sync_quota_limits(
                t, spool, apply, header_writes))
        if mode in ("m", "q"):
            findings += _txn(store, apply, lambda t: dbsync.sync_quota_roots(
                store, t, apply, header_writes))
            dbsync.apply_header_writes(store, header_writes)
            findings += dbsync.sync_usage(store, apply, from_records=(mode == "q"),
                                          summary=s if mode == "q" else None)
        if mode == "l" or (mode == "m" and not partition):
            findings += _txn(store, apply, lambda t: dbsync.sync_lright(t, apply))
        for f in findings:
            s.db_added += f.kind.endswith("-added")
            s.db_removed += f.kind.endswith("-removed")
            s.db_changed += f.kind.endswith(("-changed", "-usage", "-wrong"))
            logmsg.log("reconstruct", logmsg.RECONSTRUCT_FINDING, line=f.line())
        s.elapsed_seconds = round(time.monotonic() - t0, 3)
        return findings, s
    finally:
        locks.release(lock)


def _txn(store: Store, apply: bool, fn):
    return store.db.write(fn) if apply else store.db.read(fn)
