"""A short sample of tools/torture.py's kill and race trials (the long run
is in docs/reliability.md): every operation killed once at a seeded random
moment, recovered as an administrator would, checked against the oracle;
and a few race trials."""

import os
import subprocess
import sys

from conftest import ROOT


def test_a_sample_of_kill_and_race_trials_finds_nothing_wrong():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from torture import OPS
    r = subprocess.run([sys.executable, "tools/torture.py", "--trials", str(len(OPS)),
                        "--races", "4", "--seed", "3"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "FAIL" not in r.stdout, r.stdout + r.stderr
    assert f"{len(OPS)} trials, 4 race trials" in r.stdout
    for op in OPS:
        assert f"{op}: 1 kill trials" in r.stdout
