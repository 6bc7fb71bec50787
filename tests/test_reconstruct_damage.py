"""Every damage kind of fixtures/damage/cases.json, the way the anchors test:
build with the real code, damage at a known place, check twice (finds it,
changes nothing), repair, check clean, no temp files, message files intact."""

import hashlib
import json
import os

import pytest
from build_store import build
from conftest import ROOT, msg_hashes
from damage import damage

from store.fsutil import leftover_temp_files
from store.mailbox import Store

CASES = json.load(open(os.path.join(ROOT, "fixtures", "damage", "cases.json")))["cases"]


def tree_state(root):
    """Every file's bytes and mtime under the store (lock files aside)."""
    out = {}
    for d, _s, fs in os.walk(root):
        if os.sep + "lock" in d[len(root):] or "log" == os.path.basename(d):
            continue
        for f in fs:
            if f == "lock.mdb":
                continue
            p = os.path.join(d, f)
            st = os.stat(p)
            out[p] = (hashlib.sha1(open(p, "rb").read()).hexdigest(), st.st_mtime_ns)
    return out


def recon(cli, root, *args):
    r = cli("reconstruct", "--store-root", root, "--json", "-j", "1", *args)
    assert "Traceback" not in r.err, r.err
    return r.code, json.loads(r.out) if r.out.strip() else None, r


@pytest.fixture
def built(tmp_path):
    root = str(tmp_path / "store")
    build(root, users=2, folders=1, messages=6, seed=11)
    return root


@pytest.mark.parametrize("case", CASES, ids=[c["damage"] for c in CASES])
def test_damage_case(cli, built, case):
    root = built
    damage(root, case["damage"], case["mailbox"])
    hashes_after_damage = msg_hashes(root)
    state = tree_state(root)
    for _ in range(2):  # checking never repairs
        code, out, r = recon(cli, root, "-n", *case["check"])
        assert code == 4, r
        kinds = {f["kind"] for f in out["findings"]}
        assert set(case["find"]) <= kinds, (kinds, r.out)
        assert tree_state(root) == state, "a check changed the store"
    announced = sorted(f'{f["mailbox"]}: {f["kind"]}: {f["action"]}' for f in out["findings"])
    assert announced == case["plan"], announced
    code, repaired, r = recon(cli, root, *case["repair"])
    assert code == case["repair_exit"], r
    if case["repair"] == case["check"]:  # the repair takes exactly the announced actions
        seen = sorted((f["mailbox"], f["kind"], f["detail"]) for f in repaired["findings"])
        assert seen == sorted((f["mailbox"], f["kind"], f["detail"]) for f in out["findings"])
        for f in repaired["findings"]:
            assert f["applied"] == (not f["action"].startswith("would ")) and \
                f["applied"] == any(g["action"].startswith("would ") for g in out["findings"]
                                    if (g["kind"], g["detail"]) == (f["kind"], f["detail"])), f
        assert len(repaired["findings"]) == len(case["plan"])  # each finding reported once
    if case["check"][0] == "-m":  # quota usage follows a database rebuild
        recon(cli, root, "-q")
    code, out, r = recon(cli, root, "-n", *case["check"])
    assert code == 0, r.out
    code, out, r = recon(cli, root, "-n", "-r")
    assert code == 0, r.out
    code, out, r = recon(cli, root, "-n", "-q")  # the repair left quota usage right too
    assert code == 0, r.out
    assert leftover_temp_files(root) == []
    # message files: the same multiset, plus hard links a repair made (same bytes)
    after = msg_hashes(root)
    for h in hashes_after_damage:
        assert after.count(h) >= hashes_after_damage.count(h)
    assert set(after) == set(hashes_after_damage)


def test_a_repair_prints_each_finding_once_with_the_action_taken(cli, built):
    """A record without its file and a file without its record: two lines
    from -n (would ...), the same two from the repair (done), not four."""
    damage(built, "renamed_message_file", "user/user0000")
    check = cli("reconstruct", "--store-root", built, "-n", "-j", "1", "user/user0000")
    repair = cli("reconstruct", "--store-root", built, "-j", "1", "user/user0000")
    assert (check.code, repair.code) == (4, 1), (check, repair)
    said = [x for x in check.out.splitlines() if not x.startswith("reconstruct: ")]
    done = [x for x in repair.out.splitlines() if not x.startswith("reconstruct: ")]
    assert len(said) == len(done) == 2, (check.out, repair.out)
    assert said[0].endswith("-> would index 8.msg as uid 8") and done[0].endswith("-> indexed as uid 8")
    assert said[1].endswith("-> would drop record uid 3") and done[1].endswith("-> record uid 3 dropped")
    assert [x.rsplit(" -> ", 1)[0] for x in said] == [x.rsplit(" -> ", 1)[0] for x in done]


def test_the_engine_refuses_a_check_that_forces_a_rebuild(built):
    from store.errors import UsageError
    from store.reconstruct.runner import Options
    for bad in ({"force": True}, {"zero_index": True}, {"remove_exp": True}):
        with pytest.raises(UsageError, match="cannot go with"):
            Options(names=["user/user0000"], check_only=True, **bad)


def test_deleted_data_mdb_brings_back_everything(cli, built):
    root = built
    with Store.open(root) as s:
        s.set_acl("user/user0001/Sent", "bob", "lr")
        before = {i.name: (i.uidvalidity, i.acl, i.quotaroot) for i in s.list()}
        quotas = {q["root"]: (q["used_bytes"], q["used_messages"]) for q in s.quotas()}
    damage(root, "deleted_data_mdb", "user/user0000")
    code, out, r = recon(cli, root, "-m")
    assert code == 1, r
    code, out, r = recon(cli, root, "-q")
    assert (out["summary"]["mailboxes_checked"], out["summary"]["messages_checked"]) == (4, 24)
    with Store.open(root) as s:
        assert {i.name: (i.uidvalidity, i.acl, i.quotaroot) for i in s.list()} == before
        assert {q["root"]: (q["used_bytes"], q["used_messages"]) for q in s.quotas()} == quotas
        assert s.db.get("lright", "bob") == {"mailboxes": ["user/user0001/Sent"]}


def test_no_damage_leaves_index_files_byte_identical(cli, built):
    state = tree_state(built)
    assert recon(cli, built, "-n", "-r")[0] == 0
    assert tree_state(built) == state
    assert recon(cli, built, "-r")[0] == 0
    assert tree_state(built) == state
    assert recon(cli, built, "-m")[0] == 0
    assert recon(cli, built, "-q")[0] == 0
    assert recon(cli, built, "-l")[0] == 0
    assert {p: v for p, v in tree_state(built).items() if "mboxlist" not in p} == \
        {p: v for p, v in state.items() if "mboxlist" not in p}


def test_rebuild_keeps_flags_uidvalidity_and_never_reuses_uids(cli, built):
    from store import index
    with Store.open(built) as s:
        s.set_flags("user/user0000", 2, index.FLAG_FLAGGED | index.FLAG_SEEN)
        s.set_flags("user/user0000", 5, index.FLAG_DELETED)
        s.expunge("user/user0000")
        before = s.read("user/user0000")
    code, out, r = recon(cli, built, "-f", "user/user0000")
    assert code == 0, r
    with Store.open(built) as s:
        after = s.read("user/user0000")
        assert after.problems == []
        assert after.header.uidvalidity == before.header.uidvalidity
        assert after.header.uidnext == before.header.uidnext
        assert [(x.uid, x.flags, x.internaldate, x.guid) for x in after.records] == \
               [(x.uid, x.flags, x.internaldate, x.guid) for x in before.records]
        assert [x.uid for x in index.read_expunged(s.mailbox_dir("user/user0000"), "x")] == [5]
    # -e alone on a healthy mailbox: no rebuild, so nothing comes back (seed 003; on
    # 293311a it rebuilt and brought the expunged message back)
    code, out, r = recon(cli, built, "-e", "user/user0000")
    assert code == 0, r
    with Store.open(built) as s:
        assert [x.uid for x in s.read("user/user0000").records] == \
               [x.uid for x in before.records]
        assert [x.uid for x in index.read_expunged(s.mailbox_dir("user/user0000"), "x")] == [5]
    # -f -e: the expunged message comes back, under a new UID
    code, out, r = recon(cli, built, "-f", "-e", "user/user0000")
    with Store.open(built) as s:
        idx = s.read("user/user0000")
        assert len(idx.records) == len(before.records) + 1
        assert idx.records[-1].uid == before.header.uidnext
        assert s.message("user/user0000", idx.records[-1].uid) == s.message("user/user0000", 5)


def test_zero_index_rebuilds_from_files_keeping_uidvalidity(cli, built):
    with Store.open(built) as s:
        before = s.read("user/user0001/Sent")
    code, out, r = recon(cli, built, "-f", "-i", "user/user0001/Sent")
    assert code == 0, r
    with Store.open(built) as s:
        after = s.read("user/user0001/Sent")
    assert after.header.uidvalidity == before.header.uidvalidity
    assert [(x.uid, x.guid, x.size) for x in after.records] == \
           [(x.uid, x.guid, x.size) for x in before.records]


@pytest.mark.parametrize("args,msg", [
    (["-n", "-f", "-r"], "exclude"), (["-n", "-i", "-r"], "cannot go with -n"),
    (["-u", "joe", "-m"], "needs -p"), (["-m", "-q"], "one of"), ([], "one of"),
    (["-m", "-f"], "not with -m"),
])
def test_forbidden_combinations(cli, built, args, msg):
    code, _out, r = recon(cli, built, *args)
    assert code == 16 and msg in r.err, r


def test_refuses_m_while_stored_recovers(cli, built):
    with open(os.path.join(built, "config", "stored.state"), "w") as f:
        f.write(f"{os.getpid()} init\n")
    code, _o, r = recon(cli, built, "-m")
    assert code == 8 and "recovering" in r.err


def test_unknown_mailbox_is_operational_error(cli, built):
    code, _o, r = recon(cli, built, "user/nobody")
    assert code == 8 and "neither in the database nor in the spool" in r.err


def test_parallel_workers_give_the_same_result(cli, tmp_path):
    root = str(tmp_path / "big")
    build(root, users=6, folders=2, messages=5, seed=5)
    for mbox in ("user/user0001", "user/user0004/Sent"):
        damage(root, "bad_record_checksum", mbox)
    damage(root, "missing_message_file", "user/user0002")
    code, out, r = recon(cli, root, "-n", "-r", "-j", "2")
    assert code == 4
    n_serial = recon(cli, root, "-n", "-r", "-j", "1")[1]
    assert sorted(map(json.dumps, out["findings"])) == sorted(map(json.dumps, n_serial["findings"]))
    code, out, r = recon(cli, root, "-r", "-j", "2")
    assert code == 1 and out["summary"]["mailboxes_rebuilt"] == 3
    assert recon(cli, root, "-n", "-r", "-j", "2")[0] == 0


def test_rebuild_adjusts_usage_by_what_it_changed_while_deliveries_count_theirs(cli, built):
    """A rebuild's usage change is a delta: a delivery between the rebuild
    and the database update is neither lost nor counted twice."""
    root = built
    name = "user/user0000"
    damage(root, "missing_message_file", name)
    from store.reconstruct import runner
    real_apply = runner._apply_db

    def deliver_first(store, results, opts):
        store.append(name, b"Subject: arrives mid-run\n\nhello\n")
        return real_apply(store, results, opts)

    runner._apply_db = deliver_first
    try:
        with Store.open(root) as s:
            runner.reconstruct_mailboxes(s, runner.Options(names=[name]))
    finally:
        runner._apply_db = real_apply
    code, out, r = recon(cli, root, "-n", "-q")
    assert code == 0, r.out


@pytest.mark.parametrize("where", ["start_offset", "uidvalidity", "truncated"])
def test_records_after_a_damaged_header_keep_their_flags(cli, built, where):
    """Each record has its own checksum: with the header unreadable, the
    records that verify still carry flags, internal dates, modseqs, GUIDs."""
    import struct

    from store import index
    name = "user/user0001/Sent"
    with Store.open(built) as s:
        s.set_flags(name, 2, index.FLAG_FLAGGED | index.FLAG_SEEN)
        before = s.read(name)
        mdir = s.mailbox_dir(name)
    keep = [(r.uid, r.flags, r.internaldate, r.modseq, r.guid) for r in before.records]
    assert len({k[1] for k in keep}) > 1  # flags differ between messages
    path = os.path.join(mdir, index.IDX_FILE)
    with open(path, "r+b") as f:
        if where == "start_offset":
            f.seek(16)
            f.write(struct.pack("<Q", 10**9))
        elif where == "uidvalidity":
            f.seek(40)
            f.write(b"\xff\xff\xff\x7f")
        else:
            f.truncate(60)
    code, out, r = recon(cli, built, name)
    assert code == 1, r.out
    with Store.open(built) as s:
        after = s.read(name)
    assert after.problems == []
    got = [(r.uid, r.flags, r.internaldate, r.modseq, r.guid) for r in after.records]
    if where == "truncated":  # nothing after the header survives: flags are gone
        assert [g[0] for g in got] == [k[0] for k in keep]
        assert all(g[1] == 0 for g in got)
    else:
        assert got == keep
        assert "records-salvaged" in {f["kind"] for f in out["findings"]}
        assert after.header.highest_modseq >= max(k[3] for k in keep)
    assert after.header.uidvalidity == before.header.uidvalidity  # from the database
    assert recon(cli, built, "-n", name)[0] == 0


def test_rebuild_with_a_corrupt_quota_value_recounts_that_root(cli, built):
    """The delta needs the old usage; when its value fails its checksum the
    root is recounted instead (and the rebuild does not stop)."""
    from store.db.envelope import encode_value
    root_name = "user/user0000"
    damage(built, "missing_message_file", root_name)
    with Store.open(built) as s:
        raw = bytearray(encode_value(s.db.get("quota", root_name)))
        raw[-3] ^= 0x01
        s.db.write(lambda t: t.txn.put(root_name.encode(), bytes(raw), db=s.db.dbs["quota"]))
    code, out, r = recon(cli, built, "-r")
    assert code == 1, r.out + r.err
    code, out, r = recon(cli, built, "-n", "-q")
    assert code == 0, r.out


def test_G_finds_content_that_no_longer_matches_its_guid_and_never_reuses_the_uid(cli, tmp_path):
    """Issue 11, item 11: a byte changed in place keeps the file's size, so
    only -G sees it; the repair keeps the file, indexes it under a new UID
    and expunges the old one."""
    from store.mailbox import Store, message_path
    root = str(tmp_path / "store")
    build(root, users=1, folders=0, messages=3, seed=4)
    with Store.open(root) as s:
        mdir = s.mailbox_dir("user/user0000")
        before = {r.uid: r for r in s.read("user/user0000").records}
    path = message_path(mdir, 2)
    data = bytearray(open(path, "rb").read())
    data[-2] ^= 0x20
    open(path, "wb").write(bytes(data))
    ino = os.stat(path).st_ino
    assert cli("reconstruct", "--store-root", root, "-n", "-r").code == 0  # unseen without -G
    for _ in range(2):  # checking never repairs
        r = cli("reconstruct", "--store-root", root, "-n", "-G", "-r")
        assert r.code == 4, r
        assert "user/user0000/INBOX: message file" in r.out and \
            "-> would keep the file, index it as uid 4 and expunge uid 2" in r.out
    r = cli("reconstruct", "--store-root", root, "-G", "-r")
    assert r.code == 1 and "-> indexed as uid 4, uid 2 expunged" in r.out, r
    assert cli("reconstruct", "--store-root", root, "-n", "-G", "-r").code == 0
    assert cli("reconstruct", "--store-root", root, "-n", "-m").code == 0
    with Store.open(root) as s:
        recs = {r.uid: r for r in s.read("user/user0000").records}
        assert sorted(recs) == [1, 3, 4]
        for u in (1, 3):  # kept: the same message, flags and dates (the cache is rewritten)
            assert recs[u]._replace(cache_offset=0) == before[u]._replace(cache_offset=0)
        assert s.message("user/user0000", 4) == bytes(data)
        assert recs[4].flags == before[2].flags
        from store import index
        assert [e.uid for e in index.read_expunged(mdir, "user/user0000/INBOX")] == [2]
    assert os.stat(path).st_ino == ino and open(path, "rb").read() == bytes(data)
