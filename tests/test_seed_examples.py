"""The seeds' own examples and the way administrators run the commands
(issue 11, items 13-16)."""

import os
import pty
import subprocess
import sys

from build_store import build
from conftest import ROOT

RECONSTRUCT = [sys.executable, "-c", "from store.cli.reconstruct import main; main()"]


def test_a_trailing_slash_names_the_users_mailboxes_as_in_seed_003(cli, root):
    build(root, users=2, folders=2, messages=2, seed=3)
    r = cli("reconstruct", "--store-root", root, "-n", "-r", "user/user0001/")
    assert r.code == 0, r
    assert "3 mailboxes checked" in r.out  # INBOX and its two folders
    r = cli("reconstruct", "--store-root", root, "-r", "user/user0000/")
    assert r.code == 0, r
    assert "3 mailboxes checked" in r.out


def test_the_progress_bar_goes_to_the_terminal_on_stderr_not_into_stdout(tmp_path):
    root = str(tmp_path / "store")
    build(root, users=3, folders=1, messages=2, seed=3)
    master, slave = pty.openpty()
    try:
        p = subprocess.run(RECONSTRUCT + ["-r", "-n"], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=slave, env={**os.environ, "MSGSTORE_ROOT": root,
                                              "COLUMNS": "100"}, timeout=60)
    finally:
        os.close(slave)
    tty = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        tty += chunk
    os.close(master)
    assert p.returncode == 0
    assert p.stdout.startswith(b"reconstruct: 6 mailboxes checked"), p.stdout[:200]
    assert b"mailboxes" in tty  # the bar was drawn where the terminal is


def test_with_p_a_listed_mailbox_on_another_partition_is_left_out_with_a_note(cli, root, tmp_path):
    build(root, users=1, folders=0, messages=2, seed=3)
    second = str(tmp_path / "second")
    assert cli("configutil", "--store-root", root, "-o", "store.partition.second.path",
               "-v", second).code == 0
    assert cli("mboxutil", "--store-root", root, "-c", "user/far", "--partition",
               "second").code == 0
    for extra in ([], ["-n"]):
        r = cli("reconstruct", "--store-root", root, *extra, "-p", "primary", "user/user0000",
                "user/far")
        assert r.code == 0, r
        assert "user/far/INBOX: on partition second, not primary: left out" in r.out
        assert "1 mailboxes checked" in r.out
    r = cli("reconstruct", "--store-root", root, "-p", "primary", "user/nosuch")
    assert r.code == 8 and "neither in the database nor in the spool" in r.err


def test_hashdir_says_which_partition_and_which_directory(cli, root, tmp_path):
    build(root, users=1, folders=1, messages=1, seed=3)
    second = str(tmp_path / "second")
    cli("configutil", "--store-root", root, "-o", "store.partition.second.path", "-v", second)
    cli("mboxutil", "--store-root", root, "-c", "user/far", "--partition", "second")
    r = cli("hashdir", "--store-root", root, "--partition", "far")
    assert (r.code, r.out) == (0, "second\n")
    r = cli("hashdir", "--store-root", root, "--path", "far")
    assert r.code == 0 and r.out.strip().startswith(second + "/=user/")
    assert os.path.isfile(os.path.join(r.out.strip(), "store.idx"))
    r = cli("hashdir", "--store-root", root, "--path", "user/user0000/Sent")
    assert r.code == 0 and r.out.strip().endswith("=user0000/=Sent/"), r
    assert os.path.isfile(os.path.join(r.out.strip(), "store.idx"))
    assert cli("hashdir", "far").out == cli("hashdir", "--store-root", root, "far").out
    r = cli("hashdir", "--store-root", root, "--path", "nosuch")
    assert r.code == 8 and "does not exist" in r.err
    assert cli("hashdir", "user/far").code == 16


def test_what_a_check_finds_is_in_the_default_log_for_the_cron_line(cli, root):
    """reconstruct -r -n from cron: the findings, not only the exit code, are
    in the log the administrator reads (issue 11, item 12)."""
    from damage import damage
    build(root, users=1, folders=0, messages=3, seed=3)
    damage(root, "missing_message_file", "user/user0000/INBOX")
    r = cli("reconstruct", "--store-root", root, "-r", "-n")
    assert r.code == 4
    log = open(os.path.join(root, "log", "default"), encoding="utf-8").read()
    for line in r.out.splitlines()[:-1]:  # every finding; the summary is the last line
        assert f"WARNING: reconstruct: {line}" in log
