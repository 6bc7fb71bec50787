import os

import pytest

from store import layout
from store.errors import InvalidNameError

HOSTILE = ["user/../../etc", "user/a\x00b", "/user/x", "user/" + "x" * 300, "user/joe/",
           "user//joe", "user/joe/..", "user/a\nb", "", "user"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_rejected(name):
    with pytest.raises(InvalidNameError):
        layout.canonical(name)


@pytest.mark.parametrize("name", ["user/../../etc", "user/a\x00b", "/user/x", "user/" + "x" * 300])
def test_hostile_names_refused_by_commands(cli, tmp_path, name):
    root = tmp_path / "store"
    for args in (("deliver", "--store-root", str(root), "--create", name),
                 ("mboxutil", "--store-root", str(root), "-c", name)):
        r = cli(*args, input=b"Subject: x\n\nbody")
        assert r.code != 0, r
        # a NUL byte is refused before the command parses anything (exec(2) cannot pass one)
        assert ("invalid mailbox name" in r.err or "argument holds a NUL byte" in r.err) \
            and "\n" not in r.err.strip()
    outside = {p for p in os.listdir(tmp_path)}
    assert outside <= {"store"}
    assert not os.path.exists("/etc/=user")


def test_inbox_spellings_are_one_mailbox():
    assert layout.canonical("user/joe") == "user/joe/INBOX"
    assert layout.canonical("user/joe/inbox") == "user/joe/INBOX"
    assert layout.canonical("user/joe/INBOX/Sent") == "user/joe/Sent"
    assert layout.relpath("user/joe") == "=user/" + layout.hashdir("joe") + "=joe/"
    assert layout.relpath("user/joe/Sent/2024") == "=user/" + layout.hashdir("joe") + "=joe/=Sent/=2024/"
    assert layout.relpath("shared/news") == "=shared/=news/"


@pytest.mark.parametrize("name", ["user/joe/INBOX", "user/joe/Sent/2024", "shared/news", "user/ü/Ärger"])
def test_relpath_round_trips(name):
    assert layout.name_from_relpath(layout.relpath(name)) == name


def test_hashdir_command(cli):
    r = cli("hashdir", "joe")
    assert r.code == 0 and r.out.strip() == layout.hashdir("joe")
    h = r.out.strip()
    assert len(h.split("/")) == 3 and all(len(p) == 2 for p in h.split("/")[:2])
    r = cli("hashdir", "-a", "joe")
    assert r.out.strip() == f"=user/{h}=joe/"
    assert cli("hashdir", "a/b").code == 16


def test_symlink_inside_spool_is_not_followed(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    part = store.layout.partition_path("primary")
    os.makedirs(os.path.join(part, "=user", *layout.hashdir("eve").strip("/").split("/")))
    os.symlink(outside, os.path.join(part, layout.relpath("user/eve").rstrip("/")))
    with pytest.raises(Exception, match="symlink"):
        store.create("user/eve")
    assert os.listdir(outside) == []
    store.create("user/bob")
    found = [n for n, _d in layout.walk_spool(part)]
    assert found == ["user/bob/INBOX"]


def test_commands_refuse_a_path_that_is_not_a_store(cli, tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file").write_text("x")
    for prog, args in (("mboxutil", ["-l"]), ("imcheck", ["-s"]), ("configutil", ["-l"]),
                       ("deliver", ["user/x"])):
        r = cli(prog, "--store-root", str(tmp_path / "junk"), *args, input=b"x")
        # deliver: EX_CONFIG (sysexits), a store root that is none is a configuration error
        assert r.code == (78 if prog == "deliver" else 8) and "not a message store" in r.err, r
    r = cli("deliver", "--store-root", str(tmp_path / "junk"), "--create", "user/x", input=b"x")
    assert r.code == 78 and "not empty" in r.err
    assert os.listdir(tmp_path / "junk") == ["file"]


def test_store_root_from_environment(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("MSGSTORE_ROOT", str(tmp_path / "env-store"))
    assert cli("mboxutil", "-c", "user/joe").code == 0
    assert os.path.isdir(tmp_path / "env-store" / "mboxlist")
