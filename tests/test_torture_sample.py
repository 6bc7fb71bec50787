"""tools/torture.py's oracle over named crash points (store/crash.py): every
operation with named steps stopped at each, recovered as an administrator
would, checked against the oracle; and a few race trials. The timed kills
at random moments are the long run (docs/reliability.md), not a test."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.slow
def test_every_named_crash_point_of_every_operation_recovers():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from torture import CRASH_POINTS
    r = subprocess.run([sys.executable, "tools/torture.py", "--crashpoints", "--races", "4",
                        "--seed", "3"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and "FAIL" not in r.stdout, r.stdout + r.stderr
    n = sum(len(p) for p in CRASH_POINTS.values())
    assert f"{n} trials, 4 race trials" in r.stdout
    for op, points in CRASH_POINTS.items():
        # each stop landed: the command reached its named step
        assert f"{op}: {len(points)} kill trials ({len(points)} killed" in r.stdout, r.stdout
