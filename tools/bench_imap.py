#!/usr/bin/env python3
"""IMAP serving, ours (imapd) against Dovecot's imap, in one run on the same
messages, spoken to by the same client.

  sudo .venv/bin/python tools/bench_imap.py --sizes 10000 100000 --rounds 5 --idle 1000

Measured, each as the median of --rounds (ratios ours/Dovecot printed):
- login + SELECT INBOX + `UID FETCH 1:* (FLAGS)` + LOGOUT, for each size;
- `FETCH 1:* (ENVELOPE)` on the first size's INBOX;
- `FETCH 1:* BODY.PEEK[]` of --corpus messages of the peers' synthetic
  corpus (realistic MIME mix, 1-50 KB): MB/s;
- --appends APPENDs of one corpus message, one after the other (both
  servers make each durable: Dovecot with mail_fsync = always);
- --idle concurrent sessions logged in with INBOX selected in IDLE: the
  memory of the serving processes, RSS and PSS (Dovecot runs a process per
  session: their PSS counts shared pages once).

Both stores are indexed before timing (Dovecot with `doveadm index`; ours
indexes at delivery). Needs root (Dovecot drops to the mail user) and
Debian's dovecot-imapd; without them only ours is measured."""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from bench_lmtp import DOVECOT_BASE, _has_mail_user, messages  # noqa: E402
from lmtp_harness import free_port, start_service, start_stored, stop  # noqa: E402

DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
PASSWORD = "bench-pw"

DOVECOT_CONF = DOVECOT_BASE + """\
protocols = imap
listen = 127.0.0.1
disable_plaintext_auth = no
default_process_limit = 2000
default_client_limit = 4000
default_vsz_limit = 0
protocol imap {{
  mail_max_userip_connections = 100000
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


def small(n: int, seed: int) -> list[bytes]:
    """n plain messages of 1-3 KB: the big mailboxes (FLAGS and ENVELOPE
    read no body)."""
    rng = random.Random(seed)
    return [(b"From: Sender %d <s%d@example.org>\nTo: bench0@example.com\nSubject: message %d\n"
             b"Date: Thu, 03 Dec 2026 08:%02d:00 +0000\nMessage-ID: <%d.%d@bench>\n\n"
             % (i % 97, i % 97, i, i % 60, seed, i)) + b"x" * rng.randint(1000, 3000) + b"\n"
            for i in range(n)]


def seen(i: int) -> bool:
    return i % 3 != 0


# -- the two servers ------------------------------------------------------------------------

def build_ours(work: str, boxes: dict[str, list[bytes]]) -> str:
    from store import accounts
    from store.index import FLAG_SEEN
    from store.layout import Layout
    from store.mailbox import Store
    root = tempfile.mkdtemp(prefix="ours.", dir=work)
    os.rmdir(root)
    with Store.init(root) as s:
        for box, msgs in boxes.items():
            name = "user/bench0" if box == "INBOX" else f"user/bench0/{box}"
            s.create(name)
            for start in range(0, len(msgs), 5000):
                chunk = msgs[start:start + 5000]
                for flags in (FLAG_SEEN, 0):  # two batches: the seen, then the others
                    part = [m for j, m in enumerate(chunk, start) if seen(j) == bool(flags)]
                    if part:
                        s.append_many(name, part, flags=flags)
        s.create("user/bench0/Appends")
    accounts.set_password(Layout.open(root), "bench0", PASSWORD)
    return root


def build_dovecot(work: str, boxes: dict[str, list[bytes]], port: int) -> str:
    base = tempfile.mkdtemp(prefix="dovecot-imap.", dir=work)
    os.chmod(base, 0o755)
    for d in ("run", "state", "home"):
        os.makedirs(os.path.join(base, d))
    home = os.path.join(base, "home", "bench0")
    # the same slow hash as ours (argon2id, 64 MiB, 3 passes): logins cost alike
    hashed = subprocess.run([DOVEADM, "pw", "-s", "ARGON2ID", "-p", PASSWORD], check=True,
                            capture_output=True, text=True).stdout.strip()
    with open(os.path.join(base, "users"), "w") as f:
        f.write(f"bench0:{hashed}:8:8::{home}::\n")
    with open(os.path.join(base, "dovecot.conf"), "w") as f:
        f.write(DOVECOT_CONF.format(base=base, port=port))
    for name in ("users", "dovecot.conf"):
        os.chmod(os.path.join(base, name), 0o644)
    t = int(time.time())
    for box, msgs in list(boxes.items()) + [("Appends", [])]:
        d = os.path.join(home, "Maildir", "" if box == "INBOX" else f".{box}")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        for i, m in enumerate(msgs):
            flags = "S" if seen(i) else ""
            with open(os.path.join(d, "cur", f"{t + i}.M{i}P1.bench,S={len(m)}:2,{flags}"),
                      "wb") as f:
                f.write(m)
    subprocess.run(["chown", "-R", "8:8", os.path.join(base, "home")], check=True)
    return base


def start_dovecot(base: str, boxes) -> None:
    """Started, and the mailboxes indexed (doveadm asks its auth service)."""
    conf = os.path.join(base, "dovecot.conf")
    subprocess.run([DOVECOT, "-c", conf], check=True)
    for _ in range(100):
        if os.path.exists(os.path.join(base, "run", "auth-userdb")):
            break
        time.sleep(0.1)
    for box in boxes:
        subprocess.run([DOVEADM, "-c", conf, "index", "-u", "bench0", box], check=True)


def stop_dovecot(base: str) -> None:
    subprocess.run([DOVECOT, "-c", os.path.join(base, "dovecot.conf"), "stop"],
                   capture_output=True)
    time.sleep(0.5)


# -- the client -----------------------------------------------------------------------------

class Client:
    def __init__(self, port: int):
        self.s = socket.create_connection(("127.0.0.1", port), 30)
        self.f = self.s.makefile("rb", buffering=1 << 20)
        self.f.readline()
        self.n = 0

    def cmd(self, line: bytes, literal: bytes | None = None) -> tuple[int, int]:
        """Send a command; (untagged responses, bytes received) once tagged OK."""
        self.n += 1
        tag = b"t%d" % self.n
        if literal is None:
            self.s.sendall(tag + b" " + line + b"\r\n")
        else:
            self.s.sendall(tag + b" " + line + b" {%d}\r\n" % len(literal))
            assert self.f.readline().startswith(b"+")
            self.s.sendall(literal + b"\r\n")
        count = size = 0
        while True:
            got = self.f.readline()
            size += len(got)
            m = re.search(rb"\{(\d+)\}\r\n$", got)
            if m:
                data = self.f.read(int(m.group(1)))
                size += len(data)
                got = self.f.readline()
                size += len(got)
            if got.startswith(tag + b" "):
                if got.split()[1] != b"OK":
                    raise RuntimeError(f"{line[:40]!r}: {got!r}")
                return count, size
            if not got:
                raise ConnectionError("server closed the connection")
            count += 1

    def login(self) -> None:
        self.cmd(b'LOGIN bench0 "%s"' % PASSWORD.encode())

    def close(self) -> None:
        self.s.close()


def timed(fn, rounds: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def select_flags(port: int, box: bytes = b"INBOX") -> int:
    c = Client(port)
    c.login()
    c.cmd(b"SELECT " + box)
    n, _ = c.cmd(b"UID FETCH 1:* (FLAGS)")
    c.cmd(b"LOGOUT")
    c.close()
    return n


def fetch(port: int, what: bytes, box: bytes = b"INBOX") -> tuple[int, int]:
    c = Client(port)
    c.login()
    c.cmd(b"EXAMINE " + box)
    out = c.cmd(b"FETCH 1:* " + what)
    c.close()
    return out


def appends(port: int, msg: bytes, n: int) -> None:
    c = Client(port)
    c.login()
    wire = msg.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    for _ in range(n):
        c.cmd(b"APPEND Appends", wire)
    c.close()


def memory_of(pids: list[int]) -> tuple[int, int]:
    """(RSS, PSS) in kB summed over the processes."""
    rss = pss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    k, v = line.split(":", 1)
                    if k == "Rss":
                        rss += int(v.split()[0])
                    elif k == "Pss":
                        pss += int(v.split()[0])
        except OSError:
            continue
    return rss, pss


def dovecot_pids(base: str) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if cmd.startswith(b"dovecot/") or (cmd.startswith(DOVECOT.encode())
                                           and base.encode() in cmd):
            out.append(int(pid))
    return out


def idle_sessions(port: int, n: int, pids) -> dict:
    conns = []
    t0 = time.perf_counter()
    for _ in range(n):
        c = Client(port)
        c.login()
        c.cmd(b"SELECT INBOX")
        c.s.sendall(b"i IDLE\r\n")
        assert c.f.readline().startswith(b"+")
        conns.append(c)
    secs = time.perf_counter() - t0
    time.sleep(2)
    rss, pss = memory_of(pids())
    for c in conns:
        c.close()
    return {"sessions": n, "seconds_to_open": round(secs, 1), "rss_mb": round(rss / 1024, 1),
            "pss_mb": round(pss / 1024, 1)}


def box_of(n: int, sizes: list[int]) -> bytes:
    return b"INBOX" if n == sizes[-1] else b"Size%d" % n


def login_only(port: int) -> None:
    c = Client(port)
    c.login()
    c.cmd(b"LOGOUT")
    c.close()


def measure(port: int, sizes: list[int], corpus_bytes: int, append_msg: bytes, args, pids
            ) -> dict:
    r: dict = {}
    r["login_s"] = round(timed(lambda: login_only(port), args.rounds)[0], 3)
    for n in sizes:
        secs, got = timed(lambda n=n: select_flags(port, box_of(n, sizes)), args.rounds)
        assert got == n, (got, n)
        r[f"select_fetch_flags_{n}_s"] = round(secs, 3)
    secs, (count, _) = timed(lambda: fetch(port, b"(ENVELOPE)", box_of(sizes[0], sizes)),
                             args.rounds)
    r[f"fetch_envelope_{sizes[0]}_s"] = round(secs, 3)
    secs, (count, size) = timed(lambda: fetch(port, b"BODY.PEEK[]", b"Corpus"), args.rounds)
    r["body_mb_per_s"] = round(corpus_bytes / secs / 1e6, 1)
    r["body_s"] = round(secs, 3)
    secs, _ = timed(lambda: appends(port, append_msg, args.appends), 1)
    r["append_per_s"] = round(args.appends / secs)
    if args.idle:
        r["idle"] = idle_sessions(port, args.idle, pids)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    ap.add_argument("--corpus", type=int, default=2000)
    ap.add_argument("--appends", type=int, default=500)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", default="/tmp/bench-imap")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # and for the servers we start
    os.makedirs(args.work, exist_ok=True)
    os.chmod(args.work, 0o755)
    sizes = sorted(args.sizes)
    corpus = messages(args.corpus, args.seed)
    boxes = {box_of(n, sizes).decode(): small(n, args.seed + n) for n in sizes}
    boxes["Corpus"] = corpus
    corpus_wire = sum(len(m.replace(b"\r\n", b"\n")) + m.replace(b"\r\n", b"\n").count(b"\n")
                      for m in corpus)
    peer = (not args.skip_peer and os.geteuid() == 0 and os.path.exists(DOVECOT)
            and os.path.exists("/usr/lib/dovecot/imap") and _has_mail_user())
    print(f"mailboxes {sizes} (1-3 KB), corpus {len(corpus)} messages "
          f"{corpus_wire / 1e6:.1f} MB; peer: {'Dovecot' if peer else 'none'}", flush=True)
    results = {}
    t0 = time.perf_counter()
    root = build_ours(args.work, boxes)
    print(f"ours built in {time.perf_counter() - t0:.0f} s", flush=True)
    stored = start_stored(root)
    proc, port = start_service("imapd", root)
    try:
        results["ours"] = measure(port, sizes, corpus_wire, corpus[0], args,
                                  lambda: [proc.pid])
    finally:
        proc.terminate()
        proc.wait(60)
        stop(stored)
    print("ours", json.dumps(results["ours"]), flush=True)
    if peer:
        dport = free_port()
        t0 = time.perf_counter()
        base = build_dovecot(args.work, boxes, dport)
        start_dovecot(base, boxes)
        print(f"dovecot built and indexed in {time.perf_counter() - t0:.0f} s", flush=True)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", dport), 0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            results["dovecot"] = measure(dport, sizes, corpus_wire, corpus[0], args,
                                         lambda: dovecot_pids(base))
        finally:
            stop_dovecot(base)
        print("dovecot", json.dumps(results["dovecot"]), flush=True)
        o, d = results["ours"], results["dovecot"]
        for k in o:
            if k != "idle" and d.get(k):
                print(f"{k:32} ours {o[k]:>9}  dovecot {d[k]:>9}  ratio {o[k] / d[k]:.2f}")
        if "idle" in o:
            print(f"idle {args.idle}: ours RSS {o['idle']['rss_mb']} MB PSS "
                  f"{o['idle']['pss_mb']} MB; dovecot RSS {d['idle']['rss_mb']} MB PSS "
                  f"{d['idle']['pss_mb']} MB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
