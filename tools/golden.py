#!/usr/bin/env python3
"""The golden store in fixtures/golden/: build it, and dump any store to a
canonical JSON form (index headers, records, cache data, database values,
message file hashes) so a test can show today's code reads it identically.

    python tools/golden.py build     # rebuild fixtures/golden (only when the format changes on purpose)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from store import index  # noqa: E402
from store.db import DATABASES, Database  # noqa: E402
from store.layout import Layout, walk_spool  # noqa: E402

GOLDEN = os.path.join(HERE, "..", "fixtures", "golden")


def dump_store(root: str) -> dict:
    layout = Layout.open(root)
    out: dict = {"mailboxes": {}, "database": {}, "files": {}}
    for part, ppath in layout.config.partitions().items():
        for name, mdir in walk_spool(ppath):
            idx = index.read_index(mdir, name)
            cache = index.read_cache_file(mdir, name)
            h = idx.header
            out["mailboxes"][name] = {
                "partition": part,
                "header": {"uniqueid": h.unique_id.hex(), "uidvalidity": h.uidvalidity,
                           "uidnext": h.uidnext, "exists": h.exists, "bytes": h.total_bytes,
                           "modseq": h.highest_modseq, "quotaroot": h.quotaroot, "acl": h.acl,
                           "last_update": h.last_update},
                "records": [{"uid": r.uid, "flags": r.flags, "internaldate": r.internaldate,
                             "sentdate": r.sentdate, "size": r.size, "header_size": r.header_size,
                             "modseq": r.modseq, "guid": r.guid.hex(),
                             "cache": {k: v.decode("latin-1") for k, v in
                                       index.read_cache_entry(cache, r, name, mdir).items()}}
                            for r in idx.records],
                "problems": [str(p) for p in idx.problems],
            }
            for dirpath, _d, files in os.walk(mdir):
                for f in files:
                    if f.endswith(".msg"):
                        p = os.path.join(dirpath, f)
                        with open(p, "rb") as fh:
                            out["files"][os.path.relpath(p, root)] = hashlib.sha1(fh.read()).hexdigest()
    db = Database(layout.mboxlist_dir, readonly=True)
    try:
        for n in DATABASES:
            out["database"][n] = dict(db.items(n))
    finally:
        db.close()
    return out


def build_golden() -> None:
    from build_store import build
    store_dir = os.path.join(GOLDEN, "store")
    shutil.rmtree(store_dir, ignore_errors=True)
    build(store_dir, users=2, folders=1, messages=3, seed=7)
    shutil.rmtree(os.path.join(store_dir, "lock"), ignore_errors=True)
    os.unlink(os.path.join(store_dir, "mboxlist", "lock.mdb"))
    with open(os.path.join(GOLDEN, "expected.json"), "w") as f:
        json.dump(dump_store(store_dir), f, indent=1, sort_keys=True)
        f.write("\n")
    os.unlink(os.path.join(store_dir, "mboxlist", "lock.mdb"))


if __name__ == "__main__":
    if sys.argv[1:] == ["build"]:
        build_golden()
        print(f"rebuilt {GOLDEN}")
    else:
        sys.exit(__doc__)
