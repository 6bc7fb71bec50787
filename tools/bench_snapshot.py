#!/usr/bin/env python3
"""Snapshot speed next to mdb_copy on the same database, in the same run.

Fills a scratch store's database with N folder entries (default 1,000,000),
then times: `mdb_copy`, `mdb_copy -c` (compacting), our hot copy alone
(`Environment.copy`), the child-process verification alone, and a whole
`snapshots.take` (copy + fsync + verify + SHA-256 + manifest + rename).

    python tools/bench_snapshot.py --entries 1000000
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from bench_deliver import timed  # noqa: E402

from store import snapshots  # noqa: E402
from store.db import verify as dbverify  # noqa: E402
from store.mailbox import Store  # noqa: E402


def fill_folders(store: Store, n: int, batch: int = 50_000) -> None:
    """N folder entries (no spool behind them), committed in batches, then synced."""
    for start in range(0, n, batch):
        def fill(t, start=start):
            for i in range(start, min(start + batch, n)):
                t.put("folder", f"user/u{i:07d}/INBOX",
                      {"partition": "primary", "uniqueid": f"{i:032x}", "uidvalidity": 1700000000 + i,
                       "acl": {f"u{i:07d}": "lrswipkxtecda"}, "quotaroot": f"user/u{i:07d}"})
        store.db.write(fill, durable=False)
    store.db.sync()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    base = tempfile.mkdtemp(prefix="bench-snap-", dir=a.dir)
    try:
        store = Store.init(os.path.join(base, "store"))
        fill_folders(store, a.entries)
        src = store.layout.mboxlist_dir
        size = os.path.getsize(os.path.join(src, "data.mdb"))
        rows = []
        if shutil.which("mdb_copy"):
            for label, args in (("mdb_copy", []), ("mdb_copy -c", ["-c"])):
                dst = os.path.join(base, label.replace(" ", ""))
                os.makedirs(dst)
                rows.append((label, timed(lambda args=args, dst=dst: subprocess.run(
                    ["mdb_copy", *args, src, dst], check=True))))
        dst = os.path.join(base, "pycopy")
        os.makedirs(dst)
        rows.append(("Environment.copy (our hot copy)", timed(lambda: store.db.copy_to(dst))))
        rows.append(("verify in a child process", timed(lambda: dbverify.verify(dst))))
        rows.append(("snapshots.take (all of it)", timed(lambda: snapshots.take(store.layout,
                                                                                store.db))))
        store.close()
        print(f"{a.entries} entries, data.mdb {size / 1e6:.0f} MB")
        ref = rows[0][1] if rows and rows[0][0] == "mdb_copy" else None
        for label, sec in rows:
            ratio = f"{sec / ref:6.1f}x" if ref else ""
            print(f"{label:36} {sec:7.2f} s {ratio}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
