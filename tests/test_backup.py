"""imsbackup and imsrestore: a user backed up, deleted and restored comes
back byte for byte with its flags, keywords, UIDs, UIDVALIDITY, ACLs,
quota limit and subscriptions; a backup cut off or damaged anywhere
restores every mailbox before the damage and says where; incremental
backups; a hot backup while mail arrives; pipes."""

import json
import os
import random
import subprocess
import sys
import time

import pytest
from conftest import crash_at
from test_imapd import imap  # noqa: F401 - the fixture: stored and imapd running, joe's password
from test_migrate import cmd, mailbox_state

from store import index
from store.mailbox import Store
from store.migrate import backup

NAMES = ["user/joe/INBOX", "user/joe/Archive", "user/joe/Lists/dev", "user/joe/Sent"]


def msg(i, size=0):
    return (b"From: x@example.com\r\nSubject: %d\r\n\r\n" % i) + b"b" * size + b"\r\n"


@pytest.fixture
def joe(store):
    """joe's mailboxes with mail, flags, keywords, an ACL, a quota limit
    and subscriptions."""
    for n in NAMES:
        store.create(n)
    rng = random.Random(7)
    for j, n in enumerate(NAMES):
        uids = store.append_many(n, [msg(100 * j + i, rng.randrange(3000)) for i in range(12)],
                                 internaldate=1700000000 + j)
        store.expunge(n, [])  # nothing
        store.store_flags(n, uids[::2], index.FLAG_SEEN, ["$Junk"], "add")
        store.store_flags(n, uids[1::5], index.FLAG_FLAGGED | index.FLAG_ANSWERED, ["work"],
                          "add")
        store.store_flags(n, uids[3:5], index.FLAG_DELETED, [], "add")
        store.expunge(n)  # UIDs with gaps
    store.set_acl("user/joe/Sent", "bob", "lr")
    sent = [r.uid for r in store.read("user/joe/Sent").records]
    store.set_seen("bob", "user/joe/Sent", store.header("user/joe/Sent").uidvalidity,
                   add=sent[1:4] + sent[-1:])
    store.set_quota("user/joe", 50_000_000)
    store.set_subscribed("joe", "user/joe/Sent", True)
    store.set_subscribed("joe", "user/joe/Lists/dev", True)
    return store


def snapshot(store):
    """Each mailbox: its messages, UIDVALIDITY, UIDNEXT, ACL and bob's \\Seen."""
    return {n: (mailbox_state(store, n), store.header(n).uidvalidity, store.header(n).uidnext,
                store.get_acl(n), store.seen("bob", n, store.header(n).uidvalidity))
            for n in NAMES}


def delete_user(store):
    for n in sorted(NAMES, key=len, reverse=True):
        store.delete(n)


def test_backup_delete_restore_gives_the_same_user(cli, root, joe, tmp_path):
    before = snapshot(joe)
    f = str(tmp_path / "joe.msb")
    r = cmd(cli, joe, "imsbackup", "--store-root", root, "-f", f, "user/joe")
    assert r.code == 0 and "of 4 mailboxes" in r.out, r
    delete_user(joe)
    assert not joe.exists("user/joe")
    r = cmd(cli, joe, "imsrestore", "--store-root", root, "-f", f, "--json")
    assert r.code == 0, r
    out = json.loads(r.out)
    assert all(m["uids_kept"] and m["complete"] and not m["remapped"] for m in out["mailboxes"])
    assert snapshot(joe) == before
    assert before["user/joe/Sent"][4].count() == 4  # bob's \Seen came back
    assert joe.quotas("user/joe")[0]["limit_bytes"] == 50_000_000
    assert sorted(joe.subscriptions("joe")) == ["user/joe/Lists/dev", "user/joe/Sent"]
    # again: nothing doubled, nothing changed
    r = cmd(cli, joe, "imsrestore", "--store-root", root, "-f", f, "--json")
    assert r.code == 0 and json.loads(r.out)["messages"] == 0
    assert snapshot(joe) == before


def test_restore_into_a_live_mailbox_reports_new_uids(cli, root, joe, tmp_path):
    f = str(tmp_path / "joe.msb")
    cmd(cli, joe, "imsbackup", "--store-root", root, "-f", f, "user/joe/Sent")
    joe.create("user/ann")
    joe.append("user/ann", b"Subject: ann's own\r\n\r\nx\r\n")
    r = cmd(cli, joe, "imsrestore", "--store-root", root, "-f", f, "--json", "--to",
            "user/ann", "user/joe/Sent")
    assert r.code == 0, r
    m = json.loads(r.out)["mailboxes"][0]
    assert m["target"] == "user/ann/INBOX" and not m["uids_kept"]
    sent = mailbox_state(joe, "user/joe/Sent")
    ann = mailbox_state(joe, "user/ann")
    assert [s[1:] for s in ann[1:]] == [s[1:] for s in sent]
    assert {int(k): v for k, v in m["remapped"].items()} == {
        s[0]: a[0] for s, a in zip(sent, ann[1:], strict=True)}


def frame_ends(data):
    """(kind, name, end offset) of each frame of a backup."""
    import io
    out, name = [], None
    for off, kind, value in backup.read_frames(io.BytesIO(data), "x", messages=False):
        if kind == backup.MBOX:
            name = value["name"]
        length = backup.FRAME.unpack_from(data, off)[1]
        out.append((kind, name, off + backup.FRAME.size + length))
    return out


def test_a_cut_off_backup_restores_every_mailbox_before_the_cut(cli, root, joe, tmp_path):
    before = snapshot(joe)
    f = tmp_path / "joe.msb"
    cmd(cli, joe, "imsbackup", "--store-root", root, "-f", str(f), "user/joe")
    data = f.read_bytes()
    ends = frame_ends(data)
    rng = random.Random(1515)
    cuts = sorted(rng.sample(range(1, len(data)), 12)) + [e for _k, _n, e in ends[:3]]
    for cut in cuts:
        other = str(tmp_path / f"store-{cut}")
        Store.init(other).close()
        part = tmp_path / "cut.msb"
        part.write_bytes(data[:cut])
        r = cli("imsrestore", "--store-root", other, "-f", str(part), "--json")
        assert r.code == 4, (cut, r)
        good = max([e for *_x, e in ends if e <= cut], default=0)
        assert f"damaged at offset {good}" in r.err, (cut, r.err)
        complete = {n for k, n, e in ends if k == backup.MEND and e <= cut}
        with Store.open(other) as s:
            for n in NAMES:
                if n in complete:
                    assert mailbox_state(s, n) == before[n][0], (cut, n)
                elif s.exists(n):  # the mailbox cut off: what came before the cut, in order
                    got = mailbox_state(s, n)
                    assert got == before[n][0][:len(got)], (cut, n)


def test_a_damaged_byte_is_found_and_reported_with_its_offset(cli, root, joe, tmp_path):
    f = tmp_path / "joe.msb"
    cmd(cli, joe, "imsbackup", "--store-root", root, "-f", str(f), "user/joe")
    data = bytearray(f.read_bytes())
    ends = frame_ends(bytes(data))
    mesg = [(i, e) for i, (k, _n, e) in enumerate(ends) if k == backup.MESG]
    i, end = mesg[len(mesg) // 2]
    start = ends[i - 1][2]
    data[end - 3] ^= 0x40  # inside that message's bytes
    f.write_bytes(bytes(data))
    other = str(tmp_path / "other")
    Store.init(other).close()
    r = cli("imsrestore", "--store-root", other, "-f", str(f))
    assert r.code == 4 and f"damaged at offset {start}" in r.err and "CRC" in r.err, r
    assert "Traceback" not in r.err
    with open(os.path.join(other, "log", "default")) as log:
        assert f"stopped at offset {start}: MESG frame fails its CRC" in log.read()


def test_incremental_backups_since_a_backup_and_since_a_date(cli, root, joe, tmp_path):
    full = str(tmp_path / "full.msb")
    cmd(cli, joe, "imsbackup", "--store-root", root, "-f", full, "user/joe")
    new = joe.append_many("user/joe/INBOX", [msg(900), msg(901)], internaldate=1800000000)
    first = joe.read("user/joe/Sent").records[0].uid
    joe.store_flags("user/joe/Sent", [first], index.FLAG_DRAFT, ["later"], "set")
    incr = str(tmp_path / "incr.msb")
    r = cmd(cli, joe, "imsbackup", "--store-root", root, "-f", incr, "--since-backup", full,
            "--json", "user/joe")
    assert r.code == 0 and json.loads(r.out)["messages"] == 3, r
    by_date = str(tmp_path / "date.msb")
    r = cmd(cli, joe, "imsbackup", "--store-root", root, "-f", by_date, "-d", "20270101",
            "--json", "user/joe")
    assert json.loads(r.out)["messages"] == len(new)
    after = snapshot(joe)
    other = str(tmp_path / "other")
    Store.init(other).close()
    assert cli("imsrestore", "--store-root", other, "-f", full).code == 0
    r = cli("imsrestore", "--store-root", other, "-f", incr, "--json")
    assert r.code == 0, r
    assert sum(m["updated"] for m in json.loads(r.out)["mailboxes"]) == 1
    with Store.open(other) as s:
        assert snapshot(s) == after


def test_bad_backups_and_arguments(cli, root, joe, tmp_path):
    (tmp_path / "junk").write_bytes(b"hello, this is not a backup at all")
    r = cmd(cli, joe, "imsrestore", "--store-root", root, "-f", str(tmp_path / "junk"))
    assert r.code == 4 and "not a backup" in r.err and "offset 0" in r.err, r
    r = cmd(cli, joe, "imsbackup", "--store-root", root, "-f", str(tmp_path / "junk"), "user/joe")
    assert r.code == 16 and "exists" in r.err
    r = cmd(cli, joe, "imsbackup", "--store-root", root, "-f", "-", "user/nobody")
    assert r.code == 8 and "does not exist" in r.err
    r = cmd(cli, joe, "imsbackup", "--store-root", root, "-f", "-", "-d", "yesterday", "/")
    assert r.code == 16 and "-d" in r.err
    r = cmd(cli, joe, "imsbackup", "--store-root", root, "-f", "-", "/nopart")
    assert r.code == 16 and "no partition" in r.err


def _tool(name):
    return [sys.executable, "-c", f"from store.cli.{name} import main; main()"]


def test_hot_backup_through_a_pipe_while_mail_arrives(root, joe, tmp_path):
    """imsbackup -f - | imsrestore -f - while another process delivers:
    each mailbox comes back as it was at one moment (its MBOX frame's UIDs
    are exactly the messages restored), every message whole."""
    joe.close()
    deliverer = subprocess.Popen([sys.executable, "-c", f"""
import itertools
from store.mailbox import Store
s = Store.open({root!r})
for i in itertools.count():
    s.append("user/joe/INBOX", b"Subject: hot %d\\r\\n\\r\\n" % i + b"z" * 5000)
"""])
    try:
        other = str(tmp_path / "other")
        Store.init(other).close()
        bak = subprocess.Popen(_tool("imsbackup") + ["--store-root", root, "-f", "-", "/"],
                               stdout=subprocess.PIPE)
        tee = tmp_path / "copy.msb"
        data = bak.stdout.read()
        assert bak.wait() == 0
        tee.write_bytes(data)
        res = subprocess.run(_tool("imsrestore") + ["--store-root", other, "-f", "-"],
                             input=data, capture_output=True)
        assert res.returncode == 0, res.stderr
    finally:
        deliverer.kill()
        deliverer.wait()
    import io
    uids = {v["name"]: v["uids"] for _o, k, v in backup.read_frames(io.BytesIO(data), "x",
                                                                     messages=False)
            if k == backup.MBOX}
    with Store.open(other) as s, Store.open(root) as live:
        for n in NAMES:
            got = mailbox_state(s, n)
            assert [g[0] for g in got] == uids[n]
            assert got == [m for m in mailbox_state(live, n) if m[0] in set(uids[n])], n
    assert os.listdir(tmp_path / "other")


@pytest.mark.parametrize("points", [["append:after-file-sync@2"],
                                    ["append:after-records@3", "append:after-header@1"],
                                    ["restore:before-finish@2"],
                                    ["restore:before-finish@3", "restore:before-finish@1"],
                                    ["append:after-header@3"]])
def test_a_killed_restore_finishes_when_run_again(root, joe, tmp_path, points):
    """imsrestore stopped at a named step (store/crash.py: as a kill -9 there),
    once or twice, then run again: the user as it was backed up, UIDs
    included, and no message file left over."""
    joe.append_many("user/joe/Archive", [msg(1000 + j, 200) for j in range(1100)])  # 3 batches
    before = snapshot(joe)
    f = str(tmp_path / "joe.msb")
    joe.close()
    assert subprocess.run(_tool("imsbackup") + ["--store-root", root, "-f", f, "user/joe"],
                          capture_output=True).returncode == 0
    other = str(tmp_path / "other")
    Store.init(other).close()
    cmd_ = _tool("imsrestore") + ["--store-root", other, "-f", f]
    for point in points:
        crash_at(point, cmd_)
    r = subprocess.run(cmd_ + ["--json"], capture_output=True)
    assert r.returncode == 0, r.stderr
    with Store.open(other) as s:
        assert snapshot(s) == before
        dirs = [s.mailbox_dir(n) for n in NAMES]
    for d in dirs:
        files = [x for x in os.listdir(d) if not x.isdigit()] + [
            x for b in os.listdir(d) if b.isdigit() for x in os.listdir(os.path.join(d, b))]
        assert len([x for x in files if x.endswith(".msg")]) == len(before[
            NAMES[dirs.index(d)]][0])


def test_hot_backups_while_lmtpd_delivers_and_imapd_writes(imap, tmp_path):  # noqa: F811
    """imsbackup of everything, three times, while lmtpd takes deliveries
    and an IMAP client APPENDs and STOREs flags: each backup restores with
    every mailbox exactly as its MBOX frame lists it, every message whole."""
    import imaplib
    import threading

    from lmtp_harness import LMTPClient, socket_path, start_lmtpd, stop

    root, port, _stored = imap
    lmtpd = start_lmtpd(root)
    done = threading.Event()
    errors = []

    def deliver():
        try:
            c = LMTPClient(socket_path(root))
            i = 0
            while not done.is_set():
                assert c.send("a@example.org", ["joe@example.com"],
                              msg(i, 3000))[1][0][0] == 250
                i += 1
            c.close()
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    def client():
        try:
            c = imaplib.IMAP4("127.0.0.1", port)
            c.login("joe", "pw")
            c.select("INBOX")
            while not done.is_set():
                c.append("Sent", "(\\Seen)", None, msg(7, 1000))
                c.store("1:*", "+FLAGS", "(\\Flagged)")
                c.store("1:*", "-FLAGS", "(\\Flagged)")
            c.logout()
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(e)
    workers = [threading.Thread(target=deliver), threading.Thread(target=client)]
    for w in workers:
        w.start()
    backups = []
    try:
        for n in range(3):
            time.sleep(0.5)
            f = str(tmp_path / f"hot{n}.msb")
            r = subprocess.run(_tool("imsbackup") + ["--store-root", root, "-f", f, "/"],
                               capture_output=True)
            assert r.returncode == 0, r.stderr
            backups.append(f)
    finally:
        done.set()
        for w in workers:
            w.join(30)
        stop(lmtpd)
    assert not errors, errors
    for n, f in enumerate(backups):
        with open(f, "rb") as fh:
            listed = {v["name"]: v["uids"] for _o, k, v in backup.read_frames(
                fh, f, messages=False) if k == backup.MBOX}
        other = str(tmp_path / f"restored{n}")
        Store.init(other).close()
        r = subprocess.run(_tool("imsrestore") + ["--store-root", other, "-f", f],
                           capture_output=True)
        assert r.returncode == 0, r.stderr
        with Store.open(other) as s, Store.open(root, readonly=True) as live:
            for name, uids in listed.items():
                got = mailbox_state(s, name)
                assert [g[0] for g in got] == uids, (n, name)
                alive = {m[0]: m[1] for m in mailbox_state(live, name)}
                assert all(alive[uid] == digest for uid, digest, *_ in got), (n, name)
    assert len(listed["user/joe/INBOX"]) > 2 and len(listed["user/joe/Sent"]) > 0


def test_a_backup_whose_reader_goes_away_is_an_error(root, joe):
    joe.close()
    p = subprocess.Popen(_tool("imsbackup") + ["--store-root", root, "-f", "-", "/"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(100)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait() == 8 and "not whole" in err and "Traceback" not in err, err


def test_objects_name_users_mailboxes_and_partitions(cli, root, joe, tmp_path):
    """Sun's object forms: `/`, `/<partition>`, `/<partition>/<mailbox>`, a mailbox with the
    folders below it; restored onto the partition each mailbox was on."""
    joe.layout.config.set("store.partition.second.path", str(tmp_path / "p2"))
    joe.create("user/far", "second")
    joe.append("user/far", msg(1))

    def listed(*objects):
        f = str(tmp_path / "sel.msb")
        if os.path.exists(f):
            os.unlink(f)
        assert cmd(cli, joe, "imsbackup", "--store-root", root, "-f", f, *objects).code == 0
        with open(f, "rb") as fh:
            return sorted(v["name"] for _o, k, v in backup.read_frames(fh, f, messages=False)
                          if k == backup.MBOX)
    assert listed("/") == sorted(NAMES + ["user/far/INBOX"])
    assert listed("/second") == ["user/far/INBOX"]
    # a name that is no mailbox but holds some: the mailboxes below it
    assert listed("/primary/user/joe/Lists") == ["user/joe/Lists/dev"]
    assert listed("user/joe/Lists/dev", "user/far") == ["user/far/INBOX", "user/joe/Lists/dev"]
    r = cmd(cli, joe, "imsbackup", "--store-root", root, "-f", "-", "/second/user/joe")
    assert r.code == 8 and "on partition second" in r.err, r
    f = str(tmp_path / "far.msb")
    assert cmd(cli, joe, "imsbackup", "--store-root", root, "-f", f, "user/far").code == 0
    joe.delete("user/far")
    assert cmd(cli, joe, "imsrestore", "--store-root", root, "-f", f).code == 0
    assert joe.entry("user/far").partition == "second"


def test_a_backup_with_well_formed_frames_but_wrong_contents_is_damage(cli, root, joe, tmp_path):
    """A frame whose CRC holds but whose JSON is not what its kind needs is
    reported as damage at its offset, like any other, never a traceback."""
    f = tmp_path / "odd.msb"
    f.write_bytes(backup.json_frame(backup.MAGIC, {"format": 1})
                  + backup.json_frame(backup.MBOX, {"name": "user/x", "uidvalidity": "soon"}))
    r = cmd(cli, joe, "imsrestore", "--store-root", root, "-f", str(f))
    at = len(backup.json_frame(backup.MAGIC, {"format": 1}))
    assert r.code == 4 and f"offset {at}: MBOX frame lacks 'uidvalidity'" in r.err, r
    f.write_bytes(backup.json_frame(backup.MAGIC, {"format": 1}) + backup.frame(backup.SUBS,
                                                                                b"[1, 2]"))
    r = cmd(cli, joe, "imsrestore", "--store-root", root, "-f", str(f))
    assert r.code == 4 and "SUBS frame is not a JSON object" in r.err, r


def cut_off_append(store, name, n):
    """What a kill -9 between an append's records and its header update
    leaves: the header as it was before the last n records."""
    mdir = store.mailbox_dir(name)
    h = store.header(name)
    h.exists -= n
    h.total_bytes = sum(r.size for r in store.read(name).records[:h.exists])
    h.uidnext = store.read(name).records[h.exists].uid
    index.write_header(mdir, h)
    assert store.read(name).problems  # a reader sees damage until it is finished


def test_an_append_cut_off_before_its_header_is_finished_not_refused(cli, root, joe, tmp_path):
    """imsbackup, imsexport, imsrestore and imsimport run again, and flag
    changes, finish an append a kill cut off (as the next append would)
    instead of stopping at it as damage."""
    before = snapshot(joe)
    cut_off_append(joe, "user/joe/Sent", 3)
    f = str(tmp_path / "joe.msb")
    r = cmd(cli, joe, "imsbackup", "--store-root", root, "-f", f, "user/joe")
    assert r.code == 0, r
    assert snapshot(joe) == before
    cut_off_append(joe, "user/joe/Archive", 2)
    assert cmd(cli, joe, "imsexport", "--store-root", root, "user/joe/Archive",
               str(tmp_path / "x")).code == 0
    cut_off_append(joe, "user/joe/INBOX", 1)
    uid = joe.read("user/joe/INBOX").records[0].uid
    joe.store_flags("user/joe/INBOX", [uid], index.FLAG_FLAGGED, [], "add")
    assert len(joe.read("user/joe/INBOX").records) == len(before["user/joe/INBOX"][0])
    other = str(tmp_path / "other")
    Store.init(other).close()
    assert cli("imsrestore", "--store-root", other, "-f", f).code == 0
    with Store.open(other) as s:
        cut_off_append(s, "user/joe/Lists/dev", 4)
    r = cli("imsrestore", "--store-root", other, "-f", f)
    assert r.code == 0, r
    with Store.open(other) as s:
        assert snapshot(s) == before


def test_a_whole_server_from_a_backup_with_its_config_onto_a_fresh_store(cli, tmp_path):
    """Issue 26: imsbackup --with-config carries the settings, the users and
    their password hashes, the quota warning and the expiry rules; a restore
    onto a fresh machine's empty store brings the server back (a user logs
    in with the old password); a store that has its own files keeps them."""
    from store import accounts
    from store.layout import Layout
    old = str(tmp_path / "old")
    with Store.init(old) as s:
        s.create("user/joe")
        s.append("user/joe", b"Subject: keep me\n\nbody\n")
        s.layout.config.set("store.quotawarn", "80")
    accounts.set_password(Layout.open(old), "joe", "sesame")
    with open(os.path.join(old, "config", "store.expirerule"), "w") as f:
        f.write("Trash.folderpattern: user/%/Trash\nTrash.messagedays: 30\n")
    dump = str(tmp_path / "server.msb")
    r = cli("imsbackup", "--store-root", old, "-f", dump, "--with-config", "/")
    assert r.code == 0, r
    new = str(tmp_path / "new")  # a fresh machine: an empty store
    Store.init(new).close()
    r = cli("imsrestore", "--store-root", new, "-f", dump, "--with-config", "--json")
    assert r.code == 0, r
    done = {c["file"]: c["action"] for c in json.loads(r.out)["config"]}
    assert done == {"passwd": "restored", "store.conf": "kept the store's; the backup's is "
                    "store.conf.restored", "store.expirerule": "restored"}, done
    layout = Layout.open(new)
    assert accounts.verify(layout, "joe", "sesame")
    assert os.stat(os.path.join(new, "config", "passwd")).st_mode & 0o777 == 0o600
    assert "store.quotawarn = 80" in open(os.path.join(new, "config", "store.conf.restored")).read()
    assert open(os.path.join(new, "config", "store.expirerule")).read().startswith("Trash.")
    with Store.open(new) as s:
        assert s.message("user/joe", 1) == b"Subject: keep me\n\nbody\n"
    # without --with-config the files are not touched; an old reader sees the frame as damage
    plain = str(tmp_path / "plain")
    Store.init(plain).close()
    assert cli("imsrestore", "--store-root", plain, "-f", dump).code == 0
    assert not os.path.exists(os.path.join(plain, "config", "passwd"))
