#!/usr/bin/env python3
"""Fault injector: damage a store at a known place. Used by the tests with
fixtures/damage/cases.json, and by hand:

    python tools/damage.py /path/to/store bad_record_checksum user/joe
"""

from __future__ import annotations

import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from store import index  # noqa: E402
from store.db.envelope import encode_value  # noqa: E402
from store.mailbox import Store, message_path  # noqa: E402


def _patch(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _flip(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def truncate_header(s: Store, mbox: str) -> None:
    os.truncate(os.path.join(s.mailbox_dir(mbox), index.IDX_FILE), 60)


def start_offset_beyond_eof(s: Store, mbox: str) -> None:
    _patch(os.path.join(s.mailbox_dir(mbox), index.IDX_FILE), 16, struct.pack("<Q", 10**9))


def bad_cache_checksum(s: Store, mbox: str) -> None:
    rec = s.read(mbox).records[1]
    _flip(os.path.join(s.mailbox_dir(mbox), index.CACHE_FILE), rec.cache_offset + rec.cache_len - 1)


def bad_record_checksum(s: Store, mbox: str) -> None:
    h = s.header(mbox)
    _flip(os.path.join(s.mailbox_dir(mbox), index.IDX_FILE), h.start_offset + index.RECORD.size + 24)


def missing_message_file(s: Store, mbox: str) -> None:
    os.unlink(message_path(s.mailbox_dir(mbox), 3))


def renamed_message_file(s: Store, mbox: str) -> None:
    """A message file renamed by hand past UIDNEXT: a record without its
    file and a file without its record, of the same size."""
    mdir = s.mailbox_dir(mbox)
    os.rename(message_path(mdir, 3), message_path(mdir, s.header(mbox).uidnext + 1))


def unindexed_file_new(s: Store, mbox: str) -> None:
    """A file past UIDNEXT: what a delivery killed before its record leaves."""
    mdir = s.mailbox_dir(mbox)
    shutil.copyfile(message_path(mdir, 1), message_path(mdir, s.header(mbox).uidnext + 2))


def unindexed_file_old(s: Store, mbox: str) -> None:
    """A file below UIDNEXT that nothing knows (e.g. restored from a backup)."""
    mdir = s.mailbox_dir(mbox)
    s.set_flags(mbox, 4, index.FLAG_DELETED)
    s.expunge(mbox)
    s.erase_expunged(mbox)
    shutil.copyfile(message_path(mdir, 1), message_path(mdir, 4))


def extra_db_entry(s: Store, mbox: str) -> None:
    e = s.entry(mbox).to_value()
    s.db.write(lambda t: t.put("folder", mbox + "/Ghost", {**e, "uniqueid": "0" * 32}))


def missing_db_entry(s: Store, mbox: str) -> None:
    from store.layout import canonical
    s.db.write(lambda t: t.delete("folder", canonical(mbox)))


def wrong_quota_usage(s: Store, mbox: str) -> None:
    root = s.entry(mbox).quotaroot
    s.db.write(lambda t: t.put("quota", root, {**t.get("quota", root), "used_bytes": 1,
                                               "used_messages": 999}))


def stale_lright(s: Store, mbox: str) -> None:
    s.db.write(lambda t: t.put("lright", "mallory", {"mailboxes": [mbox]}))


def bad_db_value(s: Store, mbox: str) -> None:
    """Flip bytes inside a value: LMDB cannot see it; our checksum does."""
    from store.layout import canonical
    name = canonical(mbox)
    raw = bytearray(encode_value(s.entry(name).to_value()))
    raw[-3] ^= 0x01
    s.db.write(lambda t: t.txn.put(name.encode(), bytes(raw), db=s.db.dbs["folder"]))


def deleted_data_mdb(s: Store, mbox: str) -> None:
    s.close()
    for f in ("data.mdb", "lock.mdb"):
        os.unlink(os.path.join(s.layout.mboxlist_dir, f))


def _data_mdb(s: Store) -> str:
    s.close()
    return os.path.join(s.layout.mboxlist_dir, "data.mdb")


def db_truncated(s: Store, mbox: str) -> None:
    """data.mdb cut to half its size (a full disk, a bad copy)."""
    path = _data_mdb(s)
    os.truncate(path, os.path.getsize(path) // 2)


def db_zeroed_page(s: Store, mbox: str) -> None:
    """Zero every page that holds a mailbox name: the folder tree's leaves."""
    path = _data_mdb(s)
    data = open(path, "rb").read()
    page = 4096
    hit = {i // page for i in range(len(data)) if data.startswith(b"user/", i)}
    with open(path, "r+b") as f:
        for p in sorted(hit):
            f.seek(p * page)
            f.write(b"\0" * page)


def db_flipped_values(s: Store, mbox: str) -> None:
    """Change one digit of every stored UIDVALIDITY in place: LMDB's own walk
    passes; only the values' checksums can tell."""
    path = _data_mdb(s)
    data = bytearray(open(path, "rb").read())
    key = b'"uidvalidity":'
    i = data.find(key)
    while i >= 0:
        d = i + len(key)
        data[d] = ord("1") if data[d] != ord("1") else ord("2")
        i = data.find(key, d)
    with open(path, "r+b") as f:
        f.write(data)


DAMAGES = {f.__name__: f for f in (truncate_header, start_offset_beyond_eof, bad_cache_checksum,
                                   bad_record_checksum, missing_message_file, renamed_message_file,
                                   unindexed_file_new,
                                   unindexed_file_old, extra_db_entry, missing_db_entry,
                                   wrong_quota_usage, stale_lright, bad_db_value, deleted_data_mdb,
                                   db_truncated, db_zeroed_page, db_flipped_values)}


def damage(root: str, kind: str, mbox: str) -> None:
    s = Store.open(root)
    try:
        DAMAGES[kind](s, mbox)
    finally:
        s.close()


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[2] not in DAMAGES:
        sys.exit(f"usage: damage.py ROOT KIND MAILBOX\nkinds: {' '.join(DAMAGES)}")
    damage(*sys.argv[1:])
