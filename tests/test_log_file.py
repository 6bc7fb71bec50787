"""The default log file: one line per message, and a new file once
logrotate has moved or removed the old one (no signal needed)."""

import logging
import os

import pytest

from store import logmsg, logsetup


@pytest.fixture
def log_dir(tmp_path):
    d = str(tmp_path / "log")
    yield d
    logger = logging.getLogger("store")
    for h in list(logger.handlers):
        if getattr(h, "baseFilename", "").startswith(str(tmp_path)):
            logger.removeHandler(h)
            h.close()


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_the_log_follows_logrotate_moving_and_removing_the_file(log_dir):
    logsetup.attach(log_dir)
    logsetup.attach(log_dir)  # twice: still one handler, one line per message
    path = os.path.join(log_dir, logsetup.LOG_FILE)
    logmsg.log("test", logmsg.EXPUNGED_ERASED, count=1, mailbox="user/a")
    assert _read(path).count("Erased 1 expunged message files in user/a") == 1
    os.rename(path, path + ".1")  # logrotate without copytruncate
    logmsg.log("test", logmsg.EXPUNGED_ERASED, count=2, mailbox="user/b")
    assert "user/b" in _read(path) and "user/a" not in _read(path)
    assert "user/b" not in _read(path + ".1")
    os.unlink(path)
    logmsg.log("test", logmsg.EXPUNGED_ERASED, count=3, mailbox="user/c")
    assert "user/c" in _read(path)
    line = _read(path).strip()
    assert f" {os.getpid()} store.test INFO: Erased 3 expunged message files in user/c" in line


def test_commands_in_one_process_each_write_only_their_own_stores_log(cli, tmp_path):
    roots = [str(tmp_path / f"store{i}") for i in range(3)]
    for i, root in enumerate(roots):
        assert cli("mboxutil", "--store-root", root, "-c", f"user/u{i}").code == 0
    for i, root in enumerate(roots):
        text = open(os.path.join(root, "log", logsetup.LOG_FILE), encoding="utf-8").read()
        assert f"Created mailbox user/u{i}/INBOX" in text
        for j in set(range(3)) - {i}:
            assert f"user/u{j}/" not in text, (i, text)
