#!/usr/bin/env python3
"""LMTP delivery throughput, ours against Dovecot's lmtp, in one run on the
same messages with the same durability (Dovecot: mail_fsync = always).

  sudo .venv/bin/python tools/bench_lmtp.py --messages 4000 --sessions 1 8 32

For each number of concurrent sessions, one asyncio client (the same for
both servers, no pipelining, one recipient per message, recipients spread
over --users users) sends the messages and the wall time from the first
connection to the last reply is taken. Each run delivers into a new,
never-used directory (on this machine's ext4 without a journal, creating
files right after deleting as many costs far more: ../shared/peers/README).

Then per-process delivery: our `deliver -a` against `dovecot-lda`, one
process per message, --perproc messages each.

Needs root (Dovecot's master drops to the mail user) and Debian's
dovecot-lmtpd; without them only ours is measured. Prints a table and
writes JSON with --json."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pwd
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from lmtp_harness import (  # noqa: E402
    data_section,
    socket_path,
    start_lmtpd,
    start_stored,
    stop,
)

GEN = os.path.join(REPO, "..", "shared", "peers", "gen.py")
DOVECOT = "/usr/sbin/dovecot"
DOVECOT_LDA = "/usr/lib/dovecot/dovecot-lda"

# what every private Dovecot of the benchmarks has (bench_imap.py adds its own part)
DOVECOT_BASE = """\
ssl = no
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
first_valid_uid = 8
first_valid_gid = 8
mail_location = maildir:~/Maildir
mail_fsync = always
auth_username_format = %n
passdb {{
  driver = passwd-file
  args = {base}/users
}}
userdb {{
  driver = passwd-file
  args = {base}/users
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""

DOVECOT_CONF = DOVECOT_BASE + """\
protocols = lmtp
lmtp_save_to_detail_mailbox = no
service lmtp {{
  unix_listener {base}/lmtp {{
    mode = 0666
  }}
}}
"""


def messages(n: int, seed: int) -> list[bytes]:
    """n messages of the peers' synthetic corpus (realistic MIME mix, 1-50 KB),
    or plain text ones of that size range when ../shared is absent."""
    if os.path.exists(GEN):
        out = tempfile.mkdtemp(prefix="bench-lmtp-corpus-")
        subprocess.run([sys.executable, GEN, "corpus", out, "--users", "1", "--folders", "1",
                        "--messages", str(n), "--seed", str(seed)], check=True,
                       stdout=subprocess.DEVNULL)
        files = sorted((os.path.join(d, f) for d, _s, fs in os.walk(out) for f in fs
                        if f.endswith(".")), key=lambda p: int(os.path.basename(p)[:-1]))
        data = [open(f, "rb").read() for f in files]
        shutil.rmtree(out)
        return data
    rng = random.Random(seed)
    return [b"Subject: bench %d\nMessage-ID: <%d@bench>\n\n" % (i, i)
            + b"x" * rng.randint(1000, 50000) + b"\n" for i in range(n)]


async def _reply(r: asyncio.StreamReader) -> bytes:
    while True:
        line = await r.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return line


async def _session(path: str, jobs: list[tuple[bytes, bytes]], failures: list) -> None:
    r, w = await asyncio.open_unix_connection(path, limit=1 << 20)
    await _reply(r)
    w.write(b"LHLO bench\r\n")
    await _reply(r)
    for rcpt, data in jobs:
        for cmd in (b"MAIL FROM:<bench@example.org>\r\n", b"RCPT TO:<%s>\r\n" % rcpt,
                    b"DATA\r\n"):
            w.write(cmd)
            line = await _reply(r)
            if line[:1] not in b"23":
                failures.append(line)
        w.write(data)
        line = await _reply(r)
        if line[:3] != b"250":
            failures.append(line)
    w.write(b"QUIT\r\n")
    await _reply(r)
    w.close()


def run_clients(path: str, msgs: list[bytes], users: int, sessions: int) -> tuple[float, list]:
    jobs = [(f"bench{i % users}@example.com".encode(), data_section(m)) for i, m in enumerate(msgs)]
    per = [jobs[i::sessions] for i in range(sessions)]
    failures: list = []

    async def main():
        for res in await asyncio.gather(*(_session(path, p, failures) for p in per),
                                        return_exceptions=True):
            if isinstance(res, BaseException):
                failures.append(repr(res).encode())
    t0 = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - t0, failures


def _new_store(work: str, prefix: str, users: int) -> str:
    """A new store in a never-used directory with users bench0.. (../shared/peers'
    first trap: no files deleted before the run)."""
    from store.mailbox import Store
    root = tempfile.mkdtemp(prefix=prefix, dir=work)
    os.rmdir(root)
    with Store.init(root) as s:
        for u in range(users):
            s.create(f"user/bench{u}")
    return root


def bench_ours(work: str, msgs, users, sessions) -> dict:
    from store.mailbox import Store
    root = _new_store(work, "ours.", users)
    stored = start_stored(root)
    lmtpd = start_lmtpd(root)
    try:
        secs, failures = run_clients(socket_path(root), msgs, users, sessions)
    finally:
        stop(lmtpd)
        stop(stored)
    with Store.open(root) as s:
        n = sum(s.header(f"user/bench{u}").exists for u in range(users))
    return {"server": "ours lmtpd", "sessions": sessions, "seconds": round(secs, 3),
            "msg_per_s": round(len(msgs) / secs), "stored": n, "failures": len(failures)}


def cpu_per_message(work: str, msgs, users, sessions) -> dict:
    """Server and client in this process (one loop, no worker processes):
    CPU per message in all, and how many requests each sync round served."""
    import resource

    from store.services import lmtpd
    from store.services.listeners import unix_listener
    root = _new_store(work, "ours-cpu.", users)
    stored = start_stored(root)
    try:
        async def main():
            svc = lmtpd.Service(root)
            svc.poll_stored()
            lmtpd._LMTP.line_length_limit = svc.policy.max_size + 4096
            path = os.path.join(root, "run", "lmtp")
            await asyncio.get_running_loop().create_unix_server(
                lambda: lmtpd._LMTP(svc, max_size=svc.policy.max_size, enable_SMTPUTF8=True),
                sock=unix_listener(path, "lmtpd"))
            jobs = [(f"bench{i % users}@example.com".encode(), data_section(m))
                    for i, m in enumerate(msgs)]
            failures: list = []
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            await asyncio.gather(*(_session(path, jobs[i::sessions], failures)
                                   for i in range(sessions)))
            secs = time.perf_counter() - t0
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            svc.close()
            cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
            return {"server": "ours, in-process", "sessions": sessions,
                    "msg_per_s": round(len(msgs) / secs),
                    "cpu_ms_per_message": round(cpu / len(msgs) * 1000, 2),
                    "sync_rounds": svc.sync.rounds, "sync_requests": svc.sync.requests,
                    "failures": len(failures)}
        return asyncio.run(main())
    finally:
        stop(stored)


def dovecot_setup(work: str, users: int) -> str:
    base = tempfile.mkdtemp(prefix="dovecot.", dir=work)
    os.chmod(base, 0o755)
    for d in ("run", "state", "home"):
        os.makedirs(os.path.join(base, d))
    home = os.path.join(base, "home")
    os.chown(home, 8, 8)
    with open(os.path.join(base, "users"), "w") as f:
        for u in range(users):
            f.write(f"bench{u}:{{PLAIN}}x:8:8::{home}/bench{u}::\n")
    with open(os.path.join(base, "dovecot.conf"), "w") as f:
        f.write(DOVECOT_CONF.format(base=base))
    for name in ("users", "dovecot.conf"):  # its auth process reads them as user dovecot
        os.chmod(os.path.join(base, name), 0o644)
    return base


def bench_dovecot(work: str, msgs, users, sessions) -> dict:
    base = dovecot_setup(work, users)
    conf = os.path.join(base, "dovecot.conf")
    subprocess.run([DOVECOT, "-c", conf], check=True)
    sock = os.path.join(base, "lmtp")
    try:
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        secs, failures = run_clients(sock, msgs, users, sessions)
    finally:
        subprocess.run([DOVECOT, "-c", conf, "stop"], capture_output=True)
    n = sum(len(os.listdir(os.path.join(base, "home", f"bench{u}", "Maildir", "new")))
            for u in range(users))
    return {"server": "dovecot lmtp", "sessions": sessions, "seconds": round(secs, 3),
            "msg_per_s": round(len(msgs) / secs), "stored": n, "failures": len(failures),
            **({"first_failure": failures[0].decode(errors="replace")} if failures else {})}


def perproc_ours(work: str, files: list[str]) -> dict:
    root = _new_store(work, "ours-lda.", 1)
    # what the deliver console script runs, from this checkout
    deliver = [sys.executable, "-c", "from store.cli.deliver import main; main()"]
    t0 = time.perf_counter()
    for f in files:
        with open(f, "rb") as src:
            subprocess.run(deliver + ["--store-root", root, "-f", "bench@example.org",
                                      "-a", "bench0@example.com"], stdin=src, check=True,
                           stdout=subprocess.DEVNULL, cwd=REPO)
    secs = time.perf_counter() - t0
    return {"agent": "ours deliver -a", "messages": len(files), "seconds": round(secs, 3),
            "ms_per_message": round(secs / len(files) * 1000, 1)}


def perproc_dovecot(work: str, files: list[str]) -> dict:
    base = dovecot_setup(work, 1)
    conf = os.path.join(base, "dovecot.conf")
    home = os.path.join(base, "home", "bench0")
    env = {"USER": "bench0", "HOME": home, "PATH": "/usr/bin:/bin"}
    os.makedirs(home)
    for path in (home, os.path.join(base, "run")):
        os.chown(path, 8, 8)
    open(os.path.join(base, "dovecot.log"), "w").close()
    os.chown(os.path.join(base, "dovecot.log"), 8, 8)
    t0 = time.perf_counter()
    for f in files:
        with open(f, "rb") as src:
            subprocess.run(["setpriv", "--reuid=8", "--regid=8", "--clear-groups",
                            DOVECOT_LDA, "-c", conf, "-f", "bench@example.org", "-m", "INBOX"],
                           stdin=src, env=env, check=True)
    secs = time.perf_counter() - t0
    return {"agent": "dovecot-lda", "messages": len(files), "seconds": round(secs, 3),
            "ms_per_message": round(secs / len(files) * 1000, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=4000)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--perproc", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", default="/tmp/bench-lmtp")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--cpu", action="store_true",
                    help="only: CPU per message with server and client in this process")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    os.chmod(args.work, 0o755)
    msgs = messages(args.messages, args.seed)
    if args.cpu:
        for n in args.sessions:
            print(cpu_per_message(args.work, msgs, args.users, n))
        return
    peer = os.geteuid() == 0 and os.path.exists(DOVECOT) and \
        os.path.exists("/usr/lib/dovecot/lmtp") and _has_mail_user()
    print(f"{len(msgs)} messages, {sum(map(len, msgs)) / 1e6:.1f} MB, {args.users} users; "
          f"peer: {'Dovecot' if peer else 'none (needs root and dovecot-lmtpd)'}")
    results = []
    for _ in range(args.rounds):
        for n in args.sessions:
            row = [bench_ours(args.work, msgs, args.users, n)]
            if peer:
                row.append(bench_dovecot(args.work, msgs, args.users, n))
            for r in row:
                print(f"{r['server']:14} sessions {n:3}: {r['seconds']:7.2f} s  "
                      f"{r['msg_per_s']:6} msg/s  stored {r['stored']}  failures {r['failures']}")
            results += row
    if args.perproc:
        files_dir = tempfile.mkdtemp(prefix="files.", dir=args.work)
        files = []
        for i, m in enumerate(msgs[:args.perproc]):
            files.append(os.path.join(files_dir, f"{i}.eml"))
            with open(files[-1], "wb") as f:
                f.write(m)
        os.chmod(files_dir, 0o755)
        for f in files:
            os.chmod(f, 0o644)
        rows = [perproc_ours(args.work, files)]
        if peer:
            rows.append(perproc_dovecot(args.work, files))
        for r in rows:
            print(f"{r['agent']:16} {r['messages']} processes: {r['seconds']:6.2f} s  "
                  f"{r['ms_per_message']} ms/message")
        results += rows
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def _has_mail_user() -> bool:
    try:
        return pwd.getpwuid(8).pw_name == "mail"
    except KeyError:
        return False


if __name__ == "__main__":
    main()
