"""store.idx / store.cache / store.exp: build with the real code, damage at a
known place, and check the reader names the damage with the documented wording."""

import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store import index
from store.errors import CorruptionError

MSGS = [b"Subject: one\r\nFrom: a@example.org\r\n\r\nbody one\r\n",
        b"Subject: two\nDate: Mon, 1 Jan 2024 10:00:00 +0000\n\nbody two\n",
        b"x"]


@pytest.fixture
def mbox(store):
    store.create("user/joe")
    store.append_many("user/joe", MSGS)
    return store, store.mailbox_dir("user/joe"), "user/joe/INBOX"


def _patch(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_clean_index_reads_back(mbox):
    store, mdir, name = mbox
    idx = index.read_index(mdir, name)
    assert idx.problems == []
    assert [r.uid for r in idx.records] == [1, 2, 3]
    assert idx.header.exists == 3 and idx.header.uidnext == 4
    assert idx.header.total_bytes == sum(map(len, MSGS))
    assert idx.header.name == name and idx.header.quotaroot == "user/joe"
    assert idx.header.acl == {"joe": "lrswipkxtecda"}
    cache = index.read_cache_file(mdir, name)
    assert index.read_cache_entry(cache, idx.records[1], name, mdir)["subject"] == b"two"


def test_truncated_header_is_missing_fixed_headers(mbox):
    _s, mdir, name = mbox
    os.truncate(os.path.join(mdir, index.IDX_FILE), 60)
    with pytest.raises(CorruptionError) as e:
        index.read_index(mdir, name)
    assert str(e.value).startswith("Mailbox corrupted, missing fixed headers: user/joe/INBOX")
    assert "store.idx" in str(e.value) and e.value.kind == "idx-missing-header"


def test_start_offset_beyond_eof(mbox):
    _s, mdir, name = mbox
    path = os.path.join(mdir, index.IDX_FILE)
    _patch(path, 16, struct.pack("<Q", 10**9))
    with pytest.raises(CorruptionError) as e:
        index.read_index(mdir, name)
    assert str(e.value).startswith("Mailbox corrupted, start_offset beyond EOF: user/joe/INBOX")
    with pytest.raises(CorruptionError, match="start_offset beyond EOF"):
        index.read_header(mdir, name)


def test_header_bit_flip_is_a_checksum_error(mbox):
    _s, mdir, name = mbox
    _patch(os.path.join(mdir, index.IDX_FILE), 44, b"\x09")  # uidnext
    with pytest.raises(CorruptionError) as e:
        index.read_index(mdir, name)
    assert e.value.kind == "idx-header-checksum" and "offset 124" in str(e.value)


def test_record_checksum_names_record_and_offset(mbox):
    _s, mdir, name = mbox
    h = index.read_header(mdir, name)
    off = h.start_offset + 1 * index.RECORD.size + 24  # size field of record 1
    _patch(os.path.join(mdir, index.IDX_FILE), off, b"\xff")
    idx = index.read_index(mdir, name)
    kinds = [p.kind for p in idx.problems]
    assert "idx-record-checksum" in kinds
    p = idx.problems[kinds.index("idx-record-checksum")]
    assert f"record 1 at offset {h.start_offset + index.RECORD.size}" in str(p)
    assert [r.uid for r in idx.records] == [1, 3]


def test_cache_damage_message_wording(mbox):
    _s, mdir, name = mbox
    idx = index.read_index(mdir, name)
    rec = idx.records[1]
    _patch(os.path.join(mdir, index.CACHE_FILE), rec.cache_offset + rec.cache_len - 2, b"!!")
    cache = index.read_cache_file(mdir, name)
    with pytest.raises(CorruptionError) as e:
        index.read_cache_entry(cache, rec, name, os.path.join(mdir, index.CACHE_FILE))
    assert str(e.value).startswith(
        "Invalid cache data for msg 2 in mailbox user/joe/INBOX. Needs reconstruct")
    assert f"offset {rec.cache_offset}" in str(e.value)


def test_uids_out_of_order_and_count_and_size(mbox):
    _s, mdir, name = mbox
    idx = index.read_index(mdir, name)
    recs = idx.records
    h = idx.header
    # write records 1,3,2 with a header claiming 3 messages: order problem
    raw = h.pack() + b"".join(r.pack() for r in (recs[0], recs[2], recs[1]))
    open(os.path.join(mdir, index.IDX_FILE), "wb").write(raw)
    kinds = [p.kind for p in index.read_index(mdir, name).problems]
    assert "idx-uid-order" in kinds
    h.exists = 5
    open(os.path.join(mdir, index.IDX_FILE), "wb").write(h.pack() + b"".join(r.pack() for r in recs))
    probs = index.read_index(mdir, name).problems
    assert [p.kind for p in probs] == ["idx-count-mismatch"]
    assert "header says 5 messages but 3 records found" in str(probs[0])
    h.exists, h.total_bytes = 3, 1
    open(os.path.join(mdir, index.IDX_FILE), "wb").write(h.pack() + b"".join(r.pack() for r in recs))
    assert [p.kind for p in index.read_index(mdir, name).problems] == ["idx-size-mismatch"]


def test_append_is_in_place(mbox):
    store, mdir, name = mbox
    path = os.path.join(mdir, index.IDX_FILE)
    ino = os.stat(path).st_ino
    store.append(name, b"Subject: four\n\nfour")
    assert os.stat(path).st_ino == ino  # no rewrite: same file
    assert os.path.getsize(path) == index.read_header(mdir, name).start_offset + 4 * index.RECORD.size


@given(carries=st.booleans(), limit=st.one_of(st.none(), st.integers(0, 2**64 - 2)),
       uidnext=st.integers(1, 2**32 - 1), total=st.integers(0, 2**64 - 1),
       name=st.sampled_from(["user/joe/INBOX", "shared/news", "user/ü/INBOX"]))
def test_header_round_trip_with_the_quota_limit_copy(carries, limit, uidnext, total, name):
    h = index.Header(name=name, unique_id=b"u" * 16, uidvalidity=7, uidnext=uidnext,
                     total_bytes=total, quotaroot="user/joe", acl={"joe": "lr"},
                     carries_limit=carries, quota_limit=limit if carries else None)
    back = index.parse_header(h.pack(), name, "store.idx")
    assert back == h
    if not carries:  # what a file from before the copy holds in those bytes: zeros
        assert h.pack()[52:56] == b"\0" * 4 and h.pack()[88:124] == b"\0" * 36


def test_sizes_are_64_bit():
    rec = index.Record(1, 0, 0, 0, 5 * 2**32, 10, 12, 3 * 2**32, 1, b"\0" * 32)
    back, exp, found = index.Record.unpack(rec.pack())
    assert back == rec and exp == found


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_damage_never_crashes_the_reader(mbox, data):
    """Every byte of store.idx is under a checksum: any flip is reported, and
    never as an exception other than CorruptionError."""
    _s, mdir, name = mbox
    path = os.path.join(mdir, index.IDX_FILE)
    orig = open(path, "rb").read()
    try:
        pos = data.draw(st.integers(0, len(orig) - 1))
        val = data.draw(st.integers(0, 255).filter(lambda v: v != orig[pos]))
        open(path, "wb").write(orig[:pos] + bytes([val]) + orig[pos + 1:])
        try:
            idx = index.read_index(mdir, name)
        except CorruptionError:
            return
        assert idx.problems, f"flip at {pos} went unnoticed"
    finally:
        open(path, "wb").write(orig)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_header_damage_leaves_every_record_salvageable(mbox, data):
    """Whatever bytes of the header and variable section are changed, the
    records after them are all found."""
    _s, mdir, name = mbox
    path = os.path.join(mdir, index.IDX_FILE)
    orig = open(path, "rb").read()
    want = index.read_index(mdir, name).records
    start = index.read_header(mdir, name).start_offset
    try:
        flips = data.draw(st.lists(st.tuples(st.integers(0, start - 1), st.integers(1, 255)),
                                   min_size=1, max_size=8))
        damaged = bytearray(orig)
        for pos, x in flips:
            damaged[pos] ^= x
        open(path, "wb").write(bytes(damaged))
        assert index.salvage_records(mdir) == want
    finally:
        open(path, "wb").write(orig)
