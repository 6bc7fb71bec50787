"""Rebuild one mailbox's index from its message files.

What it keeps and never does:
- keeps flags, internal dates and modseqs of every old record that still
  verifies (checksum, and a file of the recorded size);
- keeps UIDVALIDITY (index header, else database; a new one only when
  neither survives) and never lowers UIDNEXT;
- never reuses a UID: a file below UIDNEXT that no record or store.exp
  knows gets a new UID by a hard link `<new>.msg` to the same file, and its
  old UID goes to store.exp (the old name is erased with the other expunged
  files); no message file is deleted, moved or rewritten;
- expunged messages stay expunged unless remove_exp (-e).

Write order, so that a kill at any point leaves old or new and a re-run
finishes the job: links, then store.exp, then store.cache and store.idx.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from .. import index, logmsg
from ..errors import StoreError
from ..fsutil import TEMP_PREFIX, Batch, Reader, fsync_dir
from ..layout import user_of
from ..mailbox import ALL_RIGHTS, message_path, quota_root_for
from ..message import guid as guid_of
from ..message import parse_header
from .check import header_db_fields
from .findings import Finding
from .scan import Scan

log = logging.getLogger("store.reconstruct")
INDEX_TEMP_PREFIXES = tuple(f"{TEMP_PREFIX}{f}." for f in index.INDEX_FILES)


@dataclass
class Result:
    findings: list[Finding]
    db_fields: dict
    messages: int
    header: index.Header


def rebuild_mailbox(scan: Scan, entry: dict | None, partition: str, *,
                    remove_exp: bool = False, uidnext_floor: int = 0,
                    batch: Batch | None = None, zeroed: index.Header | None = None) -> Result:
    """With `batch`, the new files wait in it: the caller keeps the mailbox
    locked until the batch is committed. `zeroed`: the header of an index
    set aside by -i, whose copy of the quota limit the new one keeps."""
    n, mdir = scan.name, scan.mdir
    out: list[Finding] = []
    old_h = scan.header
    old = {r.uid: r for r in scan.records}
    exp = {} if remove_exp else {r.uid: r for r in scan.exp}
    if remove_exp and scan.exp:
        out.append(Finding(n, "exp-removed", f"store.exp removed: {len(scan.exp)} expunged "
                                             f"messages come back", "restored", fixed=True,
                           problem=False))
    # identity: header first, then the database, then new
    if old_h is not None:
        uidvalidity, unique_id = old_h.uidvalidity, old_h.unique_id
        acl, qroot = old_h.acl, old_h.quotaroot
    elif entry is not None:
        uidvalidity, unique_id = entry["uidvalidity"], bytes.fromhex(entry["uniqueid"])
        acl, qroot = entry.get("acl", {}), entry.get("quotaroot", "")
    else:
        import uuid  # only here: its import costs every run's start-up ~3 ms

        uidvalidity = int(time.time()) & 0xFFFFFFFF or 1
        unique_id = uuid.uuid4().bytes
        user = user_of(n)
        acl, qroot = ({user: ALL_RIGHTS} if user else {}), quota_root_for(n)
        out.append(Finding(n, "uidvalidity-new", f"UIDVALIDITY lost with index and database "
                                                 f"entry; new value {uidvalidity}: clients will "
                                                 "resync this mailbox", "new UIDVALIDITY",
                           fixed=True))
        logmsg.log("reconstruct", logmsg.UIDVALIDITY_NEW, mailbox=n, uidvalidity=uidvalidity)
    base_next = old_h.uidnext if old_h is not None else 0
    # salvaged records keep their modseqs: new ones must come after them
    modseq = max([old_h.highest_modseq if old_h is not None else 0]
                 + [r.modseq for r in scan.records])
    if scan.salvaged:
        out.append(Finding(n, "records-salvaged", f"index header unreadable; {len(scan.records)} "
                                                  "records that verify found after it",
                           "their flags, dates and modseqs kept", fixed=True, problem=False))
    cpath = os.path.join(mdir, index.CACHE_FILE)

    # files indexed (or to be) by inode, so a re-run after a kill does not
    # give a hard-linked message a third UID
    records: list[tuple[index.Record, dict]] = []
    relinks: list[tuple[int, int]] = []
    new_exp: dict[int, index.Record] = {}
    kept_inodes: set[int] = set()
    # each file: its old record still holds (kept), or it is indexed from
    # the file under its own UID (fresh), or it is below UIDNEXT and unknown
    # (pending: a new UID later); expunged ones stay expunged
    kept: set[int] = set()
    fresh: list[int] = []
    pending: list[int] = []
    in_place: list[int] = []  # kept and fresh, in UID order
    for uid in sorted(scan.files):
        r = old.get(uid)
        if uid in exp:
            new_exp[uid] = exp[uid]
        elif r is not None and r.size == scan.files[uid].size:
            kept.add(uid)
            in_place.append(uid)
        elif r is not None or uid >= base_next:
            fresh.append(uid)
            in_place.append(uid)
        else:
            pending.append(uid)
    to_read = [(scan.files[u].path, scan.files[u].size) for u in fresh + pending]
    with Reader(to_read) as reader:
        for uid in in_place:
            f, r = scan.files[uid], old.get(uid)
            if uid in kept:
                fields = _cached_fields(scan, r, cpath)
                if fields is None:
                    fields = parse_header(reader.read(f.path, f.size)).fields
                    out.append(Finding(n, "cache-invalid", f"cache entry of uid {uid} rewritten "
                                                           "from the message", "rebuilt", fixed=True))
                records.append((r, fields))
                kept_inodes.add(f.ino)
                continue
            modseq += 1
            records.append(_record_from_file(reader, f, uid, 0 if r is None else r.flags,
                                             None if r is None else r.internaldate, modseq))
            kept_inodes.add(f.ino)
            if r is not None:
                out.append(Finding(n, "file-size", f"uid {uid}: record said {r.size} bytes, file "
                                                   f"has {f.size}", "record rebuilt from the file",
                                   fixed=True))
            elif old_h is not None:
                out.append(Finding(n, "unindexed-file", f"message file {f.path} (uid {uid}) was "
                                                        "in no record", f"indexed as uid {uid}",
                                   fixed=True))
        next_uid = max([base_next] + [r.uid + 1 for r, _ in records] + [u + 1 for u in scan.files]
                       + [u + 1 for u in exp] + [1])
        for uid in pending:  # below UIDNEXT and unknown: never reuse the UID
            f = scan.files[uid]
            old_rec = old.get(uid)
            if f.ino in kept_inodes:  # already linked by an interrupted earlier run
                new_exp[uid] = _exp_record(f, uid)
                out.append(Finding(n, "unindexed-file", f"message file {f.path} (uid {uid}) is a "
                                                        "link of an indexed message",
                                   "old UID expunged", fixed=True))
                continue
            new_uid = next_uid
            next_uid += 1
            relinks.append((uid, new_uid))
            modseq += 1
            flags = 0 if old_rec is None else old_rec.flags
            records.append(_record_from_file(reader, f, new_uid, flags, None, modseq))
            new_exp[uid] = _exp_record(f, uid)
            kept_inodes.add(f.ino)
            out.append(Finding(n, "unindexed-file", f"message file {f.path} (uid {uid}) was in no "
                                                    "record", f"appended as uid {new_uid}", fixed=True))
    for uid in sorted(old):
        if uid not in scan.files:
            out.append(Finding(n, "missing-file", f"message file of uid {uid} is missing",
                               "record dropped", fixed=True))
    for uid in sorted(exp):
        if uid not in scan.files:
            out.append(Finding(n, "exp-missing-file", f"store.exp listed uid {uid} whose file is "
                                                      "erased", "dropped from store.exp", fixed=True))

    for path in scan.temps:  # an index write cut off by a kill; we hold the lock
        if os.path.dirname(path) == mdir.rstrip("/") and \
                os.path.basename(path).startswith(INDEX_TEMP_PREFIXES):
            os.unlink(path)
            out.append(Finding(n, "temp-file", f"stale temp file {path}", "removed",
                               fixed=True, problem=False))
    records.sort(key=lambda x: x[0].uid)
    limit_from = old_h or zeroed
    header = index.Header(name=n, unique_id=unique_id, uidvalidity=uidvalidity,
                          uidnext=max(next_uid, base_next, uidnext_floor), highest_modseq=modseq,
                          last_update=int(time.time()), quotaroot=qroot, acl=acl,
                          carries_limit=limit_from is not None and limit_from.carries_limit,
                          quota_limit=None if limit_from is None else limit_from.quota_limit)
    exp_list = sorted(new_exp.values(), key=lambda r: r.uid)
    _write(mdir, header, records, relinks, exp_list, batch,
           exp_changed=[r.pack() for r in exp_list] != [r.pack() for r in scan.exp]
           or bool(scan.exp_problems) or not os.path.exists(os.path.join(mdir, index.EXP_FILE)))
    fields = header_db_fields(header, partition)
    return Result(out, fields, len(records), header)


def _cached_fields(scan: Scan, r: index.Record, cpath: str) -> dict | None:
    if scan.cache is None or r.uid in scan.cache_bad:
        return None
    try:
        return index.read_cache_entry(scan.cache, r, scan.name, cpath)
    except Exception:  # noqa: BLE001 - any damage means: rebuild this entry
        return None


def _record_from_file(reader: Reader, f, uid: int, flags: int, internaldate: int | None,
                      modseq: int) -> tuple[index.Record, dict]:
    data = reader.read(f.path, f.size)
    p = parse_header(data)
    when = internaldate if internaldate is not None else f.mtime
    return (index.Record(uid, flags, when, p.sent_date, len(data), p.header_size, 0, 0, modseq,
                         guid_of(data)), p.fields)


def _exp_record(f, uid: int) -> index.Record:
    return index.Record(uid, index.FLAG_DELETED, f.mtime, 0, f.size, 0, 0, 0, 0, b"\0" * 32)


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
