#!/usr/bin/env python3
"""reconstruct speed next to raw-read baselines measured in the same run.

Builds (or reuses) a store with the store builder, then measures on a warm
cache: reading every message file whole (the `cat` baseline), reading only
the first 4 KB of each (the header-block baseline), and reconstruct's modes
(-r -f -i, -r -n, -r -n -G, -q, -m), each best of --repeat runs, in messages/s.
The package is byte-compiled first, as an installed one is (this matters
where PYTHONDONTWRITEBYTECODE is set: every run would compile it again).

    python tools/bench_reconstruct.py --users 20 --folders 9 --messages 100 --jobs 2
    python tools/bench_reconstruct.py --root /tmp/bench-1m --users 1000 --link-pool 5000 --repeat 1
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from build_store import build, build_linked  # noqa: E402

CMD = [sys.executable, "-c", "from store.cli.reconstruct import main; main()"]


def files(root: str) -> list[str]:
    return [os.path.join(d, f) for d, _s, fs in os.walk(os.path.join(root, "partition"))
            for f in fs if f.endswith(".msg")]


def read_all(paths: list[str], limit: int | None) -> int:
    n = 0
    for p in paths:
        with open(p, "rb") as f:
            n += len(f.read() if limit is None else f.read(limit))
    return n


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def best(fn, repeat: int, cold: bool = False) -> float:
    times = []
    for _ in range(repeat):
        if cold:
            drop_caches()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def run(root: str, args: list[str]) -> None:
    r = subprocess.run(CMD + args, env={**os.environ, "MSGSTORE_ROOT": root},
                       capture_output=True, text=True)
    if r.returncode not in (0, 1):
        raise SystemExit(f"reconstruct {' '.join(args)} failed ({r.returncode}): {r.stderr}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="/tmp/bench-reconstruct")
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--folders", type=int, default=9)
    ap.add_argument("--messages", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--link-pool", type=int, metavar="N",
                    help="build with hard links into N pooled messages (fast; the baselines then "
                         "read the same N files over and over)")
    ap.add_argument("--cold", action="store_true",
                    help="drop the page cache before every timed run (root only): the state "
                         "after a crash or a restore, when reconstruct is usually run")
    a = ap.parse_args()
    if a.cold:
        try:
            drop_caches()
        except OSError as e:
            raise SystemExit(f"--cold needs to write /proc/sys/vm/drop_caches: {e}") from None
    if not os.path.isdir(a.root):
        t0 = time.perf_counter()
        if a.link_pool:
            r = build_linked(a.root, a.users, a.folders, a.messages, a.link_pool, jobs=a.jobs)
        else:
            r = build(a.root, a.users, a.folders, a.messages, seed=1)
        print(f"built {r['messages']} messages in {r['mailboxes']} mailboxes "
              f"in {time.perf_counter() - t0:.1f} s")
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(HERE, "..", "store")],
                   check=True, stdout=subprocess.DEVNULL)
    paths = files(a.root)
    n = len(paths)
    read_all(paths, None)  # warm the cache
    rows = [("read every file whole (cat baseline)",
             best(lambda: read_all(paths, None), a.repeat, a.cold)),
            ("read first 4 KB of each (header baseline)",
             best(lambda: read_all(paths, 4096), a.repeat, a.cold))]
    j = ["-j", str(a.jobs)]
    run(a.root, ["-q"])  # one warm-up of the interpreter and imports
    startup = best(lambda: subprocess.run([sys.executable, "-c", "import store.cli.reconstruct"],
                                          check=True), a.repeat)
    for label, args in (("reconstruct -r -f -i (full rebuild)", ["-r", "-f", "-i"] + j),
                        ("reconstruct -r -n (healthy check)", ["-r", "-n"] + j),
                        ("reconstruct -r -n -G (content check)", ["-r", "-n", "-G"] + j),
                        ("reconstruct -q", ["-q"]),
                        ("reconstruct -m", ["-m"])):
        rows.append((label, best(lambda args=args: run(a.root, args), a.repeat, a.cold)))
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{n} messages, {sum(os.path.getsize(p) for p in paths) / 1e6:.0f} MB, "
          f"jobs {a.jobs}, best of {a.repeat}, {'cold' if a.cold else 'warm'} cache; "
          f"interpreter start + imports {startup:.2f} s (included in the reconstruct rows)")
    print(f"{'mode':45} {'seconds':>8} {'msg/s':>9} {'vs cat':>7}")
    cat = rows[0][1]
    for label, sec in rows:
        print(f"{label:45} {sec:8.2f} {n / sec:9.0f} {cat / sec:7.2f}")
    print(f"peak RSS of any child: {rss:.0f} MB")


if __name__ == "__main__":
    main()
