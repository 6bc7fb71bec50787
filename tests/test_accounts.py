"""Users who may log in: mboxutil --set-password / --remove-password /
--list-users, the password file, and checking a password."""

import multiprocessing as mp
import os
import stat

import pytest

from store import accounts
from store.errors import SettingError
from store.layout import Layout


def test_passwords_are_set_checked_changed_and_removed(cli, root):
    assert cli("mboxutil", "--store-root", root, "-c", "user/joe").code == 0
    r = cli("mboxutil", "--store-root", root, "--set-password", "joe", input=b"s3cret pass\n")
    assert r.code == 0 and r.out == "password set for joe\n", r
    layout = Layout.open(root)
    assert accounts.verify(layout, "joe", "s3cret pass")
    assert not accounts.verify(layout, "joe", "s3cret")
    assert not accounts.verify(layout, "nobody", "s3cret pass")
    st = os.stat(accounts.passwd_path(layout))
    assert stat.S_IMODE(st.st_mode) == 0o600
    r = cli("mboxutil", "--store-root", root, "--set-password", "joe", input=b"other\n")
    assert r.out == "password changed for joe\n"
    assert accounts.verify(layout, "joe", "other") and not accounts.verify(layout, "joe",
                                                                            "s3cret pass")
    assert cli("mboxutil", "--store-root", root, "--list-users").out == "joe\n"
    r = cli("mboxutil", "--store-root", root, "--list-users", "--json")
    assert r.out.split() == ["[", '"joe"', "]"]
    assert cli("mboxutil", "--store-root", root, "--remove-password", "joe").code == 0
    assert not accounts.verify(layout, "joe", "other")
    r = cli("mboxutil", "--store-root", root, "--remove-password", "joe")
    assert r.code == 8 and "joe has no password" in r.err
    with open(os.path.join(root, "log", "default"), encoding="utf-8") as f:
        log = f.read()
    assert "Password of joe added" in log and "s3cret" not in log and "other" not in log


@pytest.mark.parametrize("user,password,why", [
    ("joe", b"\n", "the password is empty"), ("a/b", b"x\n", "invalid user id"),
    ("joe", b"\xff\xfe\n", "not UTF-8")])
def test_bad_users_and_passwords_are_refused(cli, root, user, password, why):
    assert cli("mboxutil", "--store-root", root, "-c", "user/joe").code == 0
    r = cli("mboxutil", "--store-root", root, "--set-password", user, input=password)
    assert r.code == 16 and why in r.err and r.err.count("\n") == 1, r
    assert not os.path.exists(os.path.join(root, "config", "passwd"))


def test_a_damaged_password_file_is_named_with_its_line(cli, root):
    assert cli("mboxutil", "--store-root", root, "-c", "user/joe").code == 0
    assert cli("mboxutil", "--store-root", root, "--set-password", "joe", input=b"pw\n").code == 0
    path = os.path.join(root, "config", "passwd")
    with open(path, "a") as f:
        f.write("bob:plaintext\n")
    r = cli("mboxutil", "--store-root", root, "--list-users")
    assert r.code == 16 and f"{path}:3: expected 'user:$argon2id$...'" in r.err, r
    with pytest.raises(SettingError):
        accounts.verify(Layout.open(root), "joe", "pw")  # nobody logs in on a guess


def _set(root, k):
    import time
    write = accounts._write

    def slow_write(layout, entries):  # widen the read-modify-write window a lock must close
        time.sleep(0.2)
        write(layout, entries)
    accounts._write = slow_write
    accounts.set_password(Layout.open(root), f"user{k}", f"pw{k}")


def test_concurrent_writers_lose_no_user(root):
    Layout.init(root)
    procs = [mp.get_context("fork").Process(target=_set, args=(root, k)) for k in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    layout = Layout.open(root)
    assert accounts.users(layout) == [f"user{k}" for k in range(6)]
    assert all(accounts.verify(layout, f"user{k}", f"pw{k}") for k in range(6))
