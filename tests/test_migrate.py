"""imsimport and imsexport: Maildir (flags, dovecot-keywords, dovecot-uidlist,
Maildir++ and fs folders), mbox (status headers, From-line dates, mboxrd
escaping), idempotent re-runs, -n, quota, a kill -9 mid-import, and the
round trip Maildir -> imsimport -> imsexport -> imsimport on real mail."""

import hashlib
import json
import os
import random
import subprocess
import sys

import pytest
from conftest import corpus, crash_at

from store import index
from store.mailbox import Incoming, Store


def write(path, data, mtime=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def msg(n, extra=b""):
    return b"From: a@example.com\nSubject: message %d\n%s\nbody %d\nFrom the start\n" % (n, extra, n)


@pytest.fixture
def dovecot_maildir(tmp_path):
    """A Dovecot Maildir: flags, keywords, UIDs, a Maildir++ folder."""
    top = tmp_path / "Maildir"
    for d in ("cur", "new", "tmp"):
        os.makedirs(top / d)
    write(str(top / "cur" / "1700000000.M1P1.host,S=10:2,FRS"), msg(1), mtime=1600000000)
    write(str(top / "cur" / "1700000100.M2P1.host:2,Sab"), msg(2), mtime=1800000000)
    write(str(top / "new" / "1700000200.M3P1.host"), msg(3), mtime=1800000000)
    write(str(top / "cur" / "1700000300.M4P1.host:2,P"), msg(4), mtime=1800000000)
    (top / "dovecot-keywords").write_text("0 $Junk\n1 project-x\n")
    (top / "dovecot-uidlist").write_text(
        "3 V1234567 N50 Gabc\n7 :1700000000.M1P1.host,S=10\n12 W99 :1700000100.M2P1.host\n"
        "30 :1700000200.M3P1.host\n31 :1700000300.M4P1.host\n")
    write(str(top / ".Lists.dev" / "cur" / "1700000400.M5P1.host:2,T"), msg(5), mtime=1800000000)
    write(str(top / ".Entw&APw-rfe" / "new" / "1700000500.M6P1.host"), msg(6), mtime=1800000000)
    return str(top)


def cmd(cli, store, *args):
    store.close()  # one LMDB handle per process: the command opens its own
    return cli(*args)


def mailbox_state(store, name):
    """(uid, sha256 of bytes, flags, keywords, INTERNALDATE) of every message."""
    idx = store.read(name)
    reader = store.message_reader(name)
    return [(r.uid, hashlib.sha256(reader.read(r.uid)).hexdigest(), r.flags,
             sorted(index.keyword_names(idx.header, r.keywords)), r.internaldate)
            for r in idx.records]


def test_dovecot_maildir_keeps_flags_keywords_dates_and_uids(cli, root, store, dovecot_maildir):
    store.create("user/joe")
    r = cmd(cli, store, "imsimport", "--store-root", root, "--json", dovecot_maildir, "user/joe")
    assert r.code == 0, r
    summary = json.loads(r.out)
    assert summary["format"] == "maildir" and summary["totals"]["imported"] == 6
    state = mailbox_state(store, "user/joe")
    assert [s[0] for s in state] == [7, 12, 30, 31]
    h = store.header("user/joe")
    assert h.uidvalidity == 1234567 and h.uidnext == 50
    assert store.entry("user/joe").uidvalidity == 1234567
    F = index
    assert [s[2] for s in state] == [F.FLAG_FLAGGED | F.FLAG_ANSWERED | F.FLAG_SEEN,
                                     F.FLAG_SEEN, 0, 0]
    assert [s[3] for s in state] == [[], ["$Junk", "project-x"], [], ["$Forwarded"]]
    # the earlier of mtime and the name's time
    assert [s[4] for s in state] == [1600000000, 1700000100, 1700000200, 1700000300]
    assert store.message("user/joe", 7) == msg(1)
    dev = mailbox_state(store, "user/joe/Lists/dev")
    assert len(dev) == 1 and dev[0][2] == F.FLAG_DELETED
    assert store.exists("user/joe/Entwürfe")
    # again: nothing new, nothing doubled
    r = cmd(cli, store, "imsimport", "--store-root", root, "--json", dovecot_maildir, "user/joe")
    again = json.loads(r.out)["totals"]
    assert (again["imported"], again["skipped"]) == (0, 6)
    assert mailbox_state(store, "user/joe") == state


def test_uids_are_not_kept_in_a_mailbox_that_held_mail(cli, root, store, dovecot_maildir):
    store.create("user/joe")
    store.append("user/joe", b"Subject: there before\n\nx\n")
    assert cmd(cli, store, "imsimport", "--store-root", root, dovecot_maildir, "user/joe").code == 0
    assert [s[0] for s in mailbox_state(store, "user/joe")] == [1, 2, 3, 4, 5]
    assert store.header("user/joe").uidvalidity != 1234567


def test_dry_run_changes_nothing(cli, root, store, dovecot_maildir):
    store.create("user/joe")
    before = mailbox_state(store, "user/joe")
    r = cmd(cli, store, "imsimport", "--store-root", root, "-n", dovecot_maildir, "user/joe")
    assert r.code == 0 and "would import 6 of 6" in r.out, r
    assert mailbox_state(store, "user/joe") == before
    assert not store.exists("user/joe/Lists/dev")


def test_mbox_status_headers_dates_and_escaping(cli, root, store, tmp_path):
    box = tmp_path / "mbox"
    box.write_bytes(
        b"From joe@example.com Thu Nov 29 12:00:00 2001\n"
        b"Status: RO\nX-Status: AF\nX-Keywords: $Junk work\nSubject: one\n\n"
        b">From the start\n>>From twice\nplain\n\n"
        b"From MAILER-DAEMON Fri Nov 30 13:30:00 2001\nSubject: two\n\nbody\n")
    store.create("user/joe")
    assert cmd(cli, store, "imsimport", "--store-root", root, str(box), "user/joe").code == 0
    state = mailbox_state(store, "user/joe")
    assert store.message("user/joe", 1) == (b"Subject: one\n\nFrom the start\n>From twice\n"
                                            b"plain\n")
    assert state[0][2] == index.FLAG_SEEN | index.FLAG_ANSWERED | index.FLAG_FLAGGED
    assert state[0][3] == ["$Junk", "work"]
    assert [s[4] for s in state] == [1007035200, 1007127000]
    # exported as mboxrd and imported again: the same bytes, flags, keywords, dates
    out = tmp_path / "out.mbox"
    assert cmd(cli, store, "imsexport", "--store-root", root, "--format", "mbox", "user/joe",
               str(out)).code == 0
    assert b"X-Status: AF\n" in out.read_bytes() and b">>From the start" not in out.read_bytes()
    store.create("user/ann")
    assert cmd(cli, store, "imsimport", "--store-root", root, str(out), "user/ann").code == 0
    assert [s[1:] for s in mailbox_state(store, "user/ann")] == [s[1:] for s in state]


def test_quota_is_respected_unless_overridden(cli, root, store, dovecot_maildir):
    store.create("user/joe")
    store.set_quota("user/joe", 100)
    r = cmd(cli, store, "imsimport", "--store-root", root, dovecot_maildir, "user/joe")
    assert r.code == 8 and "over quota" in r.err and "--ignore-quota" in r.err, r
    assert len(r.err.strip().splitlines()) == 1
    assert store.header("user/joe").exists == 0
    r = cmd(cli, store, "imsimport", "--store-root", root, "--ignore-quota", dovecot_maildir, "user/joe")
    assert r.code == 0, r
    assert store.header("user/joe").exists == 4


@pytest.mark.parametrize("source,words", [("/nonexistent/x", "no such file"),
                                          ("/etc/hostname", "not an mbox")])
def test_bad_sources_are_one_line_usage_errors(cli, root, store, source, words):
    store.create("user/joe")
    r = cmd(cli, store, "imsimport", "--store-root", root, source, "user/joe")
    assert r.code == 16 and words in r.err and len(r.err.strip().splitlines()) == 1, r


def test_export_refuses_to_overwrite(cli, root, store, tmp_path):
    store.create("user/joe")
    (tmp_path / "x").write_text("keep me")
    r = cmd(cli, store, "imsexport", "--store-root", root, "--format", "mbox", "user/joe",
            str(tmp_path / "x"))
    assert r.code == 16 and "exists" in r.err
    assert (tmp_path / "x").read_text() == "keep me"


def test_round_trip_on_real_maildir(cli, root, store, tmp_path):
    """notmuch's Maildir (nested folders): imsimport, flags and keywords set,
    imsexport, imsimport into another user: the same messages, flags,
    keywords, dates and UIDs in every folder."""
    src = corpus("notmuch", "default")
    assert cmd(cli, store, "imsimport", "--store-root", root, src, "user/joe").code == 0
    names = sorted(i.name for i in store.list("user/joe/*"))
    assert names == ["user/joe/INBOX", "user/joe/bar", "user/joe/bar/baz", "user/joe/foo",
                     "user/joe/foo/baz"]
    uids = [r.uid for r in store.read("user/joe").records]
    store.store_flags("user/joe", uids[::3], index.FLAG_SEEN | index.FLAG_ANSWERED, [], "add")
    store.store_flags("user/joe", uids[1::4], 0, ["$Label1", "todo"], "add")
    store.store_flags("user/joe/foo", [1], index.FLAG_DRAFT, ["$Forwarded"], "add")
    out = tmp_path / "export"
    assert cmd(cli, store, "imsexport", "--store-root", root, "user/joe", str(out)).code == 0
    assert cmd(cli, store, "imsimport", "--store-root", root, str(out), "user/ann").code == 0
    for name in names:
        other = name.replace("user/joe", "user/ann")
        assert mailbox_state(store, other) == mailbox_state(store, name), name
    assert store.header("user/ann").uidvalidity == store.header("user/joe").uidvalidity


def _big_maildir(path, n):
    for d in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    for i in range(n):
        write(os.path.join(path, "cur", f"{1700000000 + i}.M{i}P1.h:2,S"), msg(i, b"X: %s\n"
              % (b"y" * random.randrange(2000))))


@pytest.mark.parametrize("points", [["append:after-file-sync@2", "append:after-records@1",
                                     "append:after-header@1"],
                                    ["import:before-uidnext"]])
def test_killed_import_finishes_when_run_again(root, store, tmp_path, points):
    """An import stopped at named steps (store/crash.py: as a kill -9 there),
    each stop in the run after the last; run again, it finishes: every
    message of the source exactly once (by content), none twice."""
    src = str(tmp_path / "big")
    _big_maildir(src, 1200)
    want = sorted(hashlib.sha256(open(os.path.join(src, "cur", f), "rb").read()).hexdigest()
                  for f in os.listdir(os.path.join(src, "cur")))
    store.create("user/joe")
    store.close()
    cmd = [sys.executable, "-c", "from store.cli.imsimport import main; main()",
           "--store-root", root, src, "user/joe"]
    for point in points:
        crash_at(point, cmd)
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    with Store.open(root) as s:
        got = sorted(h for _uid, h, *_ in mailbox_state(s, "user/joe"))
        mdir = s.mailbox_dir("user/joe")
    assert got == want
    # a message file a kill left without its record was taken up by the next run:
    # none is left for reconstruct to adopt as a second copy
    files = [f for _d, _s, fs in os.walk(mdir) for f in fs if f.endswith(".msg")]
    assert len(files) == len(want)


def test_the_same_message_twice_in_a_source_is_kept_twice(cli, root, store, tmp_path):
    """Two files with the same bytes and date are two messages (one message
    appended twice in a second): both come in, and once only on a re-run."""
    src = tmp_path / "Maildir"
    for n in ("1700000000.M1P1.h:2,S", "1700000000.M2P1.h:2,S", "1700000001.M3P1.h:2,"):
        write(str(src / "cur" / n), msg(1), mtime=1700000000)
    os.makedirs(src / "new")
    for _run in range(2):
        r = cmd(cli, store, "imsimport", "--store-root", root, str(src), "user/joe")
        assert r.code == 0, r
        assert len(mailbox_state(store, "user/joe")) == 3


def test_odd_folder_names_and_too_many_keywords_are_left_out_with_a_note(cli, root, store,
                                                                        tmp_path):
    src = tmp_path / "Maildir"
    os.makedirs(src / "new")
    (src / "dovecot-keywords").write_text("".join(f"{n} k{n}\n" for n in range(26)))
    write(str(src / "cur" / "1700000000.M1P1.h:2,abcdefghijklmnopqrstuvwxyz"), msg(1))
    write(str(src / ".bad\x01name" / "cur" / "1700000000.M9P1.h:2,"), msg(9))
    store.create("user/joe")  # 20 keywords already: room for 12 more
    store.append_incoming("user/joe", [Incoming(msg(99), 0, tuple(f"x{j}" for j in range(20)))])
    r = cmd(cli, store, "imsimport", "--store-root", root, "--json", str(src), "user/joe")
    assert r.code == 0, r
    notes = {f["mailbox"]: f["notes"] for f in json.loads(r.out)["folders"]}
    assert any("invalid mailbox name" in n for n in notes["-"]), notes
    assert any("14 more were left out" in n for n in notes["user/joe/INBOX"]), notes
    h = store.header("user/joe")
    assert h.keywords == [f"x{j}" for j in range(20)] + [f"k{j}" for j in range(12)]
    assert index.keyword_names(h, store.read("user/joe").records[1].keywords) == [
        f"k{j}" for j in range(12)]


def test_a_message_that_leaves_a_live_maildir_meanwhile_is_reported(root, store, tmp_path):
    """A file renamed (its flags changed by the old server) between the
    listing and the reading: the rest comes in, the summary says so, and a
    second run takes it."""
    from store.migrate import importer
    src = tmp_path / "Maildir"
    os.makedirs(src / "new")
    for i in range(3):
        write(str(src / "cur" / f"1700000000.M{i}P1.h:2,"), msg(i))
    store.create("user/joe")
    scanned = importer.scan(str(src))
    os.rename(src / "cur" / "1700000000.M1P1.h:2,", src / "cur" / "1700000000.M1P1.h:2,S")
    res = importer.run(store, str(src), "user/joe", scanned=scanned)
    assert res.folders[0].imported == 2 and res.folders[0].vanished == 1
    assert "run the import again" in res.folders[0].notes[0]
    again = importer.run(store, str(src), "user/joe")
    assert (again.folders[0].imported, again.folders[0].skipped) == (1, 2)
    assert mailbox_state(store, "user/joe")[2][2] == index.FLAG_SEEN


def test_internaldate_is_dovecots_mtime_unless_the_file_was_copied_without_its_times():
    """A delivery that named its file in one second and set the mtime in the next has the
    mtime in Dovecot (a loaded run showed it); a copy that lost its times, the name's."""
    import types

    from store.migrate.maildir import internaldate
    st = types.SimpleNamespace
    assert internaldate("1700000000.M1P1.host:2,S", st(st_mtime=1700000001.5)) == 1700000001
    assert internaldate("1700000000.M1P1.host:2,S", st(st_mtime=1800000000)) == 1700000000
    assert internaldate("1700000000.M1P1.host:2,S", st(st_mtime=1600000000)) == 1600000000
    assert internaldate("odd-name:2,S", st(st_mtime=1600000000)) == 1600000000
