"""The store is never a way out of the store (issue 11, item 1): a symlink
planted where a store file or directory belongs is never read or written
through; the commands refuse in one line, reconstruct reports it as a
`symlink` finding and leaves it to the administrator."""

import os
import subprocess
import sys

import pytest
from build_store import build
from conftest import ROOT

from store.mailbox import Store

MSG = b"Subject: planted\n\nbody\n"


@pytest.fixture
def setup(tmp_path):
    root = str(tmp_path / "store")
    build(root, users=1, folders=0, messages=2, seed=2)
    outside = tmp_path / "outside"
    outside.mkdir()
    with Store.open(root) as s:
        mdir = s.mailbox_dir("user/user0000").rstrip("/")
    return root, mdir, outside


def _tree(path):
    return sorted((os.path.relpath(os.path.join(d, f), path), open(os.path.join(d, f), "rb").read())
                  for d, _s, fs in os.walk(path) for f in fs)


def _plant(path, target):
    if os.path.isdir(path) and not os.path.islink(path):
        os.rename(path, str(target))
    elif os.path.exists(path):
        os.rename(path, str(target))
    os.symlink(str(target), path)


@pytest.mark.parametrize("planted", ["store.idx", "store.cache", "store.exp", "00"])
def test_deliver_and_reconstruct_never_go_through_a_planted_symlink(cli, setup, planted):
    root, mdir, outside = setup
    if planted == "store.exp" and not os.path.exists(os.path.join(mdir, planted)):
        open(os.path.join(mdir, planted), "wb").close()
    _plant(os.path.join(mdir, planted), outside / planted)
    before = _tree(outside)
    r = cli("deliver", "--store-root", root, "user/user0000", input=MSG)
    # deliver speaks sysexits: 75, the MTA keeps the message until the store is repaired
    assert r.code == 75 and "is a symlink where the store expects" in r.err, r
    assert len(r.err.splitlines()) == 1
    for _ in range(2):
        r = cli("reconstruct", "--store-root", root, "-n", "-r")
        assert r.code == 4 and f"{mdir}/{planted} is a symlink" in r.out, r
    r = cli("reconstruct", "--store-root", root, "-r", "-f")
    assert r.code == 4 and "-> left alone (never followed)" in r.out, r
    assert os.path.islink(os.path.join(mdir, planted))
    assert _tree(outside) == before  # nothing written, moved or removed out there


def test_a_symlinked_mailbox_directory_is_refused(cli, setup):
    root, mdir, outside = setup
    _plant(mdir, outside / "joe")
    before = _tree(outside)
    r = cli("deliver", "--store-root", root, "user/user0000", input=MSG)
    assert r.code == 75 and "is a symlink" in r.err
    r = cli("reconstruct", "--store-root", root, "-n", "-r", "user/user0000")
    assert r.code == 4 and "symlink" in r.out
    assert _tree(outside) == before


def test_the_erase_job_never_unlinks_through_a_symlinked_bucket(cli, setup):
    from store.index import FLAG_DELETED
    root, mdir, outside = setup
    with Store.open(root) as s:
        s.set_flags("user/user0000", 1, FLAG_DELETED)
        s.expunge("user/user0000")
    _plant(os.path.join(mdir, "00"), outside / "00")
    before = _tree(outside)
    with Store.open(root) as s, pytest.raises(Exception, match="is a symlink"):
        s.erase_expunged("user/user0000")
    assert _tree(outside) == before and os.path.exists(outside / "00" / "1.msg")


def test_no_lock_file_or_log_is_written_through_a_symlink(cli, setup):
    root, mdir, outside = setup
    from store.locks import mailbox_lock_name
    lock = os.path.join(root, "lock", mailbox_lock_name("user/user0000/INBOX"))
    if os.path.exists(lock):
        os.unlink(lock)
    os.symlink(str(outside / "created-by-lock"), lock)
    r = cli("deliver", "--store-root", root, "user/user0000", input=MSG)
    assert r.code == 75 and "lock file" in r.err, r
    assert not os.path.exists(outside / "created-by-lock")
    os.unlink(lock)
    log = os.path.join(root, "log", "default")
    _plant(log, outside / "default")
    before = _tree(outside)
    r = subprocess.run([sys.executable, "-c", "from store.cli.mboxutil import main; main()",
                        "-l"], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "MSGSTORE_ROOT": root})
    assert r.returncode == 0
    assert "cannot be written" in r.stderr
    assert _tree(outside) == before
