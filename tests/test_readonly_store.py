"""Read-only commands work on a store on a read-only filesystem and log to
standard error when the log cannot be written; writers fail with one line
(issue 11, item 4). Needs a read-only bind mount (root with CAP_SYS_ADMIN,
as CI runs); skipped where the mount is refused."""

import os
import subprocess
import sys

import pytest
from build_store import build
from conftest import ROOT

READERS = [["reconstruct", "-n", "-r"], ["reconstruct", "-n", "-m"], ["reconstruct", "-n", "-q"],
           ["reconstruct", "-n", "-l"], ["mboxutil", "-l"], ["mboxutil", "-q"],
           ["imcheck", "-m", "user/user0000"], ["imcheck", "-s"], ["imcheck", "-d", "folder"],
           ["imdbverify"], ["imdbverify", "-l"], ["hashdir", "--path", "user0000"],
           ["configutil", "-l"]]
WRITERS = [["mboxutil", "-c", "user/new"], ["deliver", "user/user0000"], ["reconstruct", "-r"],
           ["imdbverify", "-s"]]


@pytest.fixture
def ro_root(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    dst.mkdir()
    build(str(src / "s"), users=1, folders=1, messages=2, seed=1)
    from store import snapshots
    from store.mailbox import Store
    with Store.open(str(src / "s")) as s:
        snapshots.take(s.layout, s.db)
    if subprocess.run(["mount", "--bind", str(src), str(dst)], capture_output=True).returncode:
        pytest.skip("bind mounts are not permitted here (needs root with CAP_SYS_ADMIN)")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(dst)],
                          capture_output=True).returncode:
            pytest.skip("a read-only remount is not permitted here")
        yield str(dst / "s")
    finally:
        subprocess.run(["umount", str(dst)], capture_output=True)


def _run(root, argv):
    return subprocess.run([sys.executable, "-c", f"from store.cli.{argv[0]} import main; main()",
                           *argv[1:]], cwd=ROOT, capture_output=True, text=True, input="x\n",
                          env={**os.environ, "MSGSTORE_ROOT": root})


def test_read_only_commands_work_on_a_read_only_store(ro_root):
    for argv in READERS:
        r = _run(ro_root, argv)
        assert r.returncode == 0, (argv, r.stderr)
        assert "Traceback" not in r.stderr
    r = _run(ro_root, ["stored", "-t", "-v"])
    assert r.returncode == 8 and "state: stopped" in r.stdout, r
    r = _run(ro_root, ["reconstruct", "-n", "-r"])
    assert "log/default cannot be written (Read-only file system): logging to standard error" \
        in r.stderr
    for argv in WRITERS:
        r = _run(ro_root, argv)
        assert r.returncode == (75 if argv[0] == "deliver" else 8), (argv, r)  # deliver: sysexits
        assert "Read-only file system" in r.stderr and "Traceback" not in r.stderr, (argv, r)
