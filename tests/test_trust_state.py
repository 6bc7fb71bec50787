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
