"""The mailbox database from the spool: folder (-m), quota (-q), lright (-l).

The spool's redundant copy (each index header) is the source; every entry
added, removed or changed is a finding.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import index
from ..db import Txn, printable_key
from ..errors import CorruptionError
from ..layout import USER_NS, user_of, walk_spool
from ..mailbox import Store, mailbox_usage, quota_add, quota_root_for, quota_root_mailbox
from .check import DB_FIELDS, header_db_fields
from .findings import Finding, Summary


@dataclass
class SpoolBox:
    name: str
    partition: str
    mdir: str
    fields: dict | None  # from the index header; None when it cannot be read
    exists: int = 0
    bytes: int = 0
    error: str = ""
    carries_limit: bool = False  # the header keeps its quota root's limit
    quota_limit: int | None = None


def read_spool(store: Store, partition: str | None = None, user: str | None = None
               ) -> list[SpoolBox]:
    out = []
    for part, ppath in store.layout.config.partitions().items():
        if partition and part != partition:
            continue
        for name, mdir in walk_spool(ppath):
            if user and user_of(name) != user:
                continue
            try:
                h = index.read_header(mdir, name)
                if h.name != name:
                    raise CorruptionError(f"index header names {h.name!r}", kind="header-name")
                out.append(SpoolBox(name, part, mdir, header_db_fields(h, part), h.exists,
                                    h.total_bytes, carries_limit=h.carries_limit,
                                    quota_limit=h.quota_limit))
            except (OSError, CorruptionError) as e:
                out.append(SpoolBox(name, part, mdir, None, error=str(e)))
    return sorted(out, key=lambda b: (b.name, b.partition))


def good_items(t: Txn, db: str):
    """Entries whose value verifies; the others are -m's business."""
    return ((k, v) for k, v in t.items_tolerant(db) if not isinstance(v, CorruptionError))


def _in_scope(name: str, entry: dict, partition: str | None, user: str | None) -> bool:
    if partition and entry.get("partition") != partition:
        return False
    return not user or user_of(name) == user


def sync_folder(store: Store, t: Txn, spool: list[SpoolBox], partition: str | None,
                user: str | None, apply: bool) -> list[Finding]:
    out: list[Finding] = []
    seen: dict[str, SpoolBox] = {}
    act = (lambda a: a) if apply else (lambda a: "none")
    db: dict[str, dict] = {}
    for key, value in t.items_tolerant("folder"):
        if isinstance(value, CorruptionError):  # rewritten from the spool, or removed
            out.append(Finding(printable_key(key), "db-value-corrupt", str(value),
                               act("rewritten from the spool"), fixed=apply))
            if apply:
                t.delete("folder", key)
            continue
        db[key] = value
    for box in spool:
        n = box.name
        if n in seen:
            out.append(Finding(n, "duplicate-mailbox", f"mailbox on partitions {seen[n].partition} "
                                                       f"and {box.partition}", "left alone"))
            continue
        seen[n] = box
        entry = db.get(n)
        if box.fields is None:
            out.append(Finding(n, "db-unreadable-header", f"index header unreadable ({box.error})",
                               f"run reconstruct {n} first" if entry is None else "entry kept"))
            continue
        if entry is None:
            if apply:
                t.put("folder", n, box.fields)
            out.append(Finding(n, "db-added", f"folder entry missing (partition {box.partition}, "
                                              f"uidvalidity {box.fields['uidvalidity']})",
                               act("added"), fixed=apply))
            continue
        diffs = [k for k in DB_FIELDS if entry.get(k) != box.fields[k]]
        if diffs:
            if apply:
                t.put("folder", n, {**entry, **box.fields})
            out.append(Finding(n, "db-changed", "; ".join(f"{k} {entry.get(k)!r} -> "
                                                          f"{box.fields[k]!r}" for k in diffs),
                               act("changed"), fixed=apply))
    for n, entry in db.items():
        if n in seen or not _in_scope(n, entry, partition, user):
            continue
        if apply:
            t.delete("folder", n)
        out.append(Finding(n, "db-removed", f"folder entry for a mailbox not in the spool "
                                            f"(partition {entry.get('partition')})",
                           act("removed"), fixed=apply))
    return out


def expected_quotaroot(name: str, roots: set[str]) -> str:
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
    act = (lambda a: a) if apply else (lambda a: "none")
    quotas = dict(good_items(t, "quota"))
    for box in spool:
        root = (box.fields or {}).get("quotaroot")
        if not root or box.name != quota_root_mailbox(root):
            continue
        q = quotas.get(root)
        if box.carries_limit:
            if q is None:
                out.append(Finding(root, "quota-added", f"quota root missing; limit "
                                                        f"{_limit(box.quota_limit)} from the index "
                                                        f"header of {box.name}", act("added"),
                                   fixed=apply))
                if apply:
                    t.put("quota", root, {"limit_bytes": box.quota_limit, "used_bytes": 0,
                                          "used_messages": 0})
            elif q.get("limit_bytes") != box.quota_limit:
                out.append(Finding(root, "quota-limit-changed",
                                   f"limit {_limit(q.get('limit_bytes'))} in the database, "
                                   f"{_limit(box.quota_limit)} in the index header of {box.name}",
                                   act("set from the index header"), fixed=apply))
                if apply:
                    t.put("quota", root, {**q, "limit_bytes": box.quota_limit})
        elif q is not None:
            out.append(Finding(root, "quota-limit-uncopied",
                               f"limit {_limit(q.get('limit_bytes'))} not kept in the index header "
                               f"of {box.name}", act("copied to the index header"), fixed=apply,
                               problem=False))
            if apply:
                header_writes.append((box.name, box.partition,
                                      {"carries_limit": True, "quota_limit": q.get("limit_bytes")}))
    return out


def _limit(value: int | None) -> str:
    return "none" if value is None else f"{value} bytes"


def sync_quota_roots(store: Store, t: Txn, apply: bool,
                     header_writes: HeaderWrites) -> list[Finding]:
    """Every mailbox has the right quota root, and every quota root exists."""
    out: list[Finding] = []
    act = (lambda a: a) if apply else (lambda a: "none")
    roots = {r for r, _ in good_items(t, "quota")}
    for n, e in list(good_items(t, "folder")):
        want = expected_quotaroot(n, roots)
        if e.get("quotaroot", "") != want:
            out.append(Finding(n, "quotaroot-wrong", f"quota root {e.get('quotaroot')!r}, "
                                                     f"expected {want!r}", act("changed"),
                               fixed=apply))
            if apply:
                t.put("folder", n, {**e, "quotaroot": want})
                header_writes.append((n, e["partition"], {"quotaroot": want}))
        if want and want not in roots:
            roots.add(want)
            out.append(Finding(want, "quota-added", "quota root missing", act("added"),
                               fixed=apply))
            if apply:
                t.put("quota", want, {"limit_bytes": None, "used_bytes": 0, "used_messages": 0})
    return out


def sync_usage(store: Store, apply: bool, *, from_records: bool,
               only: set[str] | None = None, summary: Summary | None = None) -> list[Finding]:
    """Recount each quota root's usage. Safe beside deliveries: a root's
    mailboxes are locked while it is counted and written, so no append
    falls between the count and the write. One sync at the end, not one per
    root (usage is what deliveries write without a sync too)."""
    out: list[Finding] = []
    by_root: dict[str, list[tuple[str, dict]]] = {
        r: [] for r, _ in store.db.read(lambda t: list(good_items(t, "quota")))}
    for n, e in store.db.read(lambda t: list(good_items(t, "folder"))):
        if e.get("quotaroot"):
            by_root.setdefault(e["quotaroot"], []).append((n, e))
    for root, boxes in sorted(by_root.items()):
        if only is not None and root not in only:
            continue
        with store.lock(*[n for n, _ in boxes]):
            b = m = 0
            for n, e in boxes:
                try:
                    nb, nm = mailbox_usage(store, n, e, from_records=from_records)
                except (OSError, CorruptionError) as err:
                    out.append(Finding(n, "quota-unreadable", f"usage not counted: {err}",
                                       f"run reconstruct {n}"))
                    continue
                b, m = b + nb, m + nm
                if summary is not None:
                    summary.mailboxes_checked += 1
                    summary.messages_checked += nm

            def txn(t: Txn, root=root, b=b, m=m) -> Finding | None:
                try:
                    q = t.get("quota", root) or {"limit_bytes": None}
                except CorruptionError:  # the limit is lost with the value; usage is recounted
                    q = {"limit_bytes": None, "used_bytes": None}
                if (q.get("used_bytes"), q.get("used_messages")) == (b, m):
                    return None
                if apply:
                    t.put("quota", root, {**q, "used_bytes": b, "used_messages": m})
                return Finding(root, "quota-usage", f"usage {q.get('used_bytes')} bytes / "
                                                    f"{q.get('used_messages')} messages, counted "
                                                    f"{b} / {m}", "corrected" if apply else "none",
                               fixed=apply)
            f = store.db.write(txn, durable=False) if apply else store.db.read(txn)
            if f:
                out.append(f)
    if apply and out:
        store.db.sync()
    return out


def add_usage(store: Store, deltas: dict[str, tuple[int, int]]
              ) -> tuple[list[Finding], set[str]]:
    """Adjust quota roots' usage by what rebuilds changed: (bytes, messages).
    Returns the findings, and the roots whose value failed its checksum: a
    delta needs the old usage, so those must be recounted instead."""
    if not deltas:
        return [], set()

    def txn(t: Txn) -> tuple[list[Finding], set[str]]:
        out, unreadable = [], set()
        for root, (b, m) in sorted(deltas.items()):
            try:
                q = t.get("quota", root) or {}
            except CorruptionError:
                unreadable.add(root)
                continue
            ub, um = q.get("used_bytes") or 0, q.get("used_messages") or 0
            quota_add(t, root, b, m)
            out.append(Finding(root, "quota-usage", f"usage {ub} bytes / {um} messages, "
                                                    f"rebuilt mailboxes changed it by {b:+} / {m:+}",
                               "corrected", fixed=True))
        return out, unreadable

    return store.db.write(txn)


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
    want: dict[str, set[str]] = {}
    for n, e in good_items(t, "folder"):
        for ident in e.get("acl", {}):
            want.setdefault(ident, set()).add(n)
    # a value that does not verify counts as missing, and is rewritten
    have = {k: set(v.get("mailboxes", [])) for k, v in good_items(t, "lright")}
    out = []
    act = (lambda a: a) if apply else (lambda a: "none")
    for ident in sorted(set(want) | set(have)):
        w, h = want.get(ident, set()), have.get(ident)
        if h == w:
            continue
        if not w:
            kind, action, detail = "lright-removed", "removed", "stale entry (no ACL names it)"
        elif h is None:
            kind, action, detail = "lright-added", "added", f"missing ({len(w)} mailboxes)"
        else:
            kind, action = "lright-changed", "changed"
            detail = f"+{sorted(w - h)} -{sorted(h - w)}"
        out.append(Finding(f"lright:{ident}", kind, detail, act(action), fixed=apply))
        if apply:
            if w:
                t.put("lright", ident, {"mailboxes": sorted(w)})
            else:
                t.delete("lright", ident)
    return out


