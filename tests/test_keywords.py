"""Keywords: the per-mailbox table in the index header, the record bits,
and what reconstruct does with them (kept with a readable header; cleared,
with a finding, when only the records survive)."""

import json

import pytest
from build_store import build
from damage import damage

from store import index
from store.errors import KeywordError
from store.mailbox import Store

BOX = "user/user0000/INBOX"


@pytest.fixture
def built(tmp_path):
    root = str(tmp_path / "store")
    build(root, users=1, folders=0, messages=6, seed=5)
    return root


def _keywords(root):
    with Store.open(root) as s:
        idx = s.read(BOX)
        return {r.uid: index.keyword_names(idx.header, r.keywords) for r in idx.records}


def _tag(root):
    with Store.open(root) as s:
        uids = [r.uid for r in s.read(BOX).records]
        s.store_flags(BOX, uids[:3], index.FLAG_SEEN, ["$Forwarded"], "add")
        s.store_flags(BOX, uids[2:4], 0, ["$Junk", "$forwarded"], "add")
        s.store_flags(BOX, uids[2:3], 0, ["$Forwarded"], "remove")
        return uids


def test_store_add_remove_set_and_case(built):
    uids = _tag(built)
    kw = _keywords(built)
    assert kw[uids[0]] == ["$Forwarded"] and kw[uids[2]] == ["$Junk"]
    assert kw[uids[3]] == ["$Forwarded", "$Junk"] and kw[uids[5]] == []
    with Store.open(built) as s:
        header, recs = s.store_flags(BOX, [uids[3]], index.FLAG_FLAGGED, ["$Junk"], "set")
        assert header.keywords == ["$Forwarded", "$Junk"]  # the table keeps a dropped one
        assert recs[0].flags == index.FLAG_FLAGGED
        assert index.keyword_names(header, recs[0].keywords) == ["$Junk"]
        assert s.read(BOX).problems == []


def test_keyword_limits(built):
    with Store.open(built) as s:
        uid = s.read(BOX).records[0].uid
        with pytest.raises(KeywordError, match="invalid keyword"):
            s.store_flags(BOX, [uid], 0, ["bad(word"], "add")
        s.store_flags(BOX, [uid], 0, [f"k{i}" for i in range(index.MAX_KEYWORDS)], "add")
        with pytest.raises(KeywordError, match="no room"):
            s.store_flags(BOX, [uid], 0, ["one-more"], "add")
        s.store_flags(BOX, [uid], 0, ["k0", "one-more"], "remove")  # removing never grows it
        assert len(s.header(BOX).keywords) == index.MAX_KEYWORDS


def test_reconstruct_keeps_keywords_with_a_readable_header(cli, built):
    uids = _tag(built)
    before = _keywords(built)
    damage(built, "bad_record_checksum", BOX)  # the second record's CRC: a rebuild
    r = cli("reconstruct", "--store-root", built, "--json", "-j", "1", BOX)
    assert r.code == 1, r.err  # repaired
    after = _keywords(built)
    assert uids[1] not in after and after.pop(max(after)) == []  # its record lost: a new UID
    assert after == {u: k for u, k in before.items() if u != uids[1]}
    assert after[uids[3]] == ["$Forwarded", "$Junk"]


def test_reconstruct_clears_keywords_when_the_header_is_lost(cli, built):
    uids = _tag(built)
    with Store.open(built) as s:
        flags_before = {r.uid: r.flags for r in s.read(BOX).records}
    damage(built, "start_offset_beyond_eof", BOX)
    r = cli("reconstruct", "--store-root", built, "--json", "-j", "1", BOX)
    kinds = {f["kind"] for f in json.loads(r.out)["findings"]}
    assert {"records-salvaged", "keywords-lost"} <= kinds
    with Store.open(built) as s:
        idx = s.read(BOX)
        assert idx.problems == [] and idx.header.keywords == []
        assert {r.uid: r.flags for r in idx.records} == flags_before
        assert all(r.keywords == 0 for r in idx.records)
    assert uids
