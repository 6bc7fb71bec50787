"""A command run as root on a store owned by the mail user works as that
user (as Cyrus's tools become cyrus), so it leaves nothing the mail user
cannot write; a permission problem is reported as one (issue 11, item 3).
Needs root; skipped otherwise."""

import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from build_store import build
from conftest import ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
NOBODY = 65534


def _cmd(root, *argv, input=None):
    return subprocess.run([sys.executable, "-c", f"from store.cli.{argv[0]} import main; main()",
                           *argv[1:]], cwd=ROOT, capture_output=True, text=True, input=input,
                          env={**os.environ, "MSGSTORE_ROOT": root})


def _python_runs_as_nobody() -> bool:
    return subprocess.run([sys.executable, "-c", "import os; os.setgroups([]); "
                           f"os.setgid({NOBODY}); os.setuid({NOBODY}); import signal, json"],
                          capture_output=True).returncode == 0


@pytest.fixture
def base():
    """A directory the mail user can reach. Where the interpreter lives below
    a directory it cannot search (this machine's /root/.pyenv under /root
    0700), /root gets o+x for the test: a real mail user must be able to run
    the commands' Python, or the switch to it would break their imports."""
    opened = None
    if not _python_runs_as_nobody():
        opened = "/root"
        mode = os.stat(opened).st_mode
        os.chmod(opened, mode | 0o001)
        if not _python_runs_as_nobody():
            os.chmod(opened, mode)
            pytest.skip("the interpreter cannot be run by an unprivileged user here")
    d = tempfile.mkdtemp(prefix="ownership-", dir="/tmp")
    os.chmod(d, 0o755)  # the mail user must reach the store inside
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
        if opened:
            os.chmod(opened, mode)


def _owners(root):
    out = set()
    for d, _dirs, files in os.walk(root):
        for n in [d] + [os.path.join(d, f) for f in files]:
            out.add((os.lstat(n).st_uid, os.lstat(n).st_gid))
    return out


def test_root_works_as_the_stores_owner_and_leaves_nothing_root_owned(base):
    root = os.path.join(base, "store")
    build(root, users=1, folders=1, messages=2, seed=1)
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", root], check=True)
    for argv, stdin in ((["deliver", "user/user0000"], "Subject: as root\n\nx\n"),
                        (["mboxutil", "-c", "user/newbie"], None),
                        (["reconstruct", "-r", "-f"], None), (["reconstruct", "-m"], None),
                        (["imdbverify", "-s"], None), (["stored", "-r"], None)):
        r = _cmd(root, *argv, input=stdin)
        assert r.returncode in (0, 1), (argv, r.stderr)
    assert _owners(root) == {(NOBODY, NOBODY)}
    # and the mail user itself can go on delivering
    r = subprocess.run([sys.executable, "-c", "import os, sys; os.setgroups([]); "
                        f"os.setgid({NOBODY}); os.setuid({NOBODY}); "
                        "from store.cli.deliver import main; main()", "user/newbie"],
                       cwd=ROOT, capture_output=True, text=True, input="Subject: m\n\nx\n",
                       env={**os.environ, "MSGSTORE_ROOT": root})
    assert r.returncode == 0, r.stderr


def test_a_permission_problem_is_named_as_one(base):
    root = os.path.join(base, "store")
    build(root, users=1, folders=0, messages=1, seed=1)
    os.chmod(root, 0o700)  # root's store; the mail user may not read it
    r = subprocess.run([sys.executable, "-c", "import os; os.setgroups([]); "
                        f"os.setgid({NOBODY}); os.setuid({NOBODY}); "
                        "from store.cli.mboxutil import main; main()", "-l"],
                       cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "MSGSTORE_ROOT": root})
    assert r.returncode == 8
    assert "permission denied reading the store root" in r.stderr and "uid 0" in r.stderr
    assert len(r.stderr.splitlines()) == 1


def _as_nobody(root, prog, *args, input=None):
    return subprocess.run([sys.executable, "-c", "import os; os.setgroups([]); "
                           f"os.setgid({NOBODY}); os.setuid({NOBODY}); "
                           f"from store.cli.{prog} import main; main()", *args],
                          cwd=ROOT, capture_output=True, text=True, input=input,
                          env={**os.environ, "MSGSTORE_ROOT": root})


@pytest.mark.parametrize("groupaccess,mode", [("1", 0o750), ("0", 0o700)])
def test_a_lost_mboxlist_is_made_again_as_a_directory_its_owner_can_enter(base, groupaccess,
                                                                            mode):
    """Issue 23 item 15: LMDB made a missing mboxlist/ with its files' mode
    0640, which the non-root owner cannot enter: every command failed after."""
    root = os.path.join(base, "store")
    build(root, users=1, folders=1, messages=2, seed=1)
    from store.layout import Layout
    Layout.open(root).config.set("local.store.groupaccess", groupaccess)
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", root], check=True)
    shutil.rmtree(os.path.join(root, "mboxlist"))
    r = _as_nobody(root, "reconstruct", "-m")
    assert r.returncode in (0, 1), r.stderr
    assert os.stat(os.path.join(root, "mboxlist")).st_mode & 0o777 == mode
    r = _as_nobody(root, "deliver", "user/user0000", input="Subject: after\n\nx\n")
    assert r.returncode == 0, r.stderr
    r = _as_nobody(root, "mboxutil", "-l")
    assert r.returncode == 0 and "user/user0000" in r.stdout, r.stderr
