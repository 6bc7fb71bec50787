#!/usr/bin/env python3
"""stored's shutdown bound and watchdog pings during its long jobs, at a
given store size, measured on a real stored process.

Builds a spool of N mailboxes (N/5 users with 4 folders each, one message
in every INBOX), takes a snapshot, creates 1% more mailboxes after it, cuts
data.mdb in half, then starts stored with a systemd notification socket
(NOTIFY_SOCKET, WATCHDOG_USEC=2 s) that this tool listens on. stored
restores the snapshot, becomes ready and starts the spool resync; after
`--term-after` seconds of resync this tool sends SIGTERM. Prints: how long
the resync ran before the SIGTERM, the longest gap between two WATCHDOG=1
(whole run), and the time from SIGTERM to stored's exit.
A second run lets the resync finish and reports its length.

    python tools/bench_stop.py --mailboxes 100000 --dir /dev/shm

Build on a tmpfs (--dir /dev/shm): the spool's creation is fsync-bound
otherwise, and fsync does not change the figures measured here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, ROOT)

from store import snapshots  # noqa: E402
from store.mailbox import Store  # noqa: E402

STORED = [sys.executable, "-c", "from store.cli.stored import main; main()"]


def build(root: str, n: int) -> None:
    with Store.init(root) as s:
        users = n // 5
        for u in range(users):
            s.create(f"user/u{u:07d}")
            s.append(f"user/u{u:07d}", b"Subject: x\n\nx\n")
            for f in range(4):
                s.create(f"user/u{u:07d}/F{f}")
        snapshots.take(s.layout, s.db)
        for u in range(0, users, 20):  # 1% more after the snapshot
            s.create(f"user/u{u:07d}/Late")
    data = os.path.join(root, "mboxlist", "data.mdb")
    os.truncate(data, os.path.getsize(data) // 2)


def run(root: str, base: str, term_after: float | None) -> dict:
    sock_path = os.path.join(base, "notify")
    if os.path.exists(sock_path):
        os.unlink(sock_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.05)
    events: list[tuple[float, str]] = []
    done = threading.Event()

    def listen() -> None:
        while not done.is_set():
            try:
                msg = sock.recv(4096).decode()
            except TimeoutError:
                continue
            for line in msg.splitlines():
                events.append((time.monotonic(), line))

    th = threading.Thread(target=listen, daemon=True)
    th.start()
    env = {**os.environ, "MSGSTORE_ROOT": root, "NOTIFY_SOCKET": sock_path,
           "WATCHDOG_USEC": "2000000"}
    t0 = time.monotonic()
    p = subprocess.Popen(STORED, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    ready = term = None
    while p.poll() is None:
        if ready is None and any(e == "READY=1" for _t, e in events):
            ready = time.monotonic()
        pending = os.path.exists(os.path.join(root, "config", "stored.resync"))
        if ready is not None and term is None:
            if term_after is not None and time.monotonic() - ready >= term_after:
                term = time.monotonic()
                p.send_signal(signal.SIGTERM)
            elif term_after is None and not pending:
                term = time.monotonic()
                resync_done = term - ready
                p.send_signal(signal.SIGTERM)
        time.sleep(0.01)
    end = time.monotonic()
    done.set()
    th.join()
    sock.close()
    pings = [t for t, e in events if e == "WATCHDOG=1"]
    marks = [t0] + pings + [end]
    out = {"ready": ready - t0 if ready else None, "exit_after_term": end - term if term else None,
           "longest_watchdog_gap": max(b - a for a, b in zip(marks, marks[1:], strict=False)),
           "pings": len(pings), "code": p.returncode}
    if term_after is None and term is not None:
        out["resync"] = resync_done
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mailboxes", type=int, default=100_000)
    ap.add_argument("--term-after", type=float, default=1.0,
                    help="seconds after READY to send SIGTERM (mid-resync)")
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    base = tempfile.mkdtemp(prefix="bench-stop-", dir=a.dir)
    try:
        root = os.path.join(base, "store")
        t = time.perf_counter()
        build(root, a.mailboxes)
        print(f"{a.mailboxes} mailboxes built in {time.perf_counter() - t:.0f} s")
        stopped = run(root, base, a.term_after)
        print(f"SIGTERM {a.term_after} s into the resync: stored exited "
              f"{stopped['exit_after_term']:.2f} s later (code {stopped['code']}); ready "
              f"{stopped['ready']:.2f} s after start; longest gap between watchdog pings "
              f"{stopped['longest_watchdog_gap']:.2f} s")
        whole = run(root, base, None)
        print(f"restart: ready in {whole['ready']:.2f} s, resync ran {whole['resync']:.2f} s to "
              f"the end; longest gap between watchdog pings "
              f"{whole['longest_watchdog_gap']:.2f} s ({whole['pings']} pings)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
