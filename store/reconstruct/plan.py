"""Decide what a repair of one mailbox does: scan + folder entry -> Plan.

The one classifier of `reconstruct`: `-n` prints the plan's findings with
their actions announced ("would drop record uid 3"), a repair applies the
plan (apply.py) and prints the same findings with the actions done. The
plan reads nothing beyond the scan; it never changes anything.

What a rebuild keeps and never does:
- keeps flags, internal dates and modseqs of every old record that still
  verifies (checksum, and a file of the recorded size);
- keeps UIDVALIDITY (index header, else database; a new one only when
  neither survives) and never lowers UIDNEXT;
- never reuses a UID: a file below UIDNEXT that no record or store.exp
  knows gets a new UID by a hard link `<new>.msg` to the same file, and its
  old UID goes to store.exp (the old name is erased with the other expunged
  files); no message file is deleted, moved or rewritten;
- expunged messages stay expunged unless remove_exp (-e).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .. import index
from ..db import FolderEntry, QuotaEntry
from ..fsutil import TEMP_PREFIX
from ..mailbox import MAX_UID, quota_root_for, quota_root_mailbox
from ..mailbox.acl import default_acl
from ..mailbox.lifecycle import new_uidvalidity, new_uniqueid
from .findings import Act, Finding, advice
from .scan import FileInfo, Scan

INDEX_TEMP_PREFIXES = tuple(f"{TEMP_PREFIX}{f}." for f in index.INDEX_FILES)
REBUILD_INDEX = Act("rebuild the index from the message files", "index rebuilt")
SYMLINK_ADVICE = advice("left alone (never followed): remove the symlink or put the real file "
                        "or directory there, then run reconstruct again")
DB_KINDS = ("db-missing", "db-mismatch")  # applied by the runner, in one transaction


@dataclass
class Plan:
    """Every decision about one mailbox, each with its finding."""

    name: str
    mdir: str
    partition: str
    findings: list[Finding] = field(default_factory=list)
    rebuild: bool = False
    # what the folder entry is to be (None: no index header to say it)
    db_fields: FolderEntry | None = None
    # the rebuilt index, decided here and written by apply.py
    uidvalidity: int = 0
    unique_id: bytes = b""
    acl: dict[str, str] = field(default_factory=dict)
    quotaroot: str = ""
    keywords: list[str] = field(default_factory=list)  # the old header's table, if readable
    recent_uid: int = 0
    carries_limit: bool = False
    quota_limit: int | None = None
    quota_messages: int | None = None
    uidnext: int = 1
    modseq: int = 0  # the highest kept; each record indexed from a file takes the next
    in_place: list[int] = field(default_factory=list)  # uids kept or indexed as they are
    kept: set[int] = field(default_factory=set)  # whose old record is kept
    reparse: set[int] = field(default_factory=set)  # kept, but the cache entry from the file
    relinks: list[tuple[int, int]] = field(default_factory=list)  # (old uid, new uid)
    expunged: list[index.Record] = field(default_factory=list)  # the new store.exp
    exp_changed: bool = False
    remove_temps: list[str] = field(default_factory=list)
    new_uidvalidity: bool = False

    def usage(self, scan: Scan) -> tuple[int, int]:
        """(bytes, messages) the rebuilt index will hold."""
        uids = self.in_place + [old for old, _new in self.relinks]
        return sum(scan.files[u].size for u in uids), len(uids)

    def add(self, kind: str, detail: str, act: Act | None = None) -> None:
        self.findings.append(Finding(self.name, kind, detail, act or advice("left alone")))


def header_db_fields(h: index.Header | None, partition: str) -> FolderEntry | None:
    """The folder entry an index header's redundant copy describes."""
    if h is None:
        return None
    return FolderEntry(partition, h.unique_id.hex(), h.uidvalidity, h.acl, h.quotaroot,
                       modseq_reserved=h.highest_modseq)


def plan_mailbox(scan: Scan, entry: FolderEntry | None, partition: str, *, force: bool = False,
                 remove_exp: bool = False, uidnext_floor: int = 0,
                 zeroed: index.Header | None = None, root_quota: QuotaEntry | None = None) -> Plan:
    """What a repair of the scanned mailbox does. `force`: rebuild even
    when nothing is wrong. `uidnext_floor` and `zeroed`: the UIDNEXT and
    header of an index set aside by -i (the scan then holds no index).
    `root_quota`: the database's entry of the quota root whose own mailbox
    this is (quota_root_mailbox), so that a rebuilt header keeps its copy
    of the limit even when the old header is lost."""
    n = scan.name
    p = Plan(n, scan.mdir, partition)
    if scan.symlinks:  # never read or written through: the administrator decides
        for path in scan.symlinks:
            p.findings.append(Finding(n, "symlink", f"{path} is a symlink where the store "
                                                    "keeps its own files", SYMLINK_ADVICE))
        return p
    _index_problems(scan, p)
    p.rebuild = force or any(f.problem and f.act is REBUILD_INDEX for f in p.findings) \
        or _files_disagree(scan)
    if p.rebuild:
        _decide_rebuild(scan, entry, p, remove_exp, uidnext_floor, zeroed, root_quota)
    for path in scan.unknown:
        p.add("unknown-file", f"unrecognised file {path}")
    for path in scan.temps:
        if p.rebuild and os.path.dirname(path) == scan.mdir.rstrip("/") and \
                os.path.basename(path).startswith(INDEX_TEMP_PREFIXES):
            p.remove_temps.append(path)  # an index write cut off by a kill
            p.add("temp-file", f"stale temp file {path}", Act("remove it", "removed"))
        else:
            p.add("temp-file", f"temp file of an unfinished write {path}")
    _db_entry(scan, entry, p)
    return p


def _index_problems(scan: Scan, p: Plan) -> None:
    """Damage of the index files themselves: each is mended by a rebuild."""
    if scan.index_missing:
        p.add("index-missing", f"store.idx missing in {scan.mdir}", REBUILD_INDEX)
    if scan.header_error is not None:
        p.add(scan.header_error.kind, str(scan.header_error), REBUILD_INDEX)
    for e in scan.index_problems:
        p.add(e.kind, str(e), REBUILD_INDEX)
    if scan.cache_error is not None:
        p.findings.append(Finding(p.name, "cache-invalid", str(scan.cache_error), REBUILD_INDEX))
    for e in scan.exp_problems:
        p.add(e.kind, str(e), REBUILD_INDEX)


def _files_disagree(scan: Scan) -> bool:
    """Whether records, store.exp and the files disagree (a rebuild mends it).
    -e is no reason to rebuild: it acts only on a rebuild (the seed: "-e will
    not recover removed messages if reconstruct does not detect damage")."""
    if scan.cache_bad or scan.content_changed:
        return True
    files = scan.files
    for r in scan.records:  # the hot loop of a check: one lookup a record
        f = files.get(r.uid)
        if f is None or f.size != r.size:
            return True
    if scan.header is not None and len(files) > len(scan.records):
        indexed = {r.uid for r in scan.records}
        extra = set(files) - indexed - {r.uid for r in scan.exp}
        if extra and any(u > MAX_UID for u in extra):  # left beside its link by a rebuild
            inodes = {files[u].ino for u in indexed if u in files}
            extra = {u for u in extra if u <= MAX_UID or files[u].ino not in inodes}
        if extra:
            return True
    if scan.exp:
        indexed = {r.uid for r in scan.records}
        return any(r.uid not in files or r.uid in indexed for r in scan.exp)
    return False


def _decide_rebuild(scan: Scan, entry: FolderEntry | None, p: Plan, remove_exp: bool,
                    uidnext_floor: int, zeroed: index.Header | None,
                    root_quota: QuotaEntry | None) -> None:
    n = scan.name
    old_h = scan.header
    old = {r.uid: r for r in scan.records}
    exp = {} if remove_exp else {r.uid: r for r in scan.exp}
    if remove_exp and scan.exp:
        p.add("exp-removed", f"store.exp removed: {len(scan.exp)} expunged messages come back",
              Act("bring them back", "brought back"))
    # identity: header first, then the database, then new
    if old_h is not None:
        p.uidvalidity, p.unique_id = old_h.uidvalidity, old_h.unique_id
        p.acl, p.quotaroot, p.keywords = old_h.acl, old_h.quotaroot, old_h.keywords
        p.recent_uid = old_h.recent_uid
    elif entry is not None:
        p.uidvalidity, p.unique_id = entry.uidvalidity, bytes.fromhex(entry.uniqueid)
        p.acl, p.quotaroot = entry.acl, entry.quotaroot
    else:
        p.uidvalidity, p.unique_id = new_uidvalidity(), bytes.fromhex(new_uniqueid())
        p.acl, p.quotaroot = default_acl(n), quota_root_for(n)
        p.new_uidvalidity = True
        p.add("uidvalidity-new", "UIDVALIDITY lost with index and database entry: clients will "
                                 "resync this mailbox",
              Act(f"give it the new UIDVALIDITY {p.uidvalidity}",
                  f"new UIDVALIDITY {p.uidvalidity}"))
    limit_from = old_h or zeroed
    if limit_from is not None and limit_from.carries_limit:
        p.carries_limit, p.quota_limit = True, limit_from.quota_limit
        p.quota_messages = limit_from.quota_messages
    elif root_quota is not None and p.quotaroot and n == quota_root_mailbox(p.quotaroot):
        p.carries_limit, p.quota_limit = True, root_quota.limit_bytes
        p.quota_messages = root_quota.limit_messages
        p.add("quota-limit-uncopied", f"the index header's copy of the limit of {p.quotaroot} "
                                      "is lost", Act("copy it from the database into the rebuilt "
                                                     "header", "copied from the database"))
    base_next = old_h.uidnext if old_h is not None else 0
    # salvaged records keep their modseqs: new ones come after them, and after every modseq
    # the mailbox ever gave out (the folder entry's mark, expunged records, a zeroed header):
    # HIGHESTMODSEQ never goes backwards, or CONDSTORE clients and imsbackup --since-backup
    # would miss the changes after it
    p.modseq = max([h.highest_modseq for h in (old_h, zeroed) if h is not None]
                   + [entry.modseq_reserved if entry is not None else 0]
                   + [r.modseq for r in scan.records] + [r.modseq for r in scan.exp])
    if p.modseq > MODSEQ_LIMIT:  # RFC 7162's modseqs end at 2^63-1: room for every record
        p.add("modseq-out-of-range", f"HIGHESTMODSEQ {p.modseq} is past {MODSEQ_LIMIT}",
              Act(f"start from {MODSEQ_LIMIT}", f"started from {MODSEQ_LIMIT}"))
        p.modseq = MODSEQ_LIMIT
    if scan.salvaged:
        p.add("records-salvaged", f"index header unreadable; {len(scan.records)} records that "
                                  "verify found after it",
              Act("keep their flags, dates and modseqs", "their flags, dates and modseqs kept"))
        tagged = sum(1 for r in scan.records if r.keywords)
        if tagged:
            p.add("keywords-lost", f"{tagged} messages had keywords, whose names were in the "
                                   "unreadable header", Act("clear them", "cleared"))

    # each file: its old record still holds (kept), or it is indexed from
    # the file under its own UID (fresh), or it is below UIDNEXT and unknown
    # (pending: a new UID); expunged ones stay expunged
    new_exp: dict[int, index.Record] = {}
    pending: list[int] = []
    # a file named with a UID no mailbox can hold (above MAX_UID: UIDNEXT must still fit
    # in 32 bits) is indexed under a new UID, as a file below UIDNEXT is; its old name
    # cannot go into store.exp (32-bit UIDs), so it stays beside, reported
    too_big = sorted(u for u in scan.files if u > MAX_UID)
    for uid in sorted(exp):
        if uid > MAX_UID:
            del exp[uid]
            p.add("uid-out-of-range", f"store.exp lists uid {uid}, above {MAX_UID}",
                  Act(f"drop uid {uid} from store.exp", "dropped from store.exp"))
    for uid in sorted(scan.files):
        if uid > MAX_UID:
            continue
        r = old.get(uid)
        f = scan.files[uid]
        if uid in exp:
            new_exp[uid] = exp[uid]
            if r is not None:
                p.add("exp-also-indexed", f"uid {uid} is both indexed and expunged",
                      Act(f"keep uid {uid} expunged and drop its record",
                          f"uid {uid} kept expunged, its record dropped"))
        elif r is not None and uid in scan.content_changed:
            pending.append(uid)  # a UID never names two contents: a new one for this
        elif r is not None and r.size == f.size:
            p.kept.add(uid)
            p.in_place.append(uid)
            if scan.cache is None or uid in scan.cache_bad:
                p.reparse.add(uid)
                if uid in scan.cache_bad:
                    p.findings.append(Finding(n, "cache-invalid", str(scan.cache_bad[uid]),
                                              Act(f"rewrite the cache entry of uid {uid} from "
                                                  "the message", "cache entry rewritten")))
        elif r is not None:
            p.in_place.append(uid)
            p.add("file-size", f"uid {uid}: record says {r.size} bytes, file {f.path} has "
                               f"{f.size}", Act(f"rebuild the record of uid {uid} from the file",
                                                "record rebuilt from the file"))
        elif uid >= base_next:
            p.in_place.append(uid)
            if old_h is not None:
                p.add("unindexed-file", f"message file {f.path} (uid {uid}) is in no record",
                      Act(f"index {uid}.msg as uid {uid}", f"indexed as uid {uid}"))
        else:
            pending.append(uid)
    next_uid = min(max([base_next] + [u + 1 for u in scan.files if u <= MAX_UID]
                       + [u + 1 for u in exp] + [1]), MAX_UID + 1)
    kept_inodes = {scan.files[u].ino for u in p.in_place}
    for uid in pending + too_big:  # below UIDNEXT and unknown, or changed: never reuse the UID
        f = scan.files[uid]
        if uid > MAX_UID and f.ino in kept_inodes:
            continue  # linked under a UID that fits by an earlier run: nothing to do
        if next_uid > MAX_UID:
            p.add("uids-exhausted", f"message file {f.path} (uid {uid}) cannot be indexed: the "
                                    f"mailbox has given every UID up to {MAX_UID}",
                  advice("copy its messages into a new mailbox (mboxutil -r to a new name, "
                         "then imsimport the old directory), which starts its UIDs again"))
            continue
        if uid > MAX_UID:
            p.relinks.append((uid, next_uid))
            kept_inodes.add(f.ino)
            p.add("uid-out-of-range", f"message file {f.path} is named uid {uid}, above "
                                      f"{MAX_UID}", Act(f"index it as uid {next_uid} (the old "
                                                        "name stays beside it)",
                                                        f"indexed as uid {next_uid}"))
            next_uid += 1
            continue
        if uid in scan.content_changed:
            new_exp[uid] = old[uid]._replace(flags=old[uid].flags | index.FLAG_DELETED)
            p.relinks.append((uid, next_uid))
            p.add("content-changed", f"message file {f.path} (uid {uid}) no longer has the "
                                     "content its GUID was taken from",
                  Act(f"keep the file, index it as uid {next_uid} and expunge uid {uid}",
                      f"indexed as uid {next_uid}, uid {uid} expunged"))
            next_uid += 1
            continue
        new_exp[uid] = _exp_record(f, uid)
        if f.ino in kept_inodes:  # already linked by an interrupted earlier run
            p.add("unindexed-file", f"message file {f.path} (uid {uid}) is a link of an "
                                    "indexed message",
                  Act(f"expunge the old uid {uid}", "old UID expunged"))
            continue
        p.relinks.append((uid, next_uid))
        kept_inodes.add(f.ino)
        p.add("unindexed-file", f"message file {f.path} (uid {uid}) is in no record",
              Act(f"index {uid}.msg as uid {next_uid} (uid {uid} is below UIDNEXT: never reused)",
                  f"appended as uid {next_uid}"))
        next_uid += 1
    for uid in sorted(old):
        if uid not in scan.files:
            p.add("missing-file", f"message file of uid {uid} is missing (record says "
                                  f"{old[uid].size} bytes)",
                  Act(f"drop record uid {uid}", f"record uid {uid} dropped"))
    for uid in sorted(exp):
        if uid not in scan.files:
            p.add("exp-missing-file", f"store.exp lists uid {uid} whose file is already erased",
                  Act(f"drop uid {uid} from store.exp", "dropped from store.exp"))
    p.uidnext = min(max(next_uid, base_next, uidnext_floor), MAX_UID + 1)
    p.expunged = sorted(new_exp.values(), key=lambda r: r.uid)
    p.exp_changed = ([r.pack() for r in p.expunged] != [r.pack() for r in scan.exp]
                     or bool(scan.exp_problems)
                     or not os.path.exists(os.path.join(scan.mdir, index.EXP_FILE)))


MODSEQ_LIMIT = (1 << 63) - 1 - (1 << 32)


def _exp_record(f: FileInfo, uid: int) -> index.Record:
    return index.Record(uid, index.FLAG_DELETED, f.mtime, 0, f.size, 0, 0, 0, 0, b"\0" * 32)


def _db_entry(scan: Scan, entry: FolderEntry | None, p: Plan) -> None:
    """The folder entry against what the index says (or will say, rebuilt)."""
    n = scan.name
    want: FolderEntry | None
    if p.rebuild:
        want = FolderEntry(p.partition, p.unique_id.hex(), p.uidvalidity, p.acl, p.quotaroot,
                           modseq_reserved=max(p.modseq + len(p.in_place) + len(p.relinks),
                                               entry.modseq_reserved if entry else 0))
    else:
        want = header_db_fields(scan.header, p.partition)
    if want is None:
        return
    if scan.header is not None and scan.header.name != n:
        p.add("header-name", f"index header names {scan.header.name!r}, directory is {n!r}")
        if not p.rebuild:
            return
    p.db_fields = want
    if entry is None:
        p.add("db-missing", "no folder entry in the mailbox database",
              Act("add the folder entry from the index", "database entry added"))
    else:
        diffs = entry.differences(want)
        if diffs:
            p.add("db-mismatch", "folder entry differs from the index header: " + "; ".join(
                f"{k} is {getattr(entry, k)!r}, index says {getattr(want, k)!r}" for k in diffs),
                  Act("rewrite the folder entry from the index", "database entry updated"))
    expected_root = quota_root_for(n)
    if expected_root and want.quotaroot and not (want.quotaroot == expected_root
                                                 or n.startswith(want.quotaroot + "/")):
        p.add("quotaroot", f"quota root {want.quotaroot!r} does not contain the mailbox",
              advice("left alone: fix with mboxutil --set-quota or reconstruct -q"))

