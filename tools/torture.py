#!/usr/bin/env python3
"""Kill trials with an independent oracle: each trial starts one operation as
a real process on a small store, SIGKILLs it at a random moment (seeded),
runs the recovery an administrator would (`reconstruct -m`, then
`reconstruct -r`), and checks the store against what the oracle recorded
outside it:

- every acknowledged delivery (the `MAILBOX UID` line deliver printed) is
  there with the same bytes (SHA-256), and no UID names two messages;
- a mailbox renamed is listed under exactly one of its names, with all its
  folders and messages; a mailbox deleted is gone with its mail, or (killed
  before its delete began) still whole; nothing is listed under neither;
- `reconstruct -r -n` and `reconstruct -n -m` are clean afterwards.

    python tools/torture.py --trials 200 --seed 1          # every operation in turn
    python tools/torture.py --trials 20 --ops rename,delete

Prints one line per failure (with its seed and operation), then trials and
failures per operation. Exit 1 when anything failed. Bounded: each trial's
processes are killed or finish within a few seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from build_store import build  # noqa: E402

OPS = ("deliver", "rename", "delete", "rebuild", "resync-m")


def _cmd(name: str) -> list[str]:
    return [sys.executable, "-c", f"from store.cli.{name} import main; main()"]


def _run(root: str, name: str, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(name) + list(args), env={**os.environ, "MSGSTORE_ROOT": root},
                          input=input, capture_output=True, timeout=120, cwd=ROOT)


def _listing(root: str) -> dict[str, int]:
    import json
    r = _run(root, "mboxutil", "-l", "--json")
    return {m["name"]: m["messages"] for m in json.loads(r.stdout)}


def _message_hashes(root: str, name: str) -> dict[int, str]:
    from store.mailbox import Store
    out = {}
    with Store.open(root) as s:
        for rec in s.read(name).records:
            out[rec.uid] = hashlib.sha256(s.message(name, rec.uid)).hexdigest()
    return out


def _kill_at(proc: subprocess.Popen, delay: float) -> bool:
    """SIGKILL after `delay` s; True when the process was still running then."""
    time.sleep(delay)
    alive = proc.poll() is None
    if alive:
        proc.kill()
    proc.communicate()
    return alive


def trial(op: str, seed: int, base: str) -> tuple[list[str], bool]:
    """One kill trial: what the oracle found wrong, and whether the kill
    landed while the operation ran (not before it started or after it ended)."""
    rng = random.Random(seed)
    root = os.path.join(base, f"t{seed}")
    build(root, users=2, folders=4, messages=3, seed=seed)
    before = _listing(root)
    acked: list[tuple[str, int, str]] = []
    env = {**os.environ, "MSGSTORE_ROOT": root}
    delay = rng.uniform(0.0, 0.6)
    if op == "deliver":
        msgs = [f"Subject: torture {seed}-{i}\n\n{rng.random()}\n".encode() for i in range(200)]
        script = ("import sys\nfrom store.mailbox import Store\ns = Store.open(sys.argv[1])\n"
                  "for i, m in enumerate(sys.argv[2:]):\n"
                  "    uid = s.append('user/user0000', m.encode())\n"
                  "    print(uid, i, flush=True)\n")
        p = subprocess.Popen([sys.executable, "-c", script, root, *[m.decode() for m in msgs]],
                             stdout=subprocess.PIPE, cwd=ROOT, env=env)
        time.sleep(delay)
        landed = p.poll() is None
        p.kill()
        out, _ = p.communicate()
        for line in out.decode().splitlines():
            uid, i = map(int, line.split())
            acked.append(("user/user0000/INBOX", uid, hashlib.sha256(msgs[i]).hexdigest()))
    elif op == "rename":
        p = subprocess.Popen(_cmd("mboxutil") + ["-r", "user/user0001", "user/moved"], env=env,
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        landed = _kill_at(p, delay / 4)
    elif op == "delete":
        p = subprocess.Popen(_cmd("mboxutil") + ["-d", "user/user0001/F1"], env=env, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        landed = _kill_at(p, delay / 4)
    elif op == "rebuild":
        p = subprocess.Popen(_cmd("reconstruct") + ["-r", "-f", "-i", "-j", "2"], env=env,
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        landed = _kill_at(p, delay / 3)
    elif op == "resync-m":
        os.unlink(os.path.join(root, "mboxlist", "data.mdb"))
        p = subprocess.Popen(_cmd("reconstruct") + ["-m"], env=env, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        landed = _kill_at(p, delay / 4)
    # the recovery an administrator runs
    for args in (["-m"], ["-r"], ["-q"]):
        r = _run(root, "reconstruct", *args)
        if r.returncode not in (0, 1):
            return [f"recovery reconstruct {' '.join(args)} exited {r.returncode}: "
                    f"{r.stderr.decode().strip()[:200]}"], landed
    problems = []
    after = _listing(root)
    if op == "rename":
        old = {n for n in before if n.startswith("user/user0001/")}
        new = {n.replace("user/user0001/", "user/moved/", 1) for n in old}
        if not (old <= set(after) and not new & set(after)) and \
                not (new <= set(after) and not old & set(after)):
            problems.append(f"rename: listed {sorted(set(after) - set(before))} new, "
                            f"{sorted(set(before) - set(after))} gone")
        else:
            for n in old:
                m = n if n in after else n.replace("user/user0001/", "user/moved/", 1)
                if after[m] != before[n]:
                    problems.append(f"rename: {m} has {after[m]} messages, had {before[n]}")
    elif op == "delete":
        name = "user/user0001/F1"
        if name in after and after[name] != before[name]:
            problems.append(f"delete: {name} came back with {after[name]} of {before[name]}")
        if set(after) - set(before):
            problems.append(f"delete: new mailboxes {sorted(set(after) - set(before))}")
    elif set(after) != set(before) or (op != "deliver" and after != before):
        changed = [(n, before.get(n), after[n]) for n in after if before.get(n) != after[n]]
        problems.append(f"{op}: listing changed: {sorted(set(before) ^ set(after))} {changed[:3]}")
    if acked:
        have = _message_hashes(root, "user/user0000/INBOX")
        for name, uid, digest in acked:
            if have.get(uid) != digest:
                problems.append(f"deliver: acknowledged {name} uid {uid} "
                                f"{'lost' if uid not in have else 'changed'}")
    for args in (["-r", "-n"], ["-n", "-m"]):
        r = _run(root, "reconstruct", *args)
        if r.returncode != 0:
            problems.append(f"reconstruct {' '.join(args)} after recovery exited {r.returncode}: "
                            f"{r.stdout.decode().strip()[:200]}")
    shutil.rmtree(root, ignore_errors=True)
    return problems, landed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ops", default=",".join(OPS))
    a = ap.parse_args()
    ops = a.ops.split(",")
    counts = {op: [0, 0, 0] for op in ops}  # trials, failed, kills that landed mid-run
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="torture-") as base:
        for i in range(a.trials):
            op, seed = ops[i % len(ops)], a.seed * 100_000 + i
            problems, landed = trial(op, seed, base)
            counts[op][0] += 1
            counts[op][2] += landed
            if problems:
                counts[op][1] += 1
                for p in problems:
                    print(f"FAIL seed {seed} {op}: {p}", flush=True)
    for op, (n, bad, landed) in counts.items():
        print(f"{op}: {n} kill trials ({landed} killed before the command exited), {bad} failed")
    print(f"{a.trials} trials in {time.monotonic() - t0:.0f} s")
    sys.exit(1 if any(bad for _n, bad, _l in counts.values()) else 0)


if __name__ == "__main__":
    main()
