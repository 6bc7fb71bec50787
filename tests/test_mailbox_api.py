import os

import pytest
from conftest import msg_hashes

from store import index
from store.errors import MailboxExistsError, NoSuchMailboxError, OverQuotaError, UsageError
from store.fsutil import leftover_temp_files
from store.mailbox import message_path


def test_append_writes_files_with_guid_and_buckets(store):
    store.create("user/joe")
    data = b"Subject: s\n\nbody"
    uid = store.append("user/joe", data)
    mdir = store.mailbox_dir("user/joe")
    path = message_path(mdir, uid)
    assert path == os.path.join(mdir, "00", "1.msg")
    assert open(path, "rb").read() == data
    import hashlib
    assert store.read("user/joe").records[0].guid == hashlib.sha256(data).digest()
    assert message_path(mdir, 1234).endswith(os.path.join("01", "1234.msg"))
    assert leftover_temp_files(store.layout.root) == []


def test_stale_file_from_crashed_delivery_is_never_overwritten(store):
    store.create("user/joe")
    mdir = store.mailbox_dir("user/joe")
    os.makedirs(os.path.join(mdir, "00"))
    open(message_path(mdir, 1), "wb").write(b"left by a crash")
    uid = store.append("user/joe", b"new")
    assert uid == 2
    assert open(message_path(mdir, 1), "rb").read() == b"left by a crash"


def test_create_twice_and_missing(store):
    store.create("user/joe/Sent")
    with pytest.raises(MailboxExistsError):
        store.create("user/joe/Sent")
    with pytest.raises(NoSuchMailboxError):
        store.append("user/nobody", b"x")


def test_flags_expunge_erase(store):
    store.create("user/joe")
    uids = store.append_many("user/joe", [b"a", b"bb", b"ccc"])
    store.set_flags("user/joe", uids[1], index.FLAG_DELETED | index.FLAG_SEEN)
    assert store.expunge("user/joe") == [2]
    idx = store.read("user/joe")
    assert [r.uid for r in idx.records] == [1, 3] and idx.problems == []
    assert idx.header.uidnext == 4
    mdir = store.mailbox_dir("user/joe")
    assert [r.uid for r in index.read_expunged(mdir, "user/joe/INBOX")] == [2]
    assert os.path.exists(message_path(mdir, 2))  # expunged, not yet erased
    assert store.quotas("user/joe")[0]["used_bytes"] == 4
    assert store.erase_expunged("user/joe") == 1
    assert not os.path.exists(message_path(mdir, 2))
    assert index.read_expunged(mdir, "user/joe/INBOX") == []
    assert store.append("user/joe", b"d") == 4  # UIDs never reused


def test_quota_refuses_over_limit(store):
    store.create("user/joe")
    store.set_quota("user/joe", 10)
    store.append("user/joe", b"12345")
    with pytest.raises(OverQuotaError, match="over quota"):
        store.append("user/joe", b"123456")
    assert store.read("user/joe").header.exists == 1
    q = store.quotas("user/joe")[0]
    assert (q["used_bytes"], q["used_messages"], q["limit_bytes"]) == (5, 1, 10)


def test_acl_keeps_lright_and_header_in_step(store):
    store.create("user/joe/Sent")
    store.set_acl("user/joe/Sent", "bob", "rl")
    assert store.get_acl("user/joe/Sent") == {"joe": "lrswipkxtecda", "bob": "lr"}
    assert store.db.get("lright", "bob") == {"mailboxes": ["user/joe/Sent"]}
    assert store.read("user/joe/Sent").header.acl["bob"] == "lr"
    store.set_acl("user/joe/Sent", "bob", "")
    assert store.db.get("lright", "bob") is None
    with pytest.raises(UsageError):
        store.set_acl("user/joe/Sent", "bob", "Z")


def test_rename_keeps_messages_uidvalidity_and_children(store):
    store.create("user/joe/Old")
    store.create("user/joe/Old/Sub")
    store.append_many("user/joe/Old", [b"1", b"2"])
    store.append("user/joe/Old/Sub", b"3")
    before = msg_hashes(store.layout.root)
    uv = store.entry("user/joe/Old").uidvalidity
    pairs = store.rename("user/joe/Old", "user/joe/Archive")
    assert pairs == [("user/joe/Old", "user/joe/Archive"), ("user/joe/Old/Sub", "user/joe/Archive/Sub")]
    assert store.entry("user/joe/Archive").uidvalidity == uv
    assert store.read("user/joe/Archive/Sub").header.name == "user/joe/Archive/Sub"
    assert not store.exists("user/joe/Old")
    assert msg_hashes(store.layout.root) == before


def test_rename_to_another_partition(store, tmp_path):
    store.layout.config.set("store.partition.second.path", str(tmp_path / "p2"))
    store.create("user/joe")
    store.create("user/joe/Sent")
    store.append("user/joe/Sent", b"hello")
    store.rename("user/joe/Sent", "user/joe/Sent", "second")
    e = store.entry("user/joe/Sent")
    assert e.partition == "second"
    assert store.mailbox_dir("user/joe/Sent").startswith(str(tmp_path / "p2"))
    assert store.message("user/joe/Sent", 1) == b"hello"
    assert len(msg_hashes(str(tmp_path / "p2"))) == 1
    assert len(msg_hashes(store.layout.partition_path("primary"))) == 0


def test_user_rename_moves_quota(store):
    store.create("user/joe")
    store.append("user/joe", b"abc")
    store.rename("user/joe", "user/ann")
    assert store.get_acl("user/ann") == {"ann": "lrswipkxtecda"}
    assert store.quotas("user/ann")[0]["used_bytes"] == 3
    with pytest.raises(UsageError):
        store.rename("user/ann", "user/ann/Folder")


def test_delete_keeps_children(store):
    store.create("user/joe")
    store.create("user/joe/Sent")
    store.append("user/joe", b"x")
    store.append("user/joe/Sent", b"y")
    store.delete("user/joe")
    assert [i.name for i in store.list()] == ["user/joe/Sent"]
    assert store.message("user/joe/Sent", 1) == b"y"
    assert store.quotas("user/joe")[0]["used_bytes"] == 1


def test_list_pattern(store):
    for n in ("user/joe", "user/joe/Sent", "user/joe/Sent/2024", "user/ann", "shared/news"):
        store.create(n)
    assert [i.name for i in store.list("user/joe/%")] == ["user/joe/INBOX", "user/joe/Sent"]
    assert [i.name for i in store.list("user/joe/*")] == ["user/joe/INBOX", "user/joe/Sent",
                                                          "user/joe/Sent/2024"]


def test_database_map_grows_by_itself(store):
    store.create("user/joe")
    store.db.env.set_mapsize(32 * 4096)
    for i in range(300):
        store.db.write(lambda t, i=i: t.put("subscr", f"u{i}", {"mailboxes": ["x" * 500]}))
    assert store.db.env.info()["map_size"] > 32 * 4096
    assert len(store.db.items("subscr")) == 300


def test_database_values_keep_their_schema_byte_for_byte(store):
    """The typed records write the same JSON the dict code wrote: the keys
    docs/formats.md lists, and the stored bytes are the encoding of them."""
    from store.db import FOLDER, LRIGHT, QUOTA
    from store.db.envelope import encode_value
    from store.db.records import SCHEMA
    store.create("user/joe")
    store.set_acl("user/joe", "bob", "lr")
    store.set_quota("user/joe", 5000)
    folder = store.db.get(FOLDER, "user/joe/INBOX")
    assert set(folder) == {"partition", "uniqueid", "uidvalidity", "acl", "quotaroot",
                           "modseq_reserved"}
    assert store.db.get(QUOTA, "user/joe") == {"limit_bytes": 5000, "used_bytes": 0,
                                               "used_messages": 0}
    assert store.db.get(LRIGHT, "bob") == {"mailboxes": ["user/joe/INBOX"]}
    for db, key in ((FOLDER, "user/joe/INBOX"), (QUOTA, "user/joe"), (LRIGHT, "bob")):
        raw = store.db.read(lambda t, db=db, key=key: bytes(t.txn.get(key.encode(),
                                                                       db=store.db.dbs[db])))
        record = SCHEMA[db].from_value(store.db.get(db, key))
        assert encode_value(record.to_value()) == raw


def test_a_delivery_cut_off_by_a_full_disk_leaves_no_temp_file(store, monkeypatch):
    import errno

    from store.mailbox import messages

    store.create("user/joe")

    def full(fd, data):
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(messages, "write_all", full)
    with pytest.raises(OSError) as e:
        store.append("user/joe", b"Subject: big\n\n" + b"x" * 100_000)
    assert e.value.filename and ".tmp-1." in e.value.filename  # the error names the file
    assert leftover_temp_files(store.layout.root) == []
    assert store.read("user/joe").records == []


def test_uidvalidity_is_never_given_twice(store):
    """Mailboxes made in one second differ, and one deleted and made again
    within it does not get its old UIDVALIDITY back (RFC 3501 2.3.1.1)."""
    names = [f"user/u{i}" for i in range(5)]
    for n in names:
        store.create(n)
    given = [store.entry(n).uidvalidity for n in names]
    store.delete(names[0])
    store.create(names[0])
    again = store.entry(names[0]).uidvalidity
    assert len(set(given + [again])) == 6 and again > max(given)
    assert store.header(names[0]).uidvalidity == again


def test_a_create_cut_off_before_its_database_entry_is_made_again(store):
    """A kill between create's index and its database entry leaves an index
    that never held mail: creating the name again finishes the job (an
    import or restore run again does that). An index that held mail with no
    entry is still for reconstruct -m."""
    from store.db import FOLDER
    from store.errors import MailboxExistsError
    for n in ("user/cut", "user/held"):
        store.create(n)
    store.append("user/held", b"Subject: x\n\nx\n")
    for n in ("user/cut", "user/held"):
        store.db.write(lambda t, n=n: t.delete(FOLDER, n + "/INBOX"))
    store.create("user/cut")
    assert store.exists("user/cut") and store.header("user/cut").exists == 0
    with pytest.raises(MailboxExistsError, match="reconstruct -m"):
        store.create("user/held")


def test_a_flag_mode_typo_is_refused_not_taken_for_remove(store):
    """set_flags(..., "ad") once removed the flags it was given."""
    from store.errors import ProgrammingError
    from store.index import FLAG_FLAGGED, FLAG_SEEN
    from store.mailbox import FlagMode
    store.create("user/joe")
    uid = store.append("user/joe", b"Subject: x\n\nx\n")
    assert store.set_flags("user/joe", uid, FLAG_SEEN | FLAG_FLAGGED, FlagMode.ADD) \
        == FLAG_SEEN | FLAG_FLAGGED
    with pytest.raises(ProgrammingError, match="flag mode 'ad'"):
        store.set_flags("user/joe", uid, FLAG_SEEN, "ad")
    assert store.read("user/joe").records[0].flags == FLAG_SEEN | FLAG_FLAGGED
    assert store.set_flags("user/joe", uid, FLAG_SEEN, FlagMode.REMOVE) == FLAG_FLAGGED
