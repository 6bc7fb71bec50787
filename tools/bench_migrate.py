#!/usr/bin/env python3
"""Import, export, backup and restore, ours against Dovecot's doveadm, in
one run on the same messages.

  sudo .venv/bin/python tools/bench_migrate.py --messages 2000 --rounds 5

Each measure is the median wall time of --rounds runs of the whole
command, each run into a new directory (this machine's ext4 without a
journal makes creating files right after deleting as many slow: see
../shared/peers/README.md):
- import of a Maildir of --messages messages of the peers' synthetic
  corpus (half of them \\Seen): `imsimport` / `doveadm import`;
- the same messages as one mbox file: `imsimport` / `doveadm import
  mbox:...:INBOX=FILE`;
- export of that mailbox to a Maildir: `imsexport` / `doveadm backup`
  (dsync, Dovecot's backup and export tool);
- backup to a file: `imsbackup`; restore from it into an empty store:
  `imsrestore` / `doveadm import` from the exported Maildir.
Dovecot runs offline as the mail user (no daemon), with mail_fsync =
always as ours syncs. Without root or Dovecot only ours is measured."""

from __future__ import annotations

import argparse
import os
import shutil
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

DOVEADM = "/usr/bin/doveadm"
BIN = os.path.dirname(sys.executable)


def timed(cmd: list[str], prepare, rounds: int, env=None) -> float:
    times = []
    for i in range(rounds):
        args = prepare(i)
        t = time.perf_counter()
        subprocess.run([a.format(**args) for a in cmd], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def write_maildir(path: str, msgs: list[bytes]) -> None:
    t = int(time.time()) - len(msgs)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub))
    for i, m in enumerate(msgs):
        name = os.path.join(path, "cur", f"{t + i}.M{i}P1.bench,S={len(m)}:2,{'S' if i % 2 else ''}")
        with open(name, "wb") as f:
            f.write(m)


def write_mbox(path: str, msgs: list[bytes]) -> None:
    from store.migrate import mbox
    with open(path, "wb") as f:
        for i, m in enumerate(msgs):
            f.write((mbox.separator(msgs[i - 1]) if i else b"")
                    + mbox.entry(m, "bench@example.com", 1700000000 + i, 0, []))


def fresh_store(work: str) -> str:
    from store.mailbox import Store
    root = tempfile.mkdtemp(prefix="store.", dir=work)
    Store.init(root).close()
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--work", default=None, help="scratch directory (default: a new one in /tmp)")
    ap.add_argument("--keep", action="store_true", help="leave the scratch directory")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="bench-migrate.")
    os.chmod(work, 0o755)
    msgs = messages(args.messages, 15)
    total = sum(map(len, msgs))
    src = os.path.join(work, "src", "Maildir")
    write_maildir(src, msgs)
    box = os.path.join(work, "src", "src.mbox")
    write_mbox(box, msgs)
    peer = os.geteuid() == 0 and os.path.exists(DOVEADM) and _has_mail_user()
    if peer:  # Dovecot writes its dovecot-uidlist into the source
        subprocess.run(["chown", "-R", "8:8", os.path.join(work, "src")], check=True)
    res: dict[str, float] = {}
    ours = {n: os.path.join(BIN, n) for n in ("imsimport", "imsexport", "imsbackup",
                                               "imsrestore")}
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(REPO, "store")])

    def store_round(_i):
        return {"root": fresh_store(work)}
    res["ours import maildir"] = timed([ours["imsimport"], "--store-root", "{root}", src,
                                        "user/bench"], store_round, args.rounds)
    res["ours import mbox"] = timed([ours["imsimport"], "--store-root", "{root}", box,
                                     "user/bench"], store_round, args.rounds)
    full = fresh_store(work)
    subprocess.run([ours["imsimport"], "--store-root", full, src, "user/bench"], check=True,
                   stdout=subprocess.DEVNULL)

    def dest_round(_i):
        return {"dest": tempfile.mkdtemp(prefix="out.", dir=work) + "/x"}
    res["ours export maildir"] = timed([ours["imsexport"], "--store-root", full, "user/bench",
                                        "{dest}"], dest_round, args.rounds)
    res["ours export mbox"] = timed([ours["imsexport"], "--store-root", full, "--format", "mbox",
                                     "user/bench", "{dest}"], dest_round, args.rounds)
    res["ours backup"] = timed([ours["imsbackup"], "--store-root", full, "-f", "{dest}",
                                "user/bench"], dest_round, args.rounds)
    bak = os.path.join(work, "full.msb")
    subprocess.run([ours["imsbackup"], "--store-root", full, "-f", bak, "user/bench"],
                   check=True, stdout=subprocess.DEVNULL)
    res["ours restore"] = timed([ours["imsrestore"], "--store-root", "{root}", "-f", bak],
                                store_round, args.rounds)
    if peer:
        base = os.path.join(work, "dovecot")
        for d in ("run", "state", "homes"):
            os.makedirs(os.path.join(base, d))
        conf = os.path.join(base, "dovecot.conf")
        with open(conf, "w") as f:
            f.write(DOVECOT_BASE.format(base=base))
        open(os.path.join(base, "users"), "w").close()
        subprocess.run(["chown", "-R", "8:8", base], check=True)
        os.chmod(conf, 0o644)

        def as_mail(home: str) -> list[str]:
            return ["setpriv", "--reuid=8", "--regid=8", "--clear-groups", "env", "-i",
                    "USER=bench", f"HOME={home}", "PATH=/usr/bin:/bin"]

        def home_round(_i):
            home = tempfile.mkdtemp(prefix="home.", dir=os.path.join(base, "homes"))
            subprocess.run(["chown", "8:8", home], check=True)
            return {"home": home}
        doveadm = [DOVEADM, "-c", conf]
        res["dovecot import maildir"] = timed(
            as_mail("{home}") + doveadm + ["import", f"maildir:{src}:INDEX=MEMORY", "", "ALL"],
            home_round, args.rounds)
        mbdir = os.path.join(work, "src", "mbox-indexes")
        os.makedirs(mbdir)
        subprocess.run(["chown", "8:8", mbdir], check=True)
        res["dovecot import mbox"] = timed(
            as_mail("{home}") + doveadm + ["import", f"mbox:{mbdir}:INBOX={box}:INDEX=MEMORY",
                                           "", "ALL"], home_round, args.rounds)
        home = home_round(0)["home"]
        subprocess.run([a.format(home=home) for a in as_mail("{home}")] + doveadm
                       + ["import", f"maildir:{src}:INDEX=MEMORY", "", "ALL"], check=True)
        subprocess.run(as_mail(home) + doveadm + ["index", "INBOX"], check=True)
        count = sum(len(os.listdir(os.path.join(home, "Maildir", d))) for d in ("cur", "new"))
        if count != args.messages:
            raise SystemExit(f"doveadm import stored {count} messages, not {args.messages}")

        def dv_dest(_i):
            d = tempfile.mkdtemp(prefix="dvout.", dir=os.path.join(base, "homes"))
            subprocess.run(["chown", "8:8", d], check=True)
            return {"dest": d + "/Maildir"}
        res["dovecot backup (dsync) to maildir"] = timed(
            as_mail(home) + doveadm + ["backup", "maildir:{dest}"], dv_dest, args.rounds)
    print(f"{args.messages} messages, {total / 1e6:.1f} MB, median of {args.rounds} runs")
    for k, v in res.items():
        print(f"  {k:38s} {v:7.3f} s  {args.messages / v:8,.0f} messages/s")
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
