#!/usr/bin/env python3
"""mypy over store/, held to a checked-in baseline that may only shrink.

The baseline (tools/mypy-baseline.txt) lists each known error as
`path: [code] message`, without its line number, so that an edit above an
old error does not look new. The check fails when a file has more errors
of a code than the baseline holds (the messages are for people: their
wording changes between mypy and library releases, so they are not
compared); when errors were fixed it says so, and `--update` writes the
smaller baseline. mypy itself is pinned in pyproject.toml.

    python tools/typecheck.py            # exit 0: nothing new; 1: new errors (listed)
    python tools/typecheck.py --update   # after fixing some: shrink the baseline
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BASELINE = os.path.join(HERE, "mypy-baseline.txt")
LINE = re.compile(r"^(?P<path>[^:]+):\d+: error: (?P<msg>.*?)\s+\[(?P<code>[a-z-]+)\]$")


def errors(mypy_output: str) -> collections.Counter[str]:
    """The errors of a mypy run, each as `path: [code] message`, counted."""
    out: collections.Counter[str] = collections.Counter()
    for line in mypy_output.splitlines():
        m = LINE.match(line.strip())
        if m:
            out[f"{m['path']}: [{m['code']}] {m['msg']}"] += 1
    return out


def _by_file_and_code(errs: collections.Counter[str]) -> collections.Counter[str]:
    out: collections.Counter[str] = collections.Counter()
    for e, n in errs.items():
        out[e.split("] ", 1)[0] + "]"] += n
    return out


def compare(found: collections.Counter[str], baseline: collections.Counter[str]
            ) -> tuple[list[str], int]:
    """(the errors of each file and code that has more than the baseline,
    how many baseline errors are gone)."""
    have, known = _by_file_and_code(found), _by_file_and_code(baseline)
    over = {k for k in have if have[k] > known[k]}
    new = sorted(e for e in found.elements() if e.split("] ", 1)[0] + "]" in over)
    return new, sum((known - have).values())


def read_baseline(path: str = BASELINE) -> collections.Counter[str]:
    with open(path, encoding="utf-8") as f:
        return collections.Counter(line.rstrip("\n") for line in f if line.strip()
                                   and not line.startswith("#"))


def run_mypy() -> str:
    r = subprocess.run([sys.executable, "-m", "mypy", "store"], cwd=ROOT, capture_output=True,
                       text=True)
    if r.returncode not in (0, 1) or "error: " in r.stderr:
        sys.exit(f"typecheck: mypy could not run: {(r.stderr or r.stdout).strip()[-500:]}")
    return r.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--update", action="store_true", help="write the baseline (only ever smaller)")
    a = ap.parse_args()
    found, baseline = errors(run_mypy()), read_baseline()
    new, gone = compare(found, baseline)
    if new:
        print(f"typecheck: more mypy errors than the baseline holds (tools/mypy-baseline.txt, "
              f"{sum(baseline.values())} known); the errors of those files and codes:")
        for e in new:
            print(f"  {e}")
        return 1
    if a.update:
        with open(BASELINE, "w", encoding="utf-8") as f:
            f.write("# mypy errors of store/ known on main; may only shrink (tools/typecheck.py)\n")
            f.writelines(f"{e}\n" for e in sorted(found.elements()))
        print(f"typecheck: baseline written, {sum(found.values())} errors")
        return 0
    print(f"typecheck: {sum(found.values())} mypy errors, all in the baseline"
          + (f"; {gone} fixed: shrink it with python tools/typecheck.py --update" if gone else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
