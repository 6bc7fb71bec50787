"""imexpire: Sun's expiry rules (store.expirerule files and the store.expirerule.*
settings), their scopes, the actions, a dry run, bad rules, and kills mid-run."""

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import ROOT, crash_at

from store import index
from store.mailbox.expire import run
from store.mailbox.expirerules import RULE_FILE

DAY = 86400
NOW = int(time.time())


def msg(n, subject=None, size=0):
    subject = subject or f"message {n}"
    return (f"From: a@example.com\nSubject: {subject}\nMessage-ID: <{n}@x>\n\n"
            f"body {n}\n" + "x" * size).encode()


def put(store, name, n, *, days_old, flags=0, subject=None, size=0):
    """n messages arrived `days_old` days ago; their UIDs."""
    if not store.exists(name):
        store.create(name)
    return store.append_many(name, [msg(f"{name}-{days_old}-{i}-{time.monotonic_ns()}", subject,
                                        size) for i in range(n)],
                             flags=flags, internaldate=NOW - days_old * DAY)


def uids(store, name):
    return [r.uid for r in store.read(name).records]


def rules(store, text, where=None):
    d = where or store.layout.config_dir
    with open(os.path.join(d, RULE_FILE), "w") as f:
        f.write(text)


def expire(store, **kw):
    return {r.mailbox: r for r in run(store, NOW, **kw)}


def test_age_rule_expunges_into_store_exp_and_lowers_quota_usage(store):
    store.create("user/joe")
    store.set_quota("user/joe", 10 ** 9)
    old = put(store, "user/joe/Trash", 3, days_old=40)
    new = put(store, "user/joe/Trash", 2, days_old=5)
    inbox_old = put(store, "user/joe", 2, days_old=400)
    rules(store, "Trash.folderpattern: user/%/Trash\nTrash.messagedays: 30\n")
    used = store.quotas("user/joe")[0]["used_bytes"]
    uidnext = store.header("user/joe/Trash").uidnext
    out = expire(store)
    assert out["user/joe/Trash"].discarded == old
    assert "user/joe/INBOX" not in out
    assert uids(store, "user/joe/Trash") == new
    assert uids(store, "user/joe") == inbox_old
    mdir = store.mailbox_dir("user/joe/Trash")
    assert [r.uid for r in index.read_expunged(mdir, "user/joe/Trash")] == old
    assert store.header("user/joe/Trash").uidnext == uidnext  # UIDs never reused
    assert store.quotas("user/joe")[0]["used_bytes"] < used
    assert expire(store) == {}  # nothing twice


def test_count_and_folder_size_keep_the_newest(store):
    a = put(store, "user/joe/A", 5, days_old=3)
    b = put(store, "user/joe/B", 4, days_old=3, size=1000)
    size_b = [r.size for r in store.read("user/joe/B").records]
    rules(store, "Count.folderpattern: user/joe/A\nCount.messagecount: 2\n"
                 f"Size.folderpattern: user/joe/B\nSize.foldersize: {sum(size_b[:2]) + 10}\n")
    expire(store)
    assert uids(store, "user/joe/A") == a[-2:]
    assert uids(store, "user/joe/B") == b[-2:]


def test_message_size_waits_for_its_grace_days(store):
    big_old = put(store, "user/joe", 1, days_old=10, size=5000)
    big_new = put(store, "user/joe", 1, days_old=1, size=5000)
    small_old = put(store, "user/joe", 1, days_old=10)
    rules(store, "Big.folderpattern: user/*\nBig.messagesize: 4000\nBig.messagesizedays: 7\n")
    out = expire(store)
    assert out["user/joe/INBOX"].discarded == big_old
    assert uids(store, "user/joe") == big_new + small_old


def test_seen_and_deleted_flags_and_or(store):
    seen_old = put(store, "user/joe/A", 1, days_old=50, flags=index.FLAG_SEEN)
    unseen_old = put(store, "user/joe/A", 1, days_old=50)
    deleted_new = put(store, "user/joe/A", 1, days_old=1, flags=index.FLAG_DELETED)
    seen_new = put(store, "user/joe/A", 1, days_old=1, flags=index.FLAG_SEEN)
    rules(store, "R.folderpattern: user/joe/A\nR.messagedays: 30\nR.seen: and\nR.deleted: or\n")
    out = expire(store)
    assert sorted(out["user/joe/A"].discarded) == sorted(seen_old + deleted_new)
    assert uids(store, "user/joe/A") == unseen_old + seen_new


def test_header_rules_glob_or_substring_and_rfc2047(store):
    spam = put(store, "user/joe", 1, days_old=0, subject="Cheap On-line Casino now")
    work = put(store, "user/joe", 1, days_old=0, subject="=?utf-8?q?Work_from_Home!?=")
    keep = put(store, "user/joe", 1, days_old=0, subject="lunch")
    rules(store, "H.folderpattern: user/*\nH.Subject: *on-line casino*\n"
                 "H.Subject: work from home\n")
    out = expire(store)
    assert sorted(out["user/joe/INBOX"].discarded) == sorted(spam + work)
    assert uids(store, "user/joe") == keep


def test_each_scope_partition_user_folder(store):
    layout = store.layout
    for who in ("joe", "ann"):
        put(store, f"user/{who}", 1, days_old=20)
        put(store, f"user/{who}/Lists", 1, days_old=20)
        put(store, f"user/{who}/Lists/sub", 1, days_old=20)
    put(store, "user/bob/Lists", 1, days_old=20)
    rules(store, "messagedays: 10\n", store.mailbox_dir("user/joe"))
    rules(store, "messagedays: 10\n", store.mailbox_dir("user/ann/Lists"))
    out = expire(store)
    # joe's file is in his INBOX directory: all his mailboxes; ann's in Lists: it and below
    assert sorted(out) == ["user/ann/Lists", "user/ann/Lists/sub", "user/joe/INBOX",
                           "user/joe/Lists", "user/joe/Lists/sub"]
    put(store, "user/bob/Lists", 1, days_old=20)
    rules(store, "Part.messagedays: 10\n", layout.partition_path("primary"))
    assert "user/bob/Lists" in expire(store)


def test_exclusive_rule_applies_alone_and_the_exclude_list(store):
    store.create("user/joe")
    put(store, "user/joe/Trash", 1, days_old=5)
    put(store, "user/ann/Trash", 1, days_old=5)
    put(store, "user/eve/Trash", 1, days_old=5)
    rules(store, "All.folderpattern: user/*\nAll.messagedays: 1\n")
    rules(store, "Keep.messagedays: 365\nKeep.exclusive: 1\n", store.mailbox_dir("user/joe"))
    with open(os.path.join(store.layout.config_dir, "expire_exclude_list"), "w") as f:
        f.write("# never expired\neve\n")
    out = expire(store)
    assert sorted(out) == ["user/ann/Trash"]


def test_fileinto_moves_with_flags_keywords_and_dates_report_only_lists(store):
    old = put(store, "user/joe", 2, days_old=100, flags=index.FLAG_SEEN | index.FLAG_FLAGGED)
    store.store_flags("user/joe", old[:1], 0, ["$Important"], "add")
    rep = put(store, "user/joe/Lists", 1, days_old=100)
    rules(store, "Arch.folderpattern: user/%/INBOX\nArch.messagedays: 90\n"
                 "Arch.action: fileinto:Archive\n"
                 "Rep.folderpattern: user/%/Lists\nRep.messagedays: 90\nRep.action: report\n")
    out = expire(store)
    assert sorted(out["user/joe/INBOX"].filed["user/joe/Archive"]) == old
    assert out["user/joe/Lists"].reported == rep
    assert uids(store, "user/joe/Lists") == rep  # reported, not changed
    assert uids(store, "user/joe") == []
    arch = store.read("user/joe/Archive")
    assert [r.internaldate for r in arch.records] == [NOW - 100 * DAY] * 2
    assert all(r.flags == index.FLAG_SEEN | index.FLAG_FLAGGED for r in arch.records)
    assert index.keyword_names(arch.header, arch.records[0].keywords) == ["$Important"]
    assert expire(store) == {"user/joe/Lists": out["user/joe/Lists"]}  # Archive is no INBOX


def test_settings_make_the_global_rule_unless_the_file_exists(store, cli):
    put(store, "user/joe/Trash", 1, days_old=20)
    root = store.layout.root
    store.close()  # the commands open it
    assert cli("configutil", "--store-root", root, "-o", "store.expirerule.folderpattern",
               "-v", "user/%/Trash").code == 0
    assert cli("configutil", "--store-root", root, "-o", "store.expirerule.messagedays",
               "-v", "30").code == 0
    r = cli("imexpire", "--store-root", root, "-n")
    assert r.code == 0 and "would discard" not in r.out, r
    assert cli("configutil", "--store-root", root, "-o", "store.expirerule.messagedays",
               "-v", "10").code == 0
    r = cli("imexpire", "--store-root", root, "-n")
    assert r.code == 0 and "would discard user/joe/Trash" in r.out, r
    rules(store, "Other.folderpattern: user/%/Nothing\nOther.messagedays: 1\n")
    assert "would discard" not in cli("imexpire", "--store-root", root, "-n").out


def test_dry_run_changes_nothing_and_prints_sun_report_lines(store, cli):
    old = put(store, "user/joe/Trash", 2, days_old=40)
    rules(store, "T.folderpattern: user/*/Trash\nT.messagedays: 30\n")
    mdir = store.mailbox_dir("user/joe/Trash")
    before = {f: open(os.path.join(mdir, f), "rb").read() for f in os.listdir(mdir)
              if os.path.isfile(os.path.join(mdir, f))}
    store.close()
    r = cli("imexpire", "--store-root", store.layout.root, "-n")
    v = store.header("user/joe/Trash").uidvalidity
    store.close()
    assert r.code == 0 and r.out.splitlines() == [
        f"would discard user/joe/Trash {v} {u}" for u in old], r
    after = {f: open(os.path.join(mdir, f), "rb").read() for f in os.listdir(mdir)
             if os.path.isfile(os.path.join(mdir, f))}
    assert after == before
    store.close()
    j = json.loads(cli("imexpire", "--store-root", store.layout.root, "-n", "--json").out)
    assert j["dry_run"] and j["mailboxes"][0]["discarded"] == old


@pytest.mark.parametrize("text,where", [
    ("R.folderpattern: user/*\nR.messagday: 3\n", ":2: unknown attribute 'messagday'"),
    ("R.messagedays: soon\n", ":1: messagedays: 'soon' is not a whole number"),
    ("R.seen: maybe\n", ":1: seen: 'maybe' is not `and` or `or`"),
    ("R.messagedays: 3\nR.action: shred\n", ":2: action: 'shred'"),
    ("messagedays: 3\n", ":1: 'messagedays' needs a rule name"),
    ("R.regexp: 1\nR.folderpattern: user/(\nR.messagedays: 1\n", "is not a regular expression"),
    ("R.folderpattern: user/*\n", "has no criterion"),
])
def test_a_bad_rule_is_one_line_naming_file_and_line(store, cli, text, where):
    put(store, "user/joe", 1, days_old=400)
    rules(store, text)
    store.close()
    r = cli("imexpire", "--store-root", store.layout.root)
    assert r.code == 16, r
    assert len(r.err.strip().splitlines()) == 1 and RULE_FILE in r.err and where in r.err, r
    assert len(uids(store, "user/joe")) == 1


def _cmd(*args):
    return [sys.executable, "-c", "from store.cli.imexpire import main; main()", *args]


def _guids(store, *names):
    return sorted(r.guid for n in names if store.exists(n) for r in store.read(n).records)


@pytest.mark.parametrize("point", ["expunge:after-exp", "expunge:after-index",
                                   "move:after-journal", "move:after-copy", "move:after-expunge"])
def test_a_kill_mid_run_then_a_rerun_expires_each_message_once(store, point):
    root = store.layout.root
    gone = put(store, "user/joe/Trash", 3, days_old=40)
    put(store, "user/joe/Trash", 1, days_old=1)
    put(store, "user/joe", 3, days_old=100)
    put(store, "user/joe/Archive", 1, days_old=1)
    before = _guids(store, "user/joe", "user/joe/Archive")
    rules(store, "T.folderpattern: user/%/Trash\nT.messagedays: 30\n"
                 "A.folderpattern: user/%/INBOX\nA.messagedays: 90\nA.action: fileinto:Archive\n")
    store.close()
    crash_at(point, _cmd("--store-root", root))
    r = subprocess.run(_cmd("--store-root", root), capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(_cmd("--store-root", root), capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout == "", r  # nothing left to expire
    assert len(uids(store, "user/joe/Trash")) == 1
    exp = index.read_expunged(store.mailbox_dir("user/joe/Trash"), "user/joe/Trash")
    assert sorted(r.uid for r in exp) == gone
    assert uids(store, "user/joe") == []
    assert _guids(store, "user/joe", "user/joe/Archive") == before  # each once, none lost
    check = subprocess.run([sys.executable, "-m", "store.cli.reconstruct", "--store-root", root,
                            "-r", "-n", "user/joe"], capture_output=True, text=True, cwd=ROOT)
    assert check.returncode == 0, check.stdout + check.stderr


def test_stored_expires_by_the_rules_then_erases_and_logs_a_bad_rule(store, caplog):
    from store.daemon.daemon import Daemon
    root = store.layout.root
    old = put(store, "user/joe/Trash", 2, days_old=40)
    keep = put(store, "user/joe/Trash", 1, days_old=1)
    rules(store, "T.folderpattern: user/%/Trash\nT.messagedays: 30\n")
    mdir = store.mailbox_dir("user/joe/Trash")
    store.close()
    d = Daemon(root)
    d.start()
    try:
        d.job_expire(NOW)
        assert uids(d.store, "user/joe/Trash") == keep
        assert index.read_expunged(mdir, "user/joe/Trash") == []  # erased the same run
        assert not any(os.path.exists(os.path.join(mdir, "00", f"{u}.msg")) for u in old)
        rules(store, "T.messagedays: soon\n")
        put(d.store, "user/joe/Trash", 1, days_old=40)
        d.job_expire(NOW)
        assert len(uids(d.store, "user/joe/Trash")) == 2
        assert any("expire-rules-bad" in r.getMessage() or "Expiry rules not applied"
                   in r.getMessage() for r in caplog.records)
    finally:
        d.shutdown()


def _mbox(*args):
    return [sys.executable, "-c", "from store.cli.mboxutil import main; main()", *args]


@pytest.mark.parametrize("point", ["move:after-journal", "move:after-copy", "move:after-expunge"])
def test_mboxutil_move_is_whole_on_a_kill_and_keeps_flags_and_dates(store, point):
    root = store.layout.root
    a = put(store, "user/joe", 3, days_old=9, flags=index.FLAG_ANSWERED)
    put(store, "user/joe", 1, days_old=2)
    store.create("user/joe/Archive")
    before = _guids(store, "user/joe", "user/joe/Archive")
    store.close()
    crash_at(point, _mbox("--store-root", root, "--move", "user/joe", "user/joe/Archive",
                          f"{a[0]}:{a[-1]}"))
    r = subprocess.run(_mbox("--store-root", root, "--move", "user/joe", "user/joe/Archive",
                             f"{a[0]}:{a[-1]}"), capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert _guids(store, "user/joe", "user/joe/Archive") == before
    assert len(uids(store, "user/joe")) == 1
    arch = store.read("user/joe/Archive").records
    assert len(arch) == 3 and all(r.flags == index.FLAG_ANSWERED
                                  and r.internaldate == NOW - 9 * DAY for r in arch)


def test_mboxutil_move_refuses_bad_input_in_one_line(store, cli):
    put(store, "user/joe", 2, days_old=1)
    root = store.layout.root
    store.close()
    for args, code in [(("user/joe", "user/joe/Nope", "1:*"), 8),
                       (("user/joe", "user/joe", "1"), 16),
                       (("user/joe", "user/joe/Nope", "x:3"), 16),
                       (("user/joe", "user/joe/Nope", "0"), 16)]:
        r = cli("mboxutil", "--store-root", root, "--move", *args)
        assert r.code == code and len(r.err.strip().splitlines()) == 1, (args, r)
    assert cli("mboxutil", "--store-root", root, "-c", "user/joe/A").code == 0
    r = cli("mboxutil", "--store-root", root, "--move", "user/joe", "user/joe/A", "2:*", "--json")
    assert r.code == 0 and json.loads(r.out)["moved"] == [[2, 1]], r


def test_cleanupage_keeps_expunged_files_that_long_and_a_version_1_store_exp_reads(store):
    from store.daemon.daemon import Daemon
    a = put(store, "user/joe", 2, days_old=1, flags=index.FLAG_DELETED)
    store.expunge("user/joe")
    mdir = store.mailbox_dir("user/joe")
    exp = index.read_expunged(mdir, "user/joe")
    assert [r.uid for r in exp] == a and all(abs(r.cache_offset - time.time()) < 600 for r in exp)
    with open(os.path.join(mdir, index.EXP_FILE), "rb") as f:
        assert index.EXP_HEADER.unpack_from(f.read())[1] == 2
    store.layout.config.set("store.cleanupage", "48")
    root = store.layout.root
    store.close()
    d = Daemon(root)
    d.start()
    try:
        d.job_expire(time.time() + 47 * 3600)  # not yet: files and records stay
        assert [r.uid for r in index.read_expunged(mdir, "user/joe")] == a
        assert os.path.exists(os.path.join(mdir, "00", f"{a[0]}.msg"))
        d.job_expire(time.time() + 49 * 3600)
        assert index.read_expunged(mdir, "user/joe") == []
        assert not os.path.exists(os.path.join(mdir, "00", f"{a[0]}.msg"))
    finally:
        d.shutdown()
    # a store.exp written before the expunge time was kept: read as expunged long ago
    rec = index.Record(7, 0, 1, 1, 10, 5, 3, 12345, 9, b"\0" * 32)
    with open(os.path.join(mdir, index.EXP_FILE), "wb") as f:
        f.write(index.EXP_HEADER.pack(index.EXP_MAGIC, 1, index.RECORD.size, b"\0" * 4)
                + rec.pack())
    assert index.read_expunged(mdir, "user/joe") == [rec._replace(cache_len=0, cache_offset=0)]
