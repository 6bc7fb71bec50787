#!/usr/bin/env python3
"""stored's time to a final state with a big database, healthy and after a
recovery from snapshot.

Fills a scratch store's database with N folder entries (default 1,000,000;
no spool behind them), takes a snapshot, then times `stored` from start to
the state file saying `ready`: once on the healthy database, once after the
database was cut to half its size (verification crash, move to removed/,
choose and re-verify the newest snapshot, restore it, open). The spool
resync that follows readiness is not part of the figure (there is no spool
here; the daemon is stopped as soon as it is ready).

    python tools/bench_stored.py --entries 1000000
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from bench_snapshot import fill_folders  # noqa: E402

from store import snapshots  # noqa: E402
from store.mailbox import Store  # noqa: E402

STORED = [sys.executable, "-c", "from store.cli.stored import main; main()"]


def time_to_ready(root: str) -> float:
    state = os.path.join(root, "config", "stored.state")
    t0 = time.perf_counter()
    p = subprocess.Popen(STORED, env={**os.environ, "MSGSTORE_ROOT": root},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if open(state).read().split()[1] == "ready":
                    return time.perf_counter() - t0
            except (OSError, IndexError):
                pass
            if p.poll() is not None:
                raise SystemExit(f"stored exited with {p.returncode}")
            time.sleep(0.02)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
        os.unlink(state) if os.path.exists(state) else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    base = tempfile.mkdtemp(prefix="bench-stored-", dir=a.dir)
    try:
        root = os.path.join(base, "store")
        store = Store.init(root)
        fill_folders(store, a.entries)
        snapshots.take(store.layout, store.db)
        store.close()
        data = os.path.join(root, "mboxlist", "data.mdb")
        size = os.path.getsize(data)
        healthy = time_to_ready(root)
        os.truncate(data, size // 2)
        recovered = time_to_ready(root)
        print(f"{a.entries} mailboxes, data.mdb {size / 1e6:.0f} MB")
        print(f"healthy database: ready in {healthy:.2f} s")
        print(f"recovery from snapshot: ready in {recovered:.2f} s")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
