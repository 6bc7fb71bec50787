#!/usr/bin/env python3
"""Mutation fuzzing of the store's control files.

Each round copies a small store, damages one control file (store.idx,
store.cache, store.exp, store.conf, stored.state, a snapshot's
manifest.json, a lock file) with one seeded mutation (bit flips, a
truncation, a zeroed range, garbage written over a range, growth), then
runs what an administrator and the MTA would: `imcheck -m`, `reconstruct
-n -r`, `reconstruct -r`, `mboxutil -l`, `deliver`, a stored start and
stop, and `reconstruct -n -r` again. It asserts:

- no traceback (the commands run in-process through the console scripts'
  exit-code map: an exception that escapes it is a failure) and an exit
  code from the documented set; no hang (60 s per command);
- every message file that was there is there with the same bytes;
- after the repair, `reconstruct -n -r` is clean (exit 0), unless the
  settings file itself was made invalid: then every command must refuse
  with exit 16 and one line naming the file.

    python tools/fuzz_control.py --rounds 10000 --seed 1
    python tools/fuzz_control.py --rounds 50 --seed 3 --kinds store.conf,manifest

Prints one line per failure (seed, file, mutation, what went wrong) and a
count per kind of file. Exit 1 when anything failed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from build_store import build  # noqa: E402

KINDS = ("store.idx", "store.cache", "store.exp", "store.conf", "stored.state", "manifest",
         "lock")
DOCUMENTED = {0, 1, 2, 4, 8, 16, 32}
# deliver speaks sysexits.h to the MTA (store/cli/deliver.py)
SYSEXITS = {0, 64, 65, 67, 70, 75, 77, 78}
SETTINGS_REFUSED = {"deliver": 78}  # the others exit 16 on a bad settings file
EXPUNGED = "user/user0000/Sent"  # has a store.exp


class Hang(Exception):
    pass


def _alarm(*_):
    raise Hang()


def make_base(path: str) -> None:
    from store import snapshots
    from store.daemon import state
    from store.index import FLAG_DELETED
    from store.mailbox import Store
    build(path, users=2, folders=1, messages=4, seed=5)
    with Store.open(path) as s:
        for uid in (1, 3):
            s.set_flags(EXPUNGED, uid, FLAG_DELETED)
        s.expunge(EXPUNGED)
        snapshots.take(s.layout, s.db)
        with s.lock("user/user0001"):
            pass  # leaves lock/mbox-<hash>.lock
        state.write_state(s.layout, state.READY)


def targets(root: str, kind: str) -> list[str]:
    out = []
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(d, f)
            if (kind in ("store.idx", "store.cache", "store.exp", "store.conf", "stored.state")
                    and f == kind) or (kind == "manifest" and f == "manifest.json") \
                    or (kind == "lock" and f.endswith(".lock")):
                out.append(p)
    return out


def mutate(path: str, rng: random.Random) -> str:
    data = bytearray(open(path, "rb").read())
    how = rng.choice(["flip", "truncate", "zero", "garbage", "grow"])
    n = len(data)
    if how == "flip" and n:
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(n)
            data[i] ^= 1 << rng.randrange(8)
    elif how == "truncate":
        data = data[:rng.randint(0, max(0, n - 1))]
    elif how == "zero" and n:
        a = rng.randrange(n)
        b = min(n, a + rng.randint(1, 512))
        data[a:b] = bytes(b - a)
    elif how == "garbage" and n:
        a = rng.randrange(n)
        b = min(n, a + rng.randint(1, 64))
        data[a:b] = rng.randbytes(b - a)
    else:
        how = "grow"
        data += rng.randbytes(rng.randint(1, 4096))
    with open(path, "wb") as f:
        f.write(data)
    return how


def message_hashes(root: str) -> dict[str, str]:
    out = {}
    for d, _dirs, files in os.walk(root):
        for f in files:
            if f.endswith(".msg"):
                p = os.path.join(d, f)
                out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def command(prog: str, *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    """A console script in-process: (exit code, stdout, stderr); an
    exception escaping the exit-code map propagates."""
    import importlib

    from click.testing import CliRunner

    from store.cli.common import run
    mod = importlib.import_module(f"store.cli.{prog}")
    with CliRunner().isolation(input=stdin) as outs:
        code = run(mod.cli, prog, list(args))
        return code, outs[0].getvalue().decode(), outs[1].getvalue().decode()


def stored_start_stop(root: str) -> int:
    """stored's start (check, recover, ready) and stop, in-process."""
    from store import logsetup
    from store.daemon.daemon import Daemon
    from store.errors import StoreError
    d = None
    try:
        d = Daemon(root)
        logsetup.attach(d.layout.log_dir)
        d.acquire()
        d.start()
        return 0
    except (StoreError, OSError) as e:
        return getattr(e, "exit_code", 8)
    finally:
        if d is not None:
            d.shutdown()
        logsetup.detach_all()


def round_(seed: int, base: str, work: str, kinds: list[str]) -> tuple[str, str, list[str]]:
    rng = random.Random(seed)
    root = os.path.join(work, f"f{seed}")
    shutil.copytree(base, root, symlinks=True)
    kind = kinds[seed % len(kinds)]
    files = targets(root, kind)
    path = rng.choice(files)
    how = mutate(path, rng)
    before = message_hashes(root)
    problems: list[str] = []
    codes: dict[str, int] = {}
    steps = [("imcheck", ["-m", rng.choice(["user/user0000", EXPUNGED, "user/user0001"])]),
             ("reconstruct", ["-n", "-r"]), ("reconstruct", ["-r"]), ("mboxutil", ["-l"]),
             ("deliver", ["user/user0001"]), ("stored", []), ("reconstruct", ["-n", "-r"])]
    for prog, args in steps:
        signal.alarm(60)
        try:
            if prog == "stored":
                code, err = stored_start_stop(root), ""
            else:
                code, _out, err = command(prog, "--store-root", root, *args,
                                          stdin=b"Subject: fuzz\n\nbody\n")
        except Hang:
            problems.append(f"{prog} {' '.join(args)}: no answer in 60 s")
            break
        except BaseException:  # noqa: BLE001 - the finding: a traceback
            problems.append(f"{prog} {' '.join(args)}: traceback: "
                            f"{traceback.format_exc().strip().splitlines()[-1]}")
            continue
        finally:
            signal.alarm(0)
        codes[f"{prog} {' '.join(args)}"] = code
        if code not in (SYSEXITS if prog == "deliver" else DOCUMENTED):
            problems.append(f"{prog} {' '.join(args)}: exit {code}")
        if err.count("\n") > 1 and prog != "imcheck":  # imcheck: a line per damaged record
            problems.append(f"{prog} {' '.join(args)}: {err.count(chr(10))} lines on stderr")
    after = message_hashes(root)
    lost = [p for p, h in before.items() if after.get(p) != h]
    if lost:
        problems.append(f"message files lost or changed: {lost[:3]}")
    final = codes.get("reconstruct -n -r")
    conf_bad = kind == "store.conf" and codes.get("mboxutil -l") == 16
    if conf_bad:
        bad = [c for c, v in codes.items() if v != SETTINGS_REFUSED.get(c.split()[0], 16)]
        if bad:
            problems.append(f"settings file invalid, yet {bad} did not refuse (16; deliver 78)")
    elif final not in (0, None):
        problems.append(f"reconstruct -n -r after the repair exited {final}")
    shutil.rmtree(root, ignore_errors=True)
    return kind, f"{os.path.relpath(path, root)} {how}", problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=70)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kinds", default=",".join(KINDS))
    a = ap.parse_args()
    kinds = a.kinds.split(",")
    signal.signal(signal.SIGALRM, _alarm)
    counts = {k: [0, 0] for k in kinds}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fuzz-control-") as work:
        base = os.path.join(work, "base")
        with contextlib.redirect_stdout(sys.stderr):
            make_base(base)
        for i in range(a.rounds):
            seed = a.seed * 1_000_000 + i
            kind, what, problems = round_(seed, base, work, kinds)
            counts[kind][0] += 1
            if problems:
                counts[kind][1] += 1
                for p in problems:
                    print(f"FAIL seed {seed} {what}: {p}", flush=True)
    for k, (n, bad) in counts.items():
        print(f"{k}: {n} mutated files, {bad} failed")
    print(f"{a.rounds} rounds in {time.monotonic() - t0:.0f} s")
    sys.exit(1 if any(bad for _n, bad in counts.values()) else 0)


if __name__ == "__main__":
    main()
