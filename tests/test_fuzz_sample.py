"""A short sample of tools/fuzz_control.py (the long run is in
docs/reliability.md): each kind of control file damaged ten times, the
commands run on it: no traceback, no hang, no message file touched, and
clean after the repair."""

import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.slow
def test_a_sample_of_control_file_mutations_finds_nothing_wrong():
    r = subprocess.run([sys.executable, "tools/fuzz_control.py", "--rounds", "70", "--seed", "5"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "FAIL" not in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    assert "70 rounds" in r.stdout
    for kind in ("store.idx", "store.cache", "store.exp", "store.conf", "stored.state",
                 "manifest", "lock"):
        assert f"{kind}: 10 mutated files, 0 failed" in r.stdout
