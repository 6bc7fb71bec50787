"""Compare what a scan read. Findings only; nothing is changed."""

from __future__ import annotations

from ..index import Header
from ..mailbox import quota_root_for
from .findings import Finding
from .scan import Scan

# kinds that the index rebuild corrects
REBUILD_KINDS = {
    "idx-missing-header", "idx-start-beyond-eof", "idx-header-checksum", "idx-record-checksum",
    "idx-partial-record", "idx-uid-order", "idx-uidnext", "idx-count-mismatch",
    "idx-size-mismatch", "cache-invalid", "exp-corrupt", "index-missing", "missing-file",
    "file-size", "unindexed-file", "exp-missing-file", "exp-also-indexed",
}
DB_FIELDS = ("partition", "uniqueid", "uidvalidity", "acl", "quotaroot")


def header_db_fields(h: Header | None, partition: str) -> dict | None:
    """The folder entry an index header's redundant copy describes."""
    if h is None:
        return None
    return {"partition": partition, "uniqueid": h.unique_id.hex(), "uidvalidity": h.uidvalidity,
            "acl": h.acl, "quotaroot": h.quotaroot}


def check_mailbox(scan: Scan, entry: dict | None, partition: str) -> list[Finding]:
    n = scan.name
    out: list[Finding] = []
    if scan.index_missing:
        out.append(Finding(n, "index-missing", f"store.idx missing in {scan.mdir}"))
    if scan.header_error is not None:
        out.append(Finding(n, scan.header_error.kind, str(scan.header_error)))
    out += [Finding(n, p.kind, str(p)) for p in scan.index_problems]
    if scan.cache_error is not None:
        out.append(Finding(n, "cache-invalid", str(scan.cache_error)))
    out += [Finding(n, "cache-invalid", str(e)) for e in scan.cache_bad.values()]
    out += [Finding(n, p.kind, str(p)) for p in scan.exp_problems]
    indexed = {r.uid for r in scan.records}
    expunged = {r.uid for r in scan.exp}
    for r in scan.records:
        f = scan.files.get(r.uid)
        if f is None:
            out.append(Finding(n, "missing-file", f"message file of uid {r.uid} is missing "
                                                  f"(record says {r.size} bytes)"))
        elif f.size != r.size:
            out.append(Finding(n, "file-size", f"uid {r.uid}: record says {r.size} bytes, "
                                               f"file {f.path} has {f.size}"))
    if scan.header is not None or scan.index_problems:
        for uid in sorted(set(scan.files) - indexed - expunged):
            out.append(Finding(n, "unindexed-file", f"message file {scan.files[uid].path} "
                                                    f"(uid {uid}) is in no index record"))
    for r in scan.exp:
        if r.uid not in scan.files:
            out.append(Finding(n, "exp-missing-file",
                               f"store.exp lists uid {r.uid} whose file is already erased"))
        if r.uid in indexed:
            out.append(Finding(n, "exp-also-indexed", f"uid {r.uid} is both indexed and expunged"))
    for path in scan.unknown:
        out.append(Finding(n, "unknown-file", f"unrecognised file {path}", "left alone",
                           problem=False))
    for path in scan.temps:
        out.append(Finding(n, "temp-file", f"temp file of an unfinished write {path}",
                           "left alone", problem=False))
    out += check_db_entry(scan, entry, partition)
    return out


def check_db_entry(scan: Scan, entry: dict | None, partition: str) -> list[Finding]:
    n = scan.name
    want = header_db_fields(scan.header, partition)
    if want is None:
        return []
    if scan.header.name != n:
        return [Finding(n, "header-name", f"index header names {scan.header.name!r}, "
                                          f"directory is {n!r}")]
    if entry is None:
        return [Finding(n, "db-missing", "no folder entry in the mailbox database")]
    out = []
    for k in DB_FIELDS:
        if entry.get(k) != want[k]:
            out.append(Finding(n, "db-mismatch", f"folder entry {k} is {entry.get(k)!r}, "
                                                 f"index header says {want[k]!r}"))
    expected_root = quota_root_for(n)
    if expected_root and want["quotaroot"] and not (want["quotaroot"] == expected_root
                                                    or n.startswith(want["quotaroot"] + "/")):
        out.append(Finding(n, "quotaroot", f"quota root {want['quotaroot']!r} does not contain "
                                           f"the mailbox"))
    return out
