"""Format stability: today's code reads the committed golden store exactly as
it was written; the standard LMDB tools read our database."""

import json
import os
import shutil
import subprocess

import pytest
from golden import GOLDEN, dump_store


def test_golden_store_reads_back_identically(tmp_path):
    copy = tmp_path / "golden"
    shutil.copytree(os.path.join(GOLDEN, "store"), copy)
    os.makedirs(copy / "log", exist_ok=True)
    expected = json.load(open(os.path.join(GOLDEN, "expected.json")))
    got = json.loads(json.dumps(dump_store(str(copy)), sort_keys=True))
    got["files"] = {k.replace(str(copy) + "/", ""): v for k, v in got["files"].items()}
    assert got == expected
    assert len(expected["mailboxes"]) == 4 and len(expected["files"]) == 12


def test_builder_is_deterministic(tmp_path):
    from build_store import build
    a, b = tmp_path / "a", tmp_path / "b"
    build(str(a), 2, 1, 4, seed=3)
    build(str(b), 2, 1, 4, seed=3)
    da, db = dump_store(str(a)), dump_store(str(b))
    for d in (da, db):
        for m in d["mailboxes"].values():
            for k in ("uniqueid", "uidvalidity", "last_update"):
                m["header"].pop(k)
        for v in d["database"]["folder"].values():
            v.pop("uniqueid"), v.pop("uidvalidity")
    assert da == db


@pytest.mark.skipif(shutil.which("mdb_dump") is None, reason="mdb_dump (lmdb-utils) not installed")
def test_mdb_dump_shows_named_databases(store):
    store.create("user/joe")
    store.close()
    out = subprocess.run(["mdb_dump", "-a", store.layout.mboxlist_dir], capture_output=True,
                         text=True, check=True).stdout
    names = {line.split("=", 1)[1] for line in out.splitlines() if line.startswith("database=")}
    assert {"folder", "quota", "lright", "subscr", "peruser"} <= names
    stat = subprocess.run(["mdb_stat", "-a", store.layout.mboxlist_dir], capture_output=True,
                          text=True, check=True).stdout
    assert "Status of folder" in stat


def _golden_copy(tmp_path):
    copy = tmp_path / "golden"
    shutil.copytree(os.path.join(GOLDEN, "store"), copy)
    os.makedirs(copy / "log", exist_ok=True)
    return copy


def _idx_files(root):
    from store import index
    return sorted(str(p) for p in root.rglob(index.IDX_FILE))


def test_golden_store_upgrades_in_place(tmp_path):
    """The committed golden store is of index version 1. The upgrade
    rewrites each store.idx's fixed header only (version and checksum), the
    store reads back identically, a second pass does nothing, and the
    upgraded mailboxes take keywords."""
    from store import index
    from store.mailbox import Store
    from store.mailbox.upgrade import upgrade_indexes
    copy = _golden_copy(tmp_path)
    before = {p: open(p, "rb").read() for p in _idx_files(copy)}
    assert {index.HEADER.unpack_from(b)[1] for b in before.values()} == {1}
    with Store.open(str(copy)) as s:
        up = upgrade_indexes(s)
        assert len(up.upgraded) == 4 and up.failed == []
        assert upgrade_indexes(s).upgraded == []
    for p, old in before.items():
        new = open(p, "rb").read()
        assert index.HEADER.unpack_from(new)[1] == index.IDX_VERSION
        assert len(new) == len(old)
        assert {i for i in range(len(old)) if old[i] != new[i]} <= {8, 124, 125, 126, 127}
    expected = json.load(open(os.path.join(GOLDEN, "expected.json")))
    got = json.loads(json.dumps(dump_store(str(copy)), sort_keys=True))
    got["files"] = {k.replace(str(copy) + "/", ""): v for k, v in got["files"].items()}
    assert got == expected
    with Store.open(str(copy)) as s:
        name = next(n for n, m in expected["mailboxes"].items() if m["header"]["exists"])
        uid = s.read(name).records[0].uid
        header, recs = s.store_flags(name, [uid], 0, ["$Forwarded", "NonJunk"], "add")
        assert header.keywords == ["$Forwarded", "NonJunk"]
        idx = s.read(name)
        assert idx.problems == []
        assert index.keyword_names(idx.header, idx.records[0].keywords) == ["$Forwarded",
                                                                              "NonJunk"]


def test_stored_upgrades_once_after_readiness(tmp_path):
    from store import index, logsetup
    from store.daemon import state
    from store.daemon.daemon import Daemon
    copy = _golden_copy(tmp_path)
    logsetup.attach(str(copy / "log"))
    d = Daemon(str(copy))
    d.start()
    try:
        assert "upgrade" in d.schedule.due
        assert all(index.HEADER.unpack_from(open(p, "rb").read())[1] == 1
                   for p in _idx_files(copy))  # READY came first
        assert d.run_job("upgrade", d.clock())
        assert state.upgraded_version(d.layout) == index.IDX_VERSION
        assert "upgrade" not in d.schedule.due
        assert all(index.HEADER.unpack_from(open(p, "rb").read())[1] == index.IDX_VERSION
                   for p in _idx_files(copy))
    finally:
        d.shutdown()
    log = open(copy / "log" / "default", encoding="utf-8").read()
    assert "Upgraded the index files of 4 mailboxes to format version 2, in place" in log
    d = Daemon(str(copy))
    d.start()
    try:
        assert "upgrade" not in d.schedule.due
    finally:
        d.shutdown()
