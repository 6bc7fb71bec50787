"""Trust, state (issue 23 items 13-19): what must never go backwards or
vanish, and what an unexpected error must do. Each test reproduces a fault
found on 293311a."""

from store import index
from store.mailbox.messages import FlagMode
from store.services.popd import Maildrop


def test_pop_quit_expunges_only_what_the_pop_session_deleted(store):
    store.create("user/joe")
    for i in range(3):
        store.append("user/joe", b"Subject: m%d\n\nbody\n" % i)
    store.set_flags("user/joe", 1, index.FLAG_DELETED, FlagMode.ADD)  # an IMAP client's
    drop = Maildrop(store, "joe")
    drop.deleteMessage(1)  # the second message, UID 2
    drop.sync()
    recs = store.read("user/joe").records
    assert [r.uid for r in recs] == [1, 3]
    assert recs[0].flags & index.FLAG_DELETED  # still there, still flagged


def _modseq(root, name):
    from store.mailbox import Store
    with Store.open(root) as s:
        return s.header(name).highest_modseq


def test_highestmodseq_never_goes_backwards_when_the_index_is_rebuilt(cli, root):
    """Seed 003's own procedure (rm store.idx; reconstruct) and -f -i lowered
    HIGHESTMODSEQ (6 -> 2 on 293311a): imsbackup --since-backup and CONDSTORE
    clients then missed later changes."""
    import os

    from store.mailbox import Store
    with Store.init(root) as s:
        s.create("user/joe")
        for i in range(2):
            s.append("user/joe", b"Subject: m%d\n\nx\n" % i)
        for _ in range(4):
            s.store_flags("user/joe", [1], index.FLAG_FLAGGED, [], FlagMode.ADD)
            s.store_flags("user/joe", [1], index.FLAG_FLAGGED, [], FlagMode.REMOVE)
        mdir = s.mailbox_dir("user/joe")
    seen = _modseq(root, "user/joe")
    assert seen >= 6
    os.unlink(os.path.join(mdir, index.IDX_FILE))
    assert cli("reconstruct", "--store-root", root, "user/joe").code in (0, 1)
    after = _modseq(root, "user/joe")
    assert after > seen
    assert cli("reconstruct", "--store-root", root, "-f", "-i", "user/joe").code in (0, 1)
    assert _modseq(root, "user/joe") > after
    # and a change after the rebuild is above every modseq given before
    with Store.open(root) as s:
        s.store_flags("user/joe", [1], index.FLAG_SEEN, [], FlagMode.ADD)
        assert s.read("user/joe").records[0].modseq > after
    # the database lost too (reconstruct -m makes the entries again from the headers)
    import shutil
    last = _modseq(root, "user/joe")
    shutil.rmtree(os.path.join(root, "mboxlist"))
    assert cli("reconstruct", "--store-root", root, "-m").code in (0, 1)
    os.unlink(os.path.join(mdir, index.IDX_FILE))
    assert cli("reconstruct", "--store-root", root, "user/joe").code in (0, 1)
    assert _modseq(root, "user/joe") > last


def _deliver(root, address):
    """deliver in its own process (the daemon holds the database open in this one)."""
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-c", "from store.cli.deliver import main; main()",
                           "--store-root", root, "-a", address], input=b"Subject: x\n\nx\n",
                          capture_output=True)


def test_mail_to_a_user_made_after_the_snapshot_is_deferred_while_the_resync_is_pending(
        tmp_path):
    """Item 14: after a recovery from a snapshot, `deliver -a late@` got 5.1.1
    (exit 67) and LMTP 550 until the resync ran (~12 s at 10k mailboxes), so
    the MTA returned the mail."""
    import os

    from build_store import build
    from damage import damage

    from store import logsetup, snapshots
    from store.daemon import state
    from store.daemon.daemon import Daemon
    from store.mailbox import Store
    root = str(tmp_path / "store")
    build(root, users=2, folders=1, messages=3, seed=8)
    logsetup.attach(os.path.join(root, "log"))
    d = Daemon(root)
    d.start()
    d.tick()  # the first snapshot
    d.shutdown()
    assert snapshots.list_snapshots(Store.open(root).layout)
    with Store.open(root) as s:
        s.create("user/late")
    damage(root, "db_truncated", "user/user0000")
    d = Daemon(root)
    d.start()  # restores the snapshot; the resync is pending
    try:
        assert state.resync_pending(d.layout)
        r = _deliver(root, "late@example.com")
        assert r.returncode == 75 and b"4.2.0" in r.stderr and b"recovered" in r.stderr, r
        r = _deliver(root, "nobody@example.com")
        assert r.returncode == 67, r  # no directory either: unknown, as before
        d.tick()  # the resync
        assert not state.resync_pending(d.layout)
        r = _deliver(root, "late@example.com")
        assert r.returncode == 0, r
    finally:
        d.shutdown()
