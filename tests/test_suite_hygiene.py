"""The checks that keep the suite honest can fail: a process a test leaves
running is found by the mark in its environment (every child inherits it,
even one that left its session); tools/leftovers.py, which .ci/run ends
with, finds and kills it. (A mark of its own here: the worker's mark is
also on the services that module fixtures keep running.)"""

import os
import subprocess
import sys
import uuid

from conftest import ROOT, processes_marked, wait_for


def test_a_process_left_running_is_found_and_then_killed():
    name, value = "MSGSTORE_HYGIENE_TEST", uuid.uuid4().hex
    p = subprocess.Popen(["sleep", "300"], start_new_session=True,
                         env={**os.environ, name: value})
    try:
        assert list(processes_marked(name, value)) == [p.pid]
        r = subprocess.run([sys.executable, "tools/leftovers.py", f"{name}={value}", "--kill"],
                           cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 1 and f"pid {p.pid}: sleep 300" in r.stdout, r
        assert p.wait(30) == -9
        r = subprocess.run([sys.executable, "tools/leftovers.py", f"{name}={value}"], cwd=ROOT,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout
        wait_for(lambda: not processes_marked(name, value), 30, "the process gone")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
