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
