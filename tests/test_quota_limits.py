"""Quota limits survive the loss of the database: the root mailbox's index
header keeps a copy (quota_root_mailbox), reconstruct -m brings it back,
sets a limit that disagrees from it, and copies a limit the header lacks."""

import json
import os

import pytest
from build_store import build

from store import index
from store.mailbox import Store, quota_root_mailbox


@pytest.fixture
def built(tmp_path):
    root = str(tmp_path / "store")
    build(root, users=2, folders=1, messages=4, seed=3)
    with Store.open(root) as s:
        s.create("shared/news")
        s.create("shared/news/tech")
        s.append("shared/news/tech", b"Subject: t\n\nbody\n")
        s.set_quota("user/user0000", 5_000_000)
        s.set_quota("shared/news", 123_456)
        s.set_quota("user/user0001", 0)  # a limit of zero is a limit, not none
    return root


def recon(cli, root, *args):
    r = cli("reconstruct", "--store-root", root, "--json", "-j", "1", *args)
    assert "Traceback" not in r.err, r
    return r.code, json.loads(r.out), r


def quotas(root):
    with Store.open(root) as s:
        return {q["root"]: (q["limit_bytes"], q["used_bytes"], q["used_messages"])
                for q in s.quotas()}


def header(root, name):
    with Store.open(root) as s:
        return s.header(name)


def test_the_root_mailbox_header_keeps_the_limit(built):
    assert quota_root_mailbox("user/user0000") == "user/user0000/INBOX"
    h = header(built, "user/user0000/INBOX")
    assert (h.carries_limit, h.quota_limit) == (True, 5_000_000)
    assert (header(built, "shared/news").carries_limit, header(built, "shared/news").quota_limit) \
        == (True, 123_456)
    assert header(built, "user/user0001/INBOX").quota_limit == 0
    assert not header(built, "user/user0000/Sent").carries_limit  # only the root's mailbox
    with Store.open(built) as s:
        s.set_quota("user/user0000", None)
    h = header(built, "user/user0000/INBOX")
    assert (h.carries_limit, h.quota_limit) == (True, None)


def test_limits_come_back_with_a_database_rebuilt_from_the_spool(cli, built):
    before = quotas(built)
    os.unlink(os.path.join(built, "mboxlist", "data.mdb"))
    code, out, r = recon(cli, built, "-m")
    assert code == 1, r
    kinds = {(f["mailbox"], f["kind"]) for f in out["findings"]}
    assert ("user/user0000", "quota-added") in kinds and ("shared/news", "quota-added") in kinds
    code, out, r = recon(cli, built, "-q")
    assert quotas(built) == before
    with Store.open(built) as s:
        assert s.entry("shared/news/tech").quotaroot == "shared/news"
    code, out, r = recon(cli, built, "-m")
    assert code == 0 and out["findings"] == [], r


def test_a_limit_that_disagrees_with_the_header_is_set_from_it(cli, built):
    with Store.open(built) as s:  # as a crash between header and database would leave it
        s.db.write(lambda t: t.put("quota", "user/user0000",
                                   {**t.get("quota", "user/user0000"), "limit_bytes": 1}))
    code, out, r = recon(cli, built, "-m")
    assert code == 1, r
    (f,) = [f for f in out["findings"] if f["kind"] == "quota-limit-changed"]
    assert f["mailbox"] == "user/user0000" and "limit 1 bytes in the database" in f["detail"]
    assert quotas(built)["user/user0000"][0] == 5_000_000


def test_a_header_without_the_copy_gets_it(cli, built):
    with Store.open(built) as s:  # as a store from before the copy existed
        mdir = s.mailbox_dir("user/user0000/INBOX")
        idx = index.read_index(mdir, "user/user0000/INBOX")
        idx.header.carries_limit, idx.header.quota_limit = False, None
        index.write_index(mdir, idx.header, idx.records)
    code, out, r = recon(cli, built, "-m")
    (f,) = [f for f in out["findings"] if f["kind"] == "quota-limit-uncopied"]
    assert f["action"] == "copied to the index header" and code in (0, 1)
    h = header(built, "user/user0000/INBOX")
    assert (h.carries_limit, h.quota_limit) == (True, 5_000_000)
    assert [f for f in recon(cli, built, "-m")[1]["findings"]] == []


def test_a_full_rebuild_keeps_the_copy_and_a_renamed_user_takes_the_limit(cli, built):
    code, out, r = recon(cli, built, "-r", "-f", "-i")
    assert code in (0, 1), r
    assert header(built, "user/user0000/INBOX").quota_limit == 5_000_000
    with Store.open(built) as s:
        s.rename("user/user0000", "user/ann")
        assert s.quotas("user/ann")[0]["limit_bytes"] == 5_000_000
        s.rename("user/ann/Sent", "user/user0001/FromAnn")
    assert not header(built, "user/user0001/FromAnn").carries_limit
    h = header(built, "user/ann/INBOX")
    assert (h.carries_limit, h.quota_limit, h.quotaroot) == (True, 5_000_000, "user/ann")
