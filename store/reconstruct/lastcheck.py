"""The record of the last whole-store check (`reconstruct -r -n`), which the
seeds' monitoring procedure runs and msprobe reports: `<root>/log/
reconstruct.chk`, JSON {"time", "exit_code", "mailboxes", "with_problems"}.
In the log directory, like the check's log lines: a check changes nothing
in the store (the anchors' rule), and writes only where it logs."""

from __future__ import annotations

import contextlib
import json
import os
import time

from ..fsutil import write_file_atomic
from ..layout import Layout

FILE = "reconstruct.chk"


def record(layout: Layout, exit_code: int, mailboxes: int, with_problems: int) -> None:
    """Written after the check; a store on a read-only filesystem keeps none."""
    with contextlib.suppress(OSError):
        write_file_atomic(os.path.join(layout.log_dir, FILE), json.dumps(
            {"time": int(time.time()), "exit_code": exit_code, "mailboxes": mailboxes,
             "with_problems": with_problems}).encode(), durable=False)


def last(layout: Layout) -> dict | None:
    try:
        with open(os.path.join(layout.log_dir, FILE), encoding="utf-8") as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("time"), int) else None
