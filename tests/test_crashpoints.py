"""store/crash.py: every declared crash point is called in the code, every
call names a declared point, and an armed point stops the process there
(and only there, at its Nth pass)."""

import os
import re
import subprocess
import sys

from conftest import ROOT

from store.crash import CRASH_EXIT, ENV, POINTS


def test_declared_and_called_points_are_the_same():
    called = set()
    for d, _s, fs in os.walk(os.path.join(ROOT, "store")):
        for f in fs:
            if f.endswith(".py"):
                text = open(os.path.join(d, f)).read()
                called |= set(re.findall(r'crashpoint\("([^"]+)"\)', text))
    assert called == set(POINTS)


def test_a_point_fires_at_its_nth_pass_and_never_unarmed():
    code = ("from store.crash import crashpoint\n"
            "for i in range(5):\n"
            "    print(i, flush=True)\n"
            "    crashpoint('append:after-header')\n")
    for armed, out, rc in ((None, "0 1 2 3 4", 0), ("append:after-header@3", "0 1 2", CRASH_EXIT),
                           ("append:after-header", "0", CRASH_EXIT),
                           ("append:after-records", "0 1 2 3 4", 0)):
        env = {k: v for k, v in os.environ.items() if k != ENV}
        if armed:
            env[ENV] = armed
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           cwd=ROOT)
        assert (r.stdout.split(), r.returncode) == (out.split(), rc), (armed, r)
