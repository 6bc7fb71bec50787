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


def test_a_message_count_limit_is_enforced_kept_in_the_header_and_rebuilt(cli, built):
    """Issue 25 (seeds 003, 004): a limit on the number of messages beside the
    byte limit, enforced wherever the byte limit is, kept in the root
    mailbox's header, rebuilt from it, and carried by a backup."""
    from store.errors import OverQuotaError
    with Store.open(built) as s:
        used = s.quotas("user/user0000")[0]["used_messages"]
        header_before = open(os.path.join(s.mailbox_dir("user/user0000/INBOX"), "store.idx"),
                             "rb").read(128)
    r = cli("mboxutil", "--store-root", built, "--set-quota", "user/user0000", "5000000",
            "--messages", str(used + 1))
    assert r.code == 0 and f"messages limit {used + 1} used {used}" in r.out, r
    with Store.open(built) as s:
        s.append("user/user0000/Sent", b"Subject: fits\n\nx\n")
        with pytest.raises(OverQuotaError, match=f"holds {used + 1} of {used + 1} messages"):
            s.append("user/user0000", b"Subject: one too many\n\nx\n")
        s.set_quota("user/user0000", 5_000_000)  # the byte limit alone: the count stays
        assert s.quotas("user/user0000")[0]["limit_messages"] == used + 1
    h = header(built, "user/user0000/INBOX")
    assert (h.quota_limit, h.quota_messages) == (5_000_000, used + 1)
    r = cli("mboxutil", "--store-root", built, "-q", "--json")
    assert {q["root"]: q["limit_messages"] for q in json.loads(r.out)}["user/user0000"] \
        == used + 1
    # the database loses it: reconstruct -m sets it from the header
    with Store.open(built) as s:
        s.db.write(lambda t: t.put("quota", "user/user0000",
                                   {k: v for k, v in t.get("quota", "user/user0000").items()
                                    if k != "limit_messages"}))
    code, out, r = recon(cli, built, "-m")
    (f,) = [f for f in out["findings"] if f["kind"] == "quota-limit-changed"]
    assert f"5000000 bytes, {used + 1} messages in the index header" in f["detail"], f
    with Store.open(built) as s:
        assert s.quotas("user/user0000")[0]["limit_messages"] == used + 1
    # a backup carries it to a restore into a new user
    backup = os.path.join(os.path.dirname(built), "b.ims")
    assert cli("imsbackup", "--store-root", built, "-f", backup, "user/user0000").code == 0
    r = cli("imsrestore", "--store-root", built, "-f", backup, "--to", "user/copy",
            "user/user0000")
    assert r.code == 0, r
    with Store.open(built) as s:
        assert s.quotas("user/copy")[0]["limit_messages"] == used + 1
    # `none` removes it; a header without a message limit is what it was before they existed
    assert cli("mboxutil", "--store-root", built, "--set-quota", "user/user0000", "5000000",
               "--messages", "none").code == 0
    with Store.open(built) as s:
        h = open(os.path.join(s.mailbox_dir("user/user0000/INBOX"), "store.idx"), "rb").read(128)
    assert h[104:124] == header_before[104:124] == b"\0" * 20
    assert cli("mboxutil", "--store-root", built, "--messages", "3", "-q").code == 16
    assert cli("mboxutil", "--store-root", built, "--set-quota", "user/user0000", "1",
               "--messages", "many").code == 16
