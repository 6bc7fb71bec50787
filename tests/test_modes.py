"""Modes do not depend on the umask (issue 11, item 2): under umask 000 and
022 every file the store creates is at most 0640 and every directory at
most 0750; with local.store.groupaccess = 0, 0600 and 0700."""

import os
import signal
import stat
import subprocess
import sys

import pytest
from conftest import ROOT, wait_for

WORK = """
import os, sys
sys.path.insert(0, 'tools')
os.umask(int(sys.argv[2], 8))
from store.cli.common import run
from store.cli import deliver, mboxutil, imdbverify, reconstruct, configutil
root = sys.argv[1]
def cmd(mod, *args):
    assert run(mod.cli, mod.__name__.rsplit('.', 1)[1], ['--store-root', root, *args]) in (0, 1)
cmd(mboxutil, '-c', 'user/joe')
if sys.argv[3] == '0':
    cmd(configutil, '-o', 'local.store.groupaccess', '-v', '0')
    os.system(f'chmod -R go-rwx {root}')  # the documented step for what was created before
cmd(mboxutil, '-c', 'user/joe/Sent')
open(root + '.eml', 'wb').write(b'Subject: s\\n\\nbody\\n')
cmd(deliver, 'user/joe', root + '.eml')
cmd(deliver, '--batch', 'user/joe/Sent', root + '.eml', root + '.eml')
cmd(imdbverify, '-s')
cmd(reconstruct, '-r', '-f')
cmd(reconstruct, '-m')
"""


def _modes(root):
    out = []
    for d, _dirs, files in os.walk(root):
        out.append((d, stat.S_IMODE(os.lstat(d).st_mode), True))
        out += [(os.path.join(d, f), stat.S_IMODE(os.lstat(os.path.join(d, f)).st_mode), False)
                for f in files]
    return out


@pytest.mark.parametrize("umask", ["000", "022"])
@pytest.mark.parametrize("group", ["1", "0"])
def test_every_file_and_directory_has_the_documented_mode_whatever_the_umask(tmp_path, umask,
                                                                             group):
    root = str(tmp_path / "store")
    r = subprocess.run([sys.executable, "-c", WORK, root, umask, group], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # and stored: its state, stamps, log lines and a snapshot
    env = {**os.environ, "MSGSTORE_ROOT": root}
    p = subprocess.Popen([sys.executable, "-c", f"import os; os.umask(0o{umask}); "
                          "from store.cli.stored import main; main()"], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    snaps = os.path.join(root, "dbdata", "snapshots")
    wait_for(lambda: os.path.isdir(snaps) and any(n.startswith("snap-") for n in os.listdir(snaps)),
             60, "stored's first snapshot")  # taken soon after it is ready
    p.send_signal(signal.SIGTERM)
    p.wait(30)
    file_max, dir_max = (0o640, 0o750) if group == "1" else (0o600, 0o700)
    too_open = [(path, oct(mode)) for path, mode, is_dir in _modes(root)
                if mode & ~(dir_max if is_dir else file_max)]
    assert too_open == []
    assert any(path.endswith("data.mdb") for path, _m, _d in _modes(root))
