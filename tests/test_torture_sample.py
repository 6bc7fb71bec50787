"""A short sample of tools/torture.py's kill trials (the long run is in
docs/reliability.md): every operation killed at a seeded random moment,
recovered as an administrator would, checked against the oracle."""

import subprocess
import sys

from conftest import ROOT


def test_a_sample_of_kill_trials_finds_nothing_wrong():
    r = subprocess.run([sys.executable, "tools/torture.py", "--trials", "10", "--seed", "3"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "FAIL" not in r.stdout, r.stdout + r.stderr
    assert "10 trials" in r.stdout
