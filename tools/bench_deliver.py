#!/usr/bin/env python3
"""Delivery throughput next to a raw baseline measured in the same run.

Baseline: write the same bytes as plain files, fsync each (what any durable
delivery must at least do), and the same with one sync for the batch.
Measured: Store.append (fsync per message) and Store.append_many (one
filesystem sync per batch), into one mailbox and spread over 10 mailboxes.

    python tools/bench_deliver.py --messages 2000 --batch 100
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from build_store import synth_message  # noqa: E402

from store.fsutil import sync_filesystem  # noqa: E402
from store.mailbox import Store  # noqa: E402


def raw_write(dirpath: str, datas: list[bytes], durable: bool) -> None:
    os.makedirs(dirpath)
    for i, d in enumerate(datas):
        fd = os.open(os.path.join(dirpath, f"{i}.msg"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        os.write(fd, d)
        if durable:
            os.fsync(fd)
        os.close(fd)
    if not durable:
        sync_filesystem(dirpath)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per mode; the best is reported")
    a = ap.parse_args()
    rng = random.Random(5)
    datas = [synth_message(rng, i, "bench") for i in range(a.messages)]
    mb = sum(map(len, datas)) / 1e6
    base = tempfile.mkdtemp(prefix="bench-deliver-", dir=a.dir)
    names = [f"user/u{i}" for i in range(10)]

    def store_run(kind: str, run_no: int) -> float:
        s = Store.init(f"{base}/{kind}{run_no}")
        for n in names:
            s.create(n)
        try:
            if kind == "durable":
                return timed(lambda: [s.append(names[0], d) for d in datas])
            if kind == "spread":
                return timed(lambda: [s.append(names[i % 10], d) for i, d in enumerate(datas)])
            return timed(lambda: [s.append_many(names[0], datas[i:i + a.batch])
                                  for i in range(0, len(datas), a.batch)])
        finally:
            s.close()

    modes = [("raw files, fsync each", lambda r: timed(lambda: raw_write(f"{base}/r1{r}", datas, True))),
             ("raw files, one sync", lambda r: timed(lambda: raw_write(f"{base}/r2{r}", datas, False))),
             ("deliver durable (fsync per message)", lambda r: store_run("durable", r)),
             (f"deliver batch ({a.batch} per sync)", lambda r: store_run("batch", r)),
             ("deliver durable, 10 mailboxes", lambda r: store_run("spread", r))]
    try:
        results = [(name, min(fn(r) for r in range(a.repeat))) for name, fn in modes]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    raw = dict(results)
    print(f"{a.messages} messages, {mb:.1f} MB, {os.cpu_count()} CPUs, best of {a.repeat} runs")
    print(f"{'mode':40} {'seconds':>8} {'msg/s':>9} {'vs raw':>7}")
    for name, sec in results:
        ref = raw["raw files, one sync"] if "batch" in name or "one sync" in name \
            else raw["raw files, fsync each"]
        print(f"{name:40} {sec:8.2f} {a.messages / sec:9.0f} {ref / sec:7.2f}")


if __name__ == "__main__":
    main()
