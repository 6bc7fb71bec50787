"""The mailbox database from the spool: folder (-m), quota (-q), lright (-l).

The spool's redundant copy (each index header) is the source; every entry
added, removed or changed is a finding with its action, applied or (with
apply=False, for -n) announced.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

from .. import index, locks
from ..db import FOLDER, LRIGHT, QUOTA, FolderEntry, LrightEntry, QuotaEntry, Txn, printable_key
from ..errors import CorruptionError, StoreError
from ..layout import DELETING, USER_NS, user_of, walk_spool
from ..mailbox import Store, quota_add, quota_root_for, quota_root_mailbox
from ..mailbox.quota import Usage, count_usage, root_mailboxes
from .findings import Act, Finding, Summary, advice
from .plan import header_db_fields


@dataclass
class SpoolBox:
    """One mailbox of the spool as its index header describes it."""

    name: str
    partition: str
    mdir: str
    fields: FolderEntry | None  # from the index header; None when it cannot be read
    exists: int = 0
    bytes: int = 0
    error: str = ""
    carries_limit: bool = False  # the header keeps its quota root's limits
    quota_limit: int | None = None
    quota_messages: int | None = None


CHECKPOINT_EVERY = 256  # mailboxes read between two calls of a run's checkpoint
RECOUNT_TRIES = 5  # counts of one quota root whose mailboxes keep changing


def read_spool(store: Store, partition: str | None = None, user: str | None = None, *,
               checkpoint: Callable[[], None] | None = None) -> list[SpoolBox]:
    """Every mailbox of the spool with what its index header says."""
    out: list[SpoolBox] = []
    for part, ppath in store.layout.config.partitions().items():
        if partition and part != partition:
            continue
        for name, mdir in walk_spool(ppath):
            if user and user_of(name) != user:
                continue
            if checkpoint is not None and len(out) % CHECKPOINT_EVERY == 0:
                checkpoint()
            try:
                h = index.read_header(mdir, name)
                if h.name != name:
                    raise CorruptionError(f"index header names {h.name!r}", kind="header-name")
                out.append(SpoolBox(name, part, mdir, header_db_fields(h, part), h.exists,
                                    h.total_bytes, carries_limit=h.carries_limit,
                                    quota_limit=h.quota_limit, quota_messages=h.quota_messages))
            except (OSError, CorruptionError) as e:
                out.append(SpoolBox(name, part, mdir, None, error=str(e)))
    return sorted(out, key=lambda b: (b.name, b.partition))


@dataclass(frozen=True)
class Scope:
    """What a `-m` run may change: one partition (-p) and one user (-u), or all."""

    partition: str | None = None
    user: str | None = None

    @property
    def everything(self) -> bool:
        return not self.partition and not self.user

    def holds(self, name: str, entry: FolderEntry) -> bool:
        if self.partition and entry.partition != self.partition:
            return False
        return not self.user or user_of(name) == self.user


def roots_in_scope(store: Store, scope: Scope) -> set[str]:
    """The quota roots of the mailboxes in scope (the usage a scoped -m recounts)."""
    return {e.quotaroot for n, e in store.db.good_records(FolderEntry)
            if e.quotaroot and scope.holds(n, e)}


def _finding(mailbox: str, kind: str, detail: str, act: Act, apply: bool) -> Finding:
    f = Finding(mailbox, kind, detail, act)
    return f.applying() if apply else f


def _on_disk(layout, name: str, partition: str) -> bool | None:
    """Whether the mailbox's store.idx is on disk now (and no delete of it has
    begun), or None while another process holds the mailbox's lock (a create,
    delete or rename under way: the entry is left for it, and for the next
    run). Probed without waiting: this runs inside a write transaction,
    which a lock holder may be waiting for."""
    path = os.path.join(layout.lock_dir, locks.mailbox_lock_name(name))
    fd = locks.acquire(path, 0)
    if fd is None:
        return None
    try:
        mdir = layout.mailbox_dir(name, partition)
        return os.path.isfile(os.path.join(mdir, index.IDX_FILE)) \
            and not os.path.exists(os.path.join(mdir, DELETING))
    except StoreError:  # a partition no longer configured
        return False
    finally:
        locks.release(fd)


def sync_folder(t: Txn, spool: list[SpoolBox], partition: str | None, user: str | None,
                apply: bool, layout=None) -> list[Finding]:
    """Folder entries from the index headers: added, changed, removed.

    The spool was read before this transaction began, and a mailbox may have
    been created, deleted or renamed since. So before an entry is added or
    removed the mailbox is looked at again, here, under its lock: an entry
    is removed only if its index is still gone, added only if it is still
    there, and one whose mailbox is locked (its create, delete or rename
    under way) is left alone (`layout`: where to look; without it, no second
    look)."""
    out: list[Finding] = []
    scope = Scope(partition, user)
    seen: dict[str, SpoolBox] = {}
    db: dict[str, FolderEntry] = {}
    for key, value in t.records_tolerant(FolderEntry):
        if isinstance(value, CorruptionError):  # rewritten from the spool, or removed
            out.append(_finding(printable_key(key), "db-value-corrupt", str(value),
                                Act("remove it (the spool's copy is added back)",
                                    "rewritten from the spool"), apply))
            if apply:
                t.delete(FOLDER, key)
            continue
        db[key] = value
    for box in spool:
        n = box.name
        if n in seen:
            out.append(Finding(n, "duplicate-mailbox", f"mailbox on partitions "
                                                       f"{seen[n].partition} and {box.partition}"))
            continue
        seen[n] = box
        entry = db.get(n)
        if box.fields is None:
            if layout is not None and _on_disk(layout, n, box.partition) is None:
                continue  # locked: a rename or create is rewriting that header right now
            out.append(Finding(n, "db-unreadable-header", f"index header unreadable ({box.error})",
                               advice(f"run reconstruct {n} first" if entry is None
                                      else "entry kept")))
            continue
        if entry is None:
            if layout is not None and not _on_disk(layout, n, box.partition):
                continue  # deleted, renamed away or being worked on since the spool was read
            if apply:
                t.put(FOLDER, n, box.fields)
            out.append(_finding(n, "db-added", f"folder entry missing (partition "
                                               f"{box.partition}, uidvalidity "
                                               f"{box.fields.uidvalidity})",
                                Act("add it from the index header", "added"), apply))
            continue
        diffs = entry.differences(box.fields)
        if diffs:
            if apply:
                t.put(FOLDER, n, box.fields.keeping_reserved(entry))
            out.append(_finding(n, "db-changed", "; ".join(
                f"{k} {getattr(entry, k)!r} -> {getattr(box.fields, k)!r}" for k in diffs),
                Act("change it to match the index header", "changed"), apply))
    for n, entry in db.items():
        if n in seen or not scope.holds(n, entry):
            continue
        if layout is not None and _on_disk(layout, n, entry.partition) is not False:
            continue  # created, renamed here or being worked on since the spool was read
        if apply:
            t.delete(FOLDER, n)
        out.append(_finding(n, "db-removed", f"folder entry for a mailbox not in the spool "
                                             f"(partition {entry.partition})",
                            Act("remove it", "removed"), apply))
    return out


def expected_quotaroot(name: str, roots: set[str]) -> str:
    """The quota root a mailbox belongs to: its user's, else the deepest shared root containing it."""
    if name.split("/")[0] == USER_NS:
        return quota_root_for(name)
    best = ""
    for r in roots:
        if (name == r or name.startswith(r + "/")) and len(r) > len(best):
            best = r
    return best


# index headers to rewrite once the database transaction has committed, each
# under its mailbox's lock (a lock taken inside a write transaction could
# deadlock with a delivery, which takes them the other way round):
# (mailbox, partition, {Header attribute: new value})
HeaderWrites = list[tuple[str, str, dict]]


def sync_quota_limits(t: Txn, spool: list[SpoolBox], apply: bool,
                      header_writes: HeaderWrites) -> list[Finding]:
    """Each quota root's limit as the index header of the root's mailbox
    keeps it (the spool's copy, quota_root_mailbox): a root missing from
    the database comes back with its limit, and a limit that differs is
    set from the header. A limit the header does not keep yet is copied
    into it."""
    out: list[Finding] = []
    quotas: dict[str, QuotaEntry] = dict(t.good_records(QuotaEntry))
    for box in spool:
        root = box.fields.quotaroot if box.fields else ""
        if not root or box.name != quota_root_mailbox(root):
            continue
        q = quotas.get(root)
        if box.carries_limit:
            if q is None:
                out.append(_finding(root, "quota-added", f"quota root missing; limit "
                                                         f"{_limit(box.quota_limit)} from the "
                                                         f"index header of {box.name}",
                                    Act("add it", "added"), apply))
                if apply:
                    t.put(QUOTA, root, QuotaEntry(limit_bytes=box.quota_limit,
                                                  limit_messages=box.quota_messages))
            elif (q.limit_bytes, q.limit_messages) != (box.quota_limit, box.quota_messages):
                out.append(_finding(root, "quota-limit-changed",
                                    f"limit {_limit(q.limit_bytes, q.limit_messages)} in the "
                                    "database, "
                                    f"{_limit(box.quota_limit, box.quota_messages)} in the index "
                                    f"header of {box.name}",
                                    Act("set it from the index header",
                                        "set from the index header"), apply))
                if apply:
                    q.limit_bytes, q.limit_messages = box.quota_limit, box.quota_messages
                    t.put(QUOTA, root, q)
        elif q is not None:
            out.append(_finding(root, "quota-limit-uncopied",
                                f"limit {_limit(q.limit_bytes)} not kept in the index header "
                                f"of {box.name}", Act("copy it to the index header",
                                                      "copied to the index header"), apply))
            if apply:
                header_writes.append((box.name, box.partition,
                                      {"carries_limit": True, "quota_limit": q.limit_bytes,
                                       "quota_messages": q.limit_messages}))
    return out


def _limit(value: int | None, messages: int | None = None) -> str:
    out = "none" if value is None else f"{value} bytes"
    return out if messages is None else f"{out}, {messages} messages"


def sync_quota_roots(t: Txn, apply: bool, header_writes: HeaderWrites,
                     scope: Scope = Scope()) -> list[Finding]:
    """Every mailbox (in scope) has the right quota root, and every quota root exists."""
    out: list[Finding] = []
    roots = {r for r, _ in t.good_records(QuotaEntry)}
    for n, e in list(t.good_records(FolderEntry)):
        if not scope.holds(n, e):
            continue
        want = expected_quotaroot(n, roots)
        if e.quotaroot != want:
            out.append(_finding(n, "quotaroot-wrong", f"quota root {e.quotaroot!r}, "
                                                      f"expected {want!r}",
                                Act(f"change it to {want!r}", "changed"), apply))
            if apply:
                e.quotaroot = want
                t.put(FOLDER, n, e)
                header_writes.append((n, e.partition, {"quotaroot": want}))
        if want and want not in roots:
            roots.add(want)
            out.append(_finding(want, "quota-added", "quota root missing",
                                Act("add it", "added"), apply))
            if apply:
                t.put(QUOTA, want, QuotaEntry())
    return out


def sync_usage(store: Store, apply: bool, *, from_records: bool,
               only: set[str] | None = None, summary: Summary | None = None,
               planned: dict[str, tuple[int, int]] | None = None,
               checkpoint: Callable[[], None] | None = None) -> list[Finding]:
    """Recount each quota root's usage. Safe beside deliveries: a root's
    mailboxes are locked while it is counted and written, so no append
    falls between the count and the write. One sync at the end, not one per
    root (usage is what deliveries write without a sync too). `planned`:
    (bytes, messages) of mailboxes a check-only run would rebuild, counted
    instead of their present index."""
    out: list[Finding] = []
    by_root: dict[str, list[tuple[str, FolderEntry]]] = {
        r: [] for r, _ in store.db.good_records(QuotaEntry)}
    for n, e in store.db.good_records(FolderEntry):
        if e.quotaroot:
            by_root.setdefault(e.quotaroot, []).append((n, e))
    for root, boxes in sorted(by_root.items()):
        if only is not None and root not in only:
            continue
        if checkpoint is not None:
            checkpoint()
        for _attempt in range(RECOUNT_TRIES):
            counted = _recount_root(store, root, boxes, apply, from_records, planned)
            if counted is not None:
                break
            # a mailbox of the root was created, deleted or renamed since the
            # list was read: count again over the root's mailboxes as they are now
            boxes = store.db.read(functools.partial(root_mailboxes, root=root))
        else:
            out.append(Finding(root, "quota-busy", f"usage not recounted: its mailboxes changed "
                                                   f"during {RECOUNT_TRIES} counts"))
            continue
        u, f = counted
        for n, err in u.unreadable:
            out.append(Finding(n, "quota-unreadable", f"usage not counted: {err}",
                               advice(f"run reconstruct {n}")))
        if summary is not None:
            summary.mailboxes_checked += u.mailboxes
            summary.messages_checked += u.messages
        if f:
            out.append(f)
    if apply and out:
        store.db.sync()
    return out


def _recount_root(store: Store, root: str, boxes: list[tuple[str, FolderEntry]], apply: bool,
                  from_records: bool, planned: dict[str, tuple[int, int]] | None
                  ) -> tuple[Usage, Finding | None] | None:
    """Count a root's mailboxes under their locks and write the usage, in
    one transaction that first looks again at which mailboxes the root
    has: None (nothing written) when that set changed since `boxes` was
    read. A mailbox created later cannot hold mail counted before this
    write (a delivery needs its entry), and one deleted or renamed away
    waits for its lock, which is held here until after the write."""
    names = sorted(n for n, _ in boxes)
    with store.lock(*names):
        u = count_usage(store, boxes, from_records=from_records, planned=planned)

        def txn(t: Txn) -> tuple[Usage, Finding | None] | None:
            if sorted(n for n, _ in root_mailboxes(t, root)) != names:
                return None
            try:
                q = t.record(QuotaEntry, root) or QuotaEntry()
                was: tuple[int | None, int | None] = (q.used_bytes, q.used_messages)
            except CorruptionError:  # the limit is lost with the value; usage is recounted
                q, was = QuotaEntry(), (None, None)
            b, m = u.bytes, u.messages
            if was == (b, m):
                return u, None
            if apply:
                q.used_bytes, q.used_messages = b, m
                t.put(QUOTA, root, q)
            return u, _finding(root, "quota-usage", f"usage {was[0]} bytes / {was[1]} messages, "
                                                    f"counted {b} / {m}",
                               Act("correct it", "corrected"), apply)
        return store.db.write(txn, durable=False) if apply else store.db.read(txn)


def add_usage(store: Store, deltas: dict[str, tuple[int, int]], *, apply: bool = True
              ) -> tuple[list[Finding], set[str]]:
    """Adjust quota roots' usage by what rebuilds changed: (bytes, messages)
    (apply=False: announce it). Returns the findings, and the roots whose
    value failed its checksum: a delta needs the old usage, so those must be
    recounted instead."""
    if not deltas:
        return [], set()

    def txn(t: Txn) -> tuple[list[Finding], set[str]]:
        out, unreadable = [], set()
        for root, (b, m) in sorted(deltas.items()):
            try:
                q = t.record(QuotaEntry, root) or QuotaEntry()
            except CorruptionError:
                unreadable.add(root)
                continue
            if apply:
                quota_add(t, root, b, m)
            out.append(_finding(root, "quota-usage", f"usage {q.used_bytes} bytes / "
                                                     f"{q.used_messages} messages, rebuilt "
                                                     f"mailboxes change it by {b:+} / {m:+}",
                                Act("correct it", "corrected"), apply))
        return out, unreadable

    return store.db.write(txn) if apply else store.db.read(txn)


def apply_header_writes(store: Store, header_writes: HeaderWrites) -> None:
    """The header changes sync_quota_roots and sync_quota_limits decided,
    each made under its mailbox's lock to the index as it is then (a
    delivery may have appended since). A damaged index is left to
    reconstruct of that mailbox, which its check reports."""
    for name, partition, changes in header_writes:
        mdir = store.layout.mailbox_dir(name, partition)
        with store.lock(name):
            try:
                idx = index.read_index(mdir, name)
            except (OSError, CorruptionError):
                continue
            if idx.problems:
                continue
            for attr, value in changes.items():
                setattr(idx.header, attr, value)
            index.write_index(mdir, idx.header, idx.records)


def sync_lright(t: Txn, apply: bool) -> list[Finding]:
    """lright from the ACLs of the folder entries."""
    want: dict[str, set[str]] = {}
    for n, e in t.good_records(FolderEntry):
        for ident in e.acl:
            want.setdefault(ident, set()).add(n)
    # a value that does not verify counts as missing, and is rewritten
    have = {k: set(v.mailboxes) for k, v in t.good_records(LrightEntry)}
    out = []
    for ident in sorted(set(want) | set(have)):
        w, h = want.get(ident, set()), have.get(ident)
        if h == w:
            continue
        if not w:
            kind, act, detail = ("lright-removed", Act("remove it", "removed"),
                                 "stale entry (no ACL names it)")
        elif h is None:
            kind, act, detail = ("lright-added", Act("add it", "added"),
                                 f"missing ({len(w)} mailboxes)")
        else:
            kind, act = "lright-changed", Act("change it", "changed")
            detail = f"+{sorted(w - h)} -{sorted(h - w)}"
        out.append(_finding(f"lright:{ident}", kind, detail, act, apply))
        if apply:
            if w:
                t.put(LRIGHT, ident, LrightEntry(sorted(w)))
            else:
                t.delete(LRIGHT, ident)
    return out
