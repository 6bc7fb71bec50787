"""Snapshots, the weekly rule of removed/ and the schedule, with a frozen clock."""

import json
import os
import signal
import subprocess
import sys
import time

from conftest import ROOT, crash_at
from freezegun import freeze_time

from store import snapshots
from store.daemon.recovery import move_aside
from store.daemon.schedule import Schedule
from store.db import Database

IMDB = [sys.executable, "-c", "from store.cli.imdbverify import main; main()"]


def _take(store, when=None):
    return snapshots.take(store.layout, store.db, now=when)


def test_snapshot_is_verified_listed_and_pruned(store):
    store.create("user/joe")
    store.layout.config.set("local.store.snapshotdirs", "2")
    names = [_take(store, 1_800_000_000 + i * 60).name for i in range(4)]
    listed = [s.name for s in snapshots.list_snapshots(store.layout)]
    assert listed == names[-2:]
    s = snapshots.list_snapshots(store.layout)[-1]
    assert s.verified and not s.suspect and s.entries["folder"] == 1
    assert snapshots.best(store.layout)[0].name == names[-1]


def test_suspect_snapshot_never_replaces_good_history(store, monkeypatch):
    store.create("user/joe")
    store.layout.config.set("local.store.snapshotdirs", "2")
    good = [_take(store, 1_800_000_000 + i).name for i in range(2)]
    from store.db import verify as dbverify
    monkeypatch.setattr(dbverify, "verify", lambda p, **k: dbverify.Verdict(False, p, errors=["bad"]))
    for i in range(3):
        bad = _take(store, 1_800_000_100 + i)
        assert bad.suspect and bad.name.endswith("-suspect")
    monkeypatch.undo()
    snaps = snapshots.list_snapshots(store.layout)
    assert [s.name for s in snaps if not s.suspect] == good
    assert snapshots.best(store.layout)[0].name == good[-1]


def test_damaged_snapshot_on_disk_is_skipped(store):
    store.create("user/joe")
    older = _take(store, 1_800_000_000)
    newer = _take(store, 1_800_000_060)
    with open(os.path.join(newer.path, "data.mdb"), "r+b") as f:
        f.seek(5000)
        f.write(b"\xff" * 10)
    best, skipped = snapshots.best(store.layout)
    assert best.name == older.name
    assert [(s.name, why) for s, why in skipped] == [(newer.name, "failed verification")]


def test_a_snapshot_stopped_at_each_step_leaves_nothing_restorable_but_whole(store):
    """imdbverify -s stopped (store/crash.py) with its copy in the temp folder,
    and with the folder renamed but old ones not yet pruned: whatever is
    listed is whole; the dead writer's temp folder goes at the next prune."""
    store.create("user/joe")
    for i in range(300):
        store.db.write(lambda t, i=i: t.put("subscr", f"u{i}", {"mailboxes": ["x" * 2000]}),
                       durable=False)
    store.close()
    root = store.layout.root
    env = {**os.environ, "MSGSTORE_ROOT": root}
    d = snapshots.snapshot_dir(store.layout)
    crash_at("snapshot:after-copy", IMDB + ["-s"], env=env)
    assert snapshots.list_snapshots(store.layout) == []
    assert [n for n in os.listdir(d) if n.startswith(".tmp-")] != []  # the copy it left
    crash_at("snapshot:after-rename", IMDB + ["-s"], env=env)
    listed = snapshots.list_snapshots(store.layout)
    assert len(listed) == 1
    for s in listed:
        assert s.verified and snapshots.still_good(s)
    snapshots.prune(store.layout, 3)  # the killed writers are dead: their temp dirs go
    assert [n for n in os.listdir(d) if n.startswith(".tmp-")] == []
    assert len(snapshots.list_snapshots(store.layout)) == 1


def test_removed_copy_replaced_at_most_once_a_week(store):
    store.create("user/joe")
    store.close()
    mbox = store.layout.mboxlist_dir
    with freeze_time("2026-11-01 12:00:00"):
        assert move_aside(store.layout, time.time()) == "moved"
        first = os.path.getsize(os.path.join(mbox, "removed", "data.mdb"))
    for day, expected in (("2026-11-04", "kept"), ("2026-11-07 23:00:00", "kept"),
                          ("2026-11-08 12:00:01", "moved")):
        with open(os.path.join(mbox, "data.mdb"), "wb") as f:
            f.write(b"bad" * 10)
        with freeze_time(day):
            assert move_aside(store.layout, time.time()) == expected, day
        assert not os.path.exists(os.path.join(mbox, "data.mdb"))
        size = os.path.getsize(os.path.join(mbox, "removed", "data.mdb"))
        assert size == (30 if expected == "moved" else first)


def test_snapshot_schedule_counts_from_newest_snapshot(store):
    store.create("user/joe")
    store.layout.config.set("local.store.snapshotinterval", "60")
    with freeze_time("2026-11-22 10:00:00"):
        now = time.time()
        assert Schedule(store.layout, now).due["snapshot"] == now  # none yet: soon after start
        _take(store, now)
    with freeze_time("2026-11-22 10:30:00"):  # a restart half-way does not reset the clock
        assert Schedule(store.layout, time.time()).due["snapshot"] == now + 3600
    with freeze_time("2026-11-22 13:00:00"):  # overdue: at once
        assert Schedule(store.layout, time.time()).due["snapshot"] == time.time()


def test_expire_runs_once_a_day_at_its_hour(store):
    store.layout.config.set("local.store.expirestart", "23")
    with freeze_time("2026-11-22 10:00:00"):
        s = Schedule(store.layout, time.time())
        due = s.due["expire"]
        assert time.localtime(due).tm_hour == 23 and time.localtime(due).tm_mday == 22
    with freeze_time("2026-11-22 23:30:00"):
        assert Schedule(store.layout, time.time()).due["expire"] <= time.time()
        open(os.path.join(store.layout.config_dir, "stored.exp"), "w").close()
        os.utime(os.path.join(store.layout.config_dir, "stored.exp"), (time.time(), time.time()))
        nxt = Schedule(store.layout, time.time()).due["expire"]
        assert time.localtime(nxt).tm_mday == 23 and time.localtime(nxt).tm_hour == 23


def test_imdbverify_commands(cli, store):
    store.create("user/joe")
    root = store.layout.root
    store.close()
    r = cli("imdbverify", "--store-root", root)
    assert r.code == 0 and "verified" in r.out
    r = cli("imdbverify", "--store-root", root, "-s", "-m")
    assert r.code == 0, r
    r = cli("imdbverify", "--store-root", root, "-l", "--json")
    rows = json.loads(r.out)
    assert set(rows[0]) == {"name", "path", "time", "verified", "suspect", "bytes"}
    name = rows[0]["name"]
    r = cli("imdbverify", "--store-root", root, "--restore", name)
    assert r.code == 0, r
    assert any(n.startswith("before-restore-") for n in os.listdir(os.path.join(root, "mboxlist")))
    assert cli("imdbverify", "--store-root", root, "--restore", "snap-nope").code == 8
    assert cli("imdbverify", "--store-root", root, "-m").code == 16
    db = Database(os.path.join(root, "mboxlist"), readonly=True)
    assert db.get("folder", "user/joe/INBOX") is not None
    db.close()


def test_a_snapshot_damaged_in_place_never_pushes_a_good_one_out(store):
    store.create("user/joe")
    store.layout.config.set("local.store.snapshotdirs", "2")
    a = _take(store, 1_800_000_000)
    b = _take(store, 1_800_000_060)
    with open(os.path.join(b.path, "data.mdb"), "r+b") as f:  # B damaged in place
        f.seek(5000)
        f.write(b"\xff" * 10)
    assert snapshots.best(store.layout)[0].name == a.name  # a recovery refuses B, uses A
    c = _take(store, 1_800_000_120)  # the next snapshot prunes
    good = [s.name for s in snapshots.list_snapshots(store.layout) if not s.suspect]
    assert good == [a.name, c.name]
    assert [s.name for s in snapshots.list_snapshots(store.layout) if s.suspect] == \
        [b.name + "-suspect"]


def test_suspect_snapshots_do_not_pile_up(store, monkeypatch):
    store.create("user/joe")
    store.layout.config.set("local.store.snapshotdirs", "2")
    from store.db import verify as dbverify
    monkeypatch.setattr(dbverify, "verify", lambda p, **k: dbverify.Verdict(False, p, errors=["bad"]))
    for i in range(5):  # as many imdbverify -s on a bad database
        _take(store, 1_800_000_000 + i)
    assert len([s for s in snapshots.list_snapshots(store.layout) if s.suspect]) == 2


def test_a_damaged_manifest_makes_its_snapshot_suspect_nothing_more(cli, store):
    """Issue 11, item 8: valid JSON without a key, NaN, bytes that are not
    UTF-8, no manifest at all: imdbverify -l lists it as suspect, the good
    snapshot is still chosen, stored starts, and a damaged state file does
    not break stored -t."""
    store.create("user/joe")
    good = _take(store, 1_800_000_000).name
    damages = [json.dumps({"time": 1_800_000_060, "verified": True}),  # no "suspect"
               '{"time": NaN, "verified": true, "suspect": false, "bytes": 1, "sha256": ""}',
               "\udcff", None]
    for i, text in enumerate(damages):
        s = _take(store, 1_800_000_120 + i * 60)
        mpath = os.path.join(s.path, snapshots.MANIFEST)
        if text is None:
            os.unlink(mpath)
        else:
            open(mpath, "wb").write(text.encode("utf-8", "surrogateescape"))
    store.close()
    root = store.layout.root
    r = cli("imdbverify", "--store-root", root, "-l", "--json")
    assert r.code == 0, r
    listed = json.loads(r.out)
    assert [s["suspect"] for s in listed] == [False, True, True, True, True]
    assert snapshots.best(store.layout)[0].name == good
    with open(os.path.join(root, "config", "stored.state"), "wb") as f:
        f.write(b"\xff\xfe 99999999999999999999 ready\n")
    r = cli("stored", "--store-root", root, "-t", "-v")
    assert r.code == 8 and "state: stopped" in r.out, r
    p = subprocess.Popen([sys.executable, "-c", "from store.cli.stored import main; main()"],
                         cwd=ROOT, env={**os.environ, "MSGSTORE_ROOT": root},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        t0 = time.monotonic()
        while cli("stored", "--store-root", root, "-t").code != 0:
            assert p.poll() is None, p.communicate()
            assert time.monotonic() - t0 < 30
            time.sleep(0.1)
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=30)
    assert p.returncode == 0
