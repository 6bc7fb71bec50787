"""Damage copies of a mailbox database at random and run commands on each:
a probe for crashes (death by a signal) and tracebacks, too slow for the
test suite in bulk (tests/test_commands.py runs a few seeds of it).

    python tools/probe_db_damage.py --count 100 --seed 2
    python tools/probe_db_damage.py --command "deliver user/user0001" --command "reconstruct -r -n"

Builds a small store, then for each damaged copy of its data.mdb (random
bytes, a page filled with one byte, or truncation) runs `mboxutil -l` and
`reconstruct -m`, and prints how each ended; any run that died of a signal
or printed a traceback is listed with its last error line."""

from __future__ import annotations

import argparse
import collections
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from build_store import build  # noqa: E402

COMMANDS = ("mboxutil -l", "reconstruct -m")


def damaged(orig: bytes, rng: random.Random) -> tuple[str, bytes]:
    data = bytearray(orig)
    kind = rng.choice(["bytes", "page", "truncate"])
    if kind == "bytes":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == "page":
        p = rng.randrange(len(data) // 4096)
        data[p * 4096:(p + 1) * 4096] = bytes([rng.randrange(256)]) * 4096
    else:
        data = data[:rng.randrange(len(data))]
    return kind, bytes(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--command", action="append", metavar="'PROG ARGS'",
                    help=f"a command to run on each copy (repeatable; default: {', '.join(COMMANDS)})")
    args = ap.parse_args()
    commands = [c.split() for c in (args.command or COMMANDS)]
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "store")
        build(root, users=30, folders=2, messages=1, seed=args.seed)
        path = os.path.join(root, "mboxlist", "data.mdb")
        orig = open(path, "rb").read()
        rng = random.Random(args.seed)
        ends, bad = collections.Counter(), []
        for _ in range(args.count):
            kind, data = damaged(orig, rng)
            with open(path, "wb") as f:
                f.write(data)
            for cmd in commands:
                r = subprocess.run([sys.executable, "-c",
                                    f"from store.cli.{cmd[0]} import main; main()", *cmd[1:]],
                                   env={**os.environ, "MSGSTORE_ROOT": root},
                                   cwd=os.path.join(HERE, ".."), input="Subject: probe\n\nx\n",
                                   capture_output=True, text=True)
                ends[cmd[0], kind, r.returncode] += 1
                if r.returncode < 0 or "Traceback" in r.stderr:
                    bad.append((cmd[0], kind, r.returncode, (r.stderr.strip().splitlines()
                                                             or [""])[-1]))
        for (cmd, kind, code), n in sorted(ends.items()):
            print(f"{cmd:12s} {kind:9s} exit {code:3d}: {n}")
        for b in bad:
            print("CRASH" if b[2] < 0 else "TRACEBACK", *b)


if __name__ == "__main__":
    main()
