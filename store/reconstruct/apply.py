"""Write what a Plan decided for one mailbox: the rebuilt index.

Write order, so that a kill at any point leaves old or new and a re-run
finishes the job: links, then store.exp, then store.cache and store.idx.
The caller holds the mailbox lock (until the batch is committed, with one).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from .. import index, logmsg
from ..errors import StoreError
from ..fsutil import Batch, Reader, fsync_dir
from ..mailbox import message_path
from ..message import guid as guid_of
from ..message import parse_header
from .plan import DB_KINDS, Plan
from .scan import FileInfo, Scan


@dataclass
class Applied:
    """What apply_plan wrote."""

    header: index.Header  # the index as written
    messages: int


def apply_plan(plan: Plan, scan: Scan, batch: Batch | None = None) -> Applied:
    """Rebuild the index as `plan` says, reading the message files it
    indexes; mark the plan's findings applied (all but the folder entry
    ones, which the runner writes in one transaction for every mailbox).
    With `batch`, the new files wait in it."""
    if not plan.rebuild:
        raise StoreError(f"{plan.name}: nothing to apply (the plan rebuilds nothing)")
    # salvaged records' keyword bits name entries of a table lost with the header
    old = {r.uid: r if scan.header is not None else r._replace(keywords=0)
           for r in scan.records}
    cpath = os.path.join(scan.mdir, index.CACHE_FILE)
    records: list[tuple[index.Record, dict]] = []
    modseq = plan.modseq
    fresh = [u for u in plan.in_place if u not in plan.kept]
    to_read = [(scan.files[u].path, scan.files[u].size)
               for u in [*fresh, *(o for o, _n in plan.relinks)]]
    with Reader(to_read) as reader:
        for uid in plan.in_place:
            f, r = scan.files[uid], old.get(uid)
            if uid in plan.kept:
                if uid in plan.reparse:
                    fields = parse_header(reader.read(f.path, f.size)).fields
                else:
                    fields = index.read_cache_entry(scan.cache, r, scan.name, cpath)
                records.append((r, fields))
                continue
            modseq += 1
            records.append(_record_from_file(reader, f, uid, r,
                                             None if r is None else r.internaldate, modseq))
        for old_uid, new_uid in plan.relinks:
            modseq += 1
            r = old.get(old_uid)
            records.append(_record_from_file(reader, scan.files[old_uid], new_uid, r, None,
                                             modseq))
    for path in plan.remove_temps:
        os.unlink(path)
    records.sort(key=lambda x: x[0].uid)
    header = index.Header(name=plan.name, unique_id=plan.unique_id, uidvalidity=plan.uidvalidity,
                          uidnext=plan.uidnext, highest_modseq=modseq,
                          last_update=int(time.time()), quotaroot=plan.quotaroot, acl=plan.acl,
                          keywords=plan.keywords, recent_uid=plan.recent_uid,
                          carries_limit=plan.carries_limit, quota_limit=plan.quota_limit,
                          quota_messages=plan.quota_messages)
    _write(scan.mdir, header, records, plan.relinks, plan.expunged, batch, plan.exp_changed)
    if plan.new_uidvalidity:
        logmsg.log("reconstruct", logmsg.UIDVALIDITY_NEW, mailbox=plan.name,
                   uidvalidity=plan.uidvalidity)
    plan.findings = [f if f.kind in DB_KINDS else f.applying() for f in plan.findings]
    return Applied(header, len(records))


def _record_from_file(reader: Reader, f: FileInfo, uid: int, old: index.Record | None,
                      internaldate: int | None, modseq: int) -> tuple[index.Record, dict]:
    """A record indexed from the file; flags and keywords from `old`, if any."""
    data = reader.read(f.path, f.size)
    p = parse_header(data)
    when = internaldate if internaldate is not None else f.mtime
    return (index.Record(uid, old.flags if old else 0, when, p.sent_date, len(data),
                         p.header_size, 0, 0, modseq, guid_of(data), old.keywords if old else 0),
            p.fields)


def _write(mdir: str, header: index.Header, records, relinks, exp_records,
           batch: Batch | None, exp_changed: bool) -> None:
    buckets = set()
    for old_uid, new_uid in relinks:
        dst = message_path(mdir, new_uid)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        try:
            os.link(message_path(mdir, old_uid), dst)
        except FileExistsError:
            raise StoreError(f"{dst} appeared while the mailbox was locked for reconstruct; "
                             "nothing changed, run reconstruct again") from None
        buckets.add(os.path.dirname(dst))
    if batch is None:  # else the batch's first sync covers the links
        for b in buckets:
            fsync_dir(b)
    if exp_changed:
        index.write_expunged(mdir, exp_records, fsync_directory=False, batch=batch)
    empty = index.empty_cache()
    blobs, out = index.pack_cache(records, len(empty))
    index.write_index(mdir, header, out, cache=empty + blobs, fsync_directory=False, batch=batch)
    if batch is None:
        fsync_dir(mdir)  # once, for every file swapped in above
