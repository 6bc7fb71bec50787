"""Trust, access (issue 23 items 1, 2, 4, 6): no one gets in where they do
not belong, whatever the entry point. Each test reproduces a hole found on
293311a; the mailbox-layer tests hold for every service, the protocol ones
drive a real imapd."""

import base64
import socket

import pytest
from lmtp_harness import start_service, start_stored, stop

from store import accounts
from store.delivery.address import AddressError, AddressRules, parse
from store.errors import InvalidNameError, LimitError, PermissionDeniedError
from store.layout import Layout, canonical, check_userid
from store.mailbox import Store


def test_a_rename_with_the_x_right_does_not_steal_another_users_folder(store):
    store.create("user/bob")
    store.create("user/bob/Work")
    store.append("user/bob/Work", b"Subject: secret\n\nbob's\n")
    store.create("user/alice")
    store.set_acl("user/bob/Work", "alice", "lx")
    with pytest.raises(PermissionDeniedError, match="another owner"):
        store.rename("user/bob/Work", "user/alice/Stolen", actor="alice")
    assert store.exists("user/bob/Work") and not store.exists("user/alice/Stolen")
    assert store.get_acl("user/bob/Work") == {"bob": "lrswipkxtecda", "alice": "lx"}
    # within bob's namespace she needs k on the new parent too
    with pytest.raises(PermissionDeniedError, match="k right"):
        store.rename("user/bob/Work", "user/bob/Other", actor="alice")
    store.set_acl("user/bob", "alice", "k")
    store.rename("user/bob/Work", "user/bob/Other", actor="alice")
    assert store.get_acl("user/bob/Other")["bob"] == "lrswipkxtecda"
    # no x: no rename, even of a folder she may read
    store.create("user/bob/Read")
    store.set_acl("user/bob/Read", "alice", "lr")
    with pytest.raises(PermissionDeniedError, match="no x right"):
        store.rename("user/bob/Read", "user/bob/Mine", actor="alice")
    # an administrator (no actor) may move a folder between users, as Cyrus's admins
    store.rename("user/bob/Other", "user/alice/FromBob")
    assert store.get_acl("user/alice/FromBob")["alice"] == "lrswipkxtecda"


def test_creating_elsewhere_needs_the_k_right_and_users_are_limited(store):
    store.create("user/bob")
    store.create("user/alice")
    with pytest.raises(PermissionDeniedError):
        store.create("user/bob/Planted", actor="alice")
    store.layout.config.set("local.user.maxmailboxes", "3")
    store.create("user/alice/a", actor="alice")
    store.create("user/alice/b", actor="alice")
    with pytest.raises(LimitError, match="local.user.maxmailboxes"):
        store.create("user/alice/c", actor="alice")
    store.create("user/alice/c")  # an administrator's create is not limited
    store.layout.config.set("local.user.maxsubscriptions", "2")
    store.set_subscribed("alice", "user/alice/a", True)
    store.set_subscribed("alice", "user/alice/nonexistent", True)
    store.set_subscribed("alice", "user/alice/a", True)  # again: no new entry
    with pytest.raises(LimitError, match="local.user.maxsubscriptions"):
        store.set_subscribed("alice", "user/alice/x2", True)
    store.set_subscribed("alice", "user/alice/a", False)
    store.set_subscribed("alice", "user/alice/x2", True)
    assert store.subscriptions("alice") == ["user/alice/nonexistent", "user/alice/x2"]


@pytest.mark.parametrize("user", ["anyone", "Anyone", "anonymous", "owner", "authenticated",
                                  "-bob", "$group", "group:staff", "group=staff"])
def test_reserved_identifiers_are_no_user_ids(root, user):
    layout = Layout.init(root)
    with pytest.raises(InvalidNameError, match="reserved"):
        check_userid(user)
    with pytest.raises(InvalidNameError):
        accounts.set_password(layout, user, "pw")
    with pytest.raises(InvalidNameError):
        canonical(f"user/{user}")
    with pytest.raises(InvalidNameError):
        canonical(f"user/{user}/Sent")
    with pytest.raises(AddressError):
        parse(f"{user}@example.com", AddressRules(frozenset(), True, True))


def test_an_address_without_a_domain_is_refused_when_domains_are_set():
    rules = AddressRules(frozenset({"example.com"}), True, False)
    with pytest.raises(AddressError, match="no domain") as e:
        parse("<bob>", rules)
    assert e.value.reason == "not-local"
    assert parse("<bob@example.com>", rules).user == "bob"
    assert parse("<bob>", AddressRules(frozenset(), True, False)).user == "bob"


def test_deliver_refuses_an_address_without_a_domain(cli, root):
    with Store.init(root) as s:
        s.create("user/bob")
    Layout.open(root).config.set("local.lmtp.domains", "example.com")
    r = cli("deliver", "--store-root", root, "-a", "bob", input=b"Subject: x\n\nx\n")
    assert r.code == 67, r  # EX_NOUSER: the MTA bounces it
    assert "no domain" in r.err


class Imap:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), 10)
        self.f = self.s.makefile("rb")
        self.f.readline()

    def cmd(self, tag: str, line: bytes) -> list[bytes]:
        self.s.sendall(tag.encode() + b" " + line + b"\r\n")
        out = []
        while True:
            got = self.f.readline()
            out.append(got)
            if got.startswith(tag.encode() + b" ") or not got:
                return out

    def close(self):
        self.s.close()


@pytest.fixture
def imapd(tmp_path):
    root = str(tmp_path / "store")
    with Store.init(root) as s:
        for u in ("bob", "alice"):
            s.create(f"user/{u}")
        s.create("user/bob/Work")
        s.append("user/bob/Work", b"Subject: secret\n\nbob's\n")
        s.set_acl("user/bob/Work", "alice", "lx")
    layout = Layout.open(root)
    accounts.set_password(layout, "alice", "apw")
    accounts.set_password(layout, "bob", "bpw")
    layout.config.set("local.user.maxsubscriptions", "2")
    stored = start_stored(root)
    proc, port = start_service("imapd", root)
    yield root, port
    proc.terminate()
    proc.wait(30)
    stop(stored)


def test_imapd_answers_the_mailbox_layers_refusals(imapd):
    root, port = imapd
    c = Imap(port)
    assert c.cmd("a", b"LOGIN alice apw")[-1].startswith(b"a OK")
    got = c.cmd("b", b'RENAME user/bob/Work Stolen')[-1]
    assert got.startswith(b"b NO [NOPERM]"), got
    got = c.cmd("c", b'CREATE user/bob/Planted')[-1]
    assert got.startswith(b"c NO [NOPERM]"), got
    for i, tag in enumerate(("d", "e")):
        assert c.cmd(tag, b"SUBSCRIBE n%d" % i)[-1].startswith(tag.encode() + b" OK")
    got = c.cmd("f", b"SUBSCRIBE n9")[-1]
    assert got.startswith(b"f NO [LIMIT]"), got
    c.close()
    with Store.open(root) as s:
        assert s.exists("user/bob/Work") and not s.exists("user/alice/Stolen")
        assert s.get_acl("user/bob/Work")["bob"] == "lrswipkxtecda"


def test_authenticate_plain_as_another_user_is_refused(imapd):
    _root, port = imapd
    c = Imap(port)
    c.s.sendall(b"a AUTHENTICATE PLAIN\r\n")
    assert c.f.readline().startswith(b"+")
    c.s.sendall(base64.b64encode(b"bob\0alice\0apw") + b"\r\n")
    got = c.f.readline()
    assert got.startswith((b"a NO", b"a BAD")) and b"authorization identity" in got, got
    c.s.sendall(b"b AUTHENTICATE PLAIN\r\n")
    assert c.f.readline().startswith(b"+")
    c.s.sendall(base64.b64encode(b"alice\0alice\0apw") + b"\r\n")
    assert c.f.readline().startswith(b"b OK")
    c.close()
