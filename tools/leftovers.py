#!/usr/bin/env python3
"""Processes still alive that carry NAME=VALUE in their environment: what a
run that exported the mark started and did not stop (its daemons included:
the mark survives a double fork). `--kill` kills them. Exit 1 when any were
found (each listed), 0 when none.

    python3 tools/leftovers.py MSGSTORE_CI_RUN=ci-1234 --kill
"""

from __future__ import annotations

import os
import signal
import sys


def _stat(pid: int) -> tuple[str, int]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return fields[0].decode(), int(fields[1])  # state, parent


def ancestors() -> set[int]:
    """This process and every one above it: they carry the mark and are not left over."""
    out, pid = set(), os.getpid()
    while pid > 1:
        out.add(pid)
        try:
            pid = _stat(pid)[1]
        except OSError:
            break
    return out


def marked(mark: bytes) -> dict[int, str]:
    mine, found = ancestors(), {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in mine:
            continue
        pid = int(name)
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if mark not in f.read().split(b"\0"):
                    continue
            if _stat(pid)[0] == "Z":  # exited, not yet reaped: gone
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                found[pid] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
    return found


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "--kill"]
    if len(args) != 1 or "=" not in args[0]:
        sys.exit(__doc__)
    found = marked(args[0].encode())
    for pid, cmd in sorted(found.items()):
        print(f"left running: pid {pid}: {cmd[:200]}")
        if "--kill" in sys.argv:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
