"""Dovecot as the peer: a Maildir Dovecot wrote (doveadm save, flags,
keywords, an expunge, folders) comes in through imsimport with Dovecot's
UIDs, UIDVALIDITY, flags, keywords, dates and bytes; a Maildir imsexport
wrote is read by Dovecot with ours. doveadm runs offline (no daemon) as
the mail user on a private configuration."""

import os
import shutil
import subprocess
import tempfile

import pytest
from bench_lmtp import DOVECOT_BASE, _has_mail_user
from test_migrate import cmd, mailbox_state

from store import index

DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
pytestmark = pytest.mark.skipif(
    not (os.path.exists(DOVEADM) and os.geteuid() == 0 and _has_mail_user()),
    reason="needs Dovecot (dovecot-core), root and the mail user")


@pytest.fixture
def dvdir():
    """A directory the mail user can reach (pytest's tmp_path is under a 0700 one)."""
    d = tempfile.mkdtemp(prefix="dovecot-interop.")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d)


class Doveadm:
    def __init__(self, base, home):
        self.base, self.home = str(base), str(home)
        for d in ("run", "state"):
            os.makedirs(os.path.join(self.base, d), exist_ok=True)
        os.makedirs(self.home, exist_ok=True)
        with open(os.path.join(self.base, "dovecot.conf"), "w") as f:
            f.write(DOVECOT_BASE.format(base=self.base))
        open(os.path.join(self.base, "users"), "w").close()
        subprocess.run(["chown", "-R", "8:8", self.base, self.home], check=True)

    def __call__(self, *args, input=None, location=None):
        opts = ["-o", f"mail_location=maildir:{location}"] if location else []
        r = subprocess.run(["setpriv", "--reuid=8", "--regid=8", "--clear-groups", "env", "-i",
                            "USER=joe", f"HOME={self.home}", "PATH=/usr/bin:/bin", DOVEADM,
                            "-c", os.path.join(self.base, "dovecot.conf"), *opts, "-f", "tab",
                            *args], input=input, capture_output=True, check=True)
        return r.stdout.decode()

    def rows(self, *args, **kw):
        lines = self(*args, **kw).splitlines()
        keys = lines[0].split("\t")
        return [dict(zip(keys, line.split("\t"), strict=True)) for line in lines[1:]]


def flags_and_keywords(text):
    names = [n for n in text.split() if n != "\\Recent"]
    flags = index.names_to_flags(" ".join(n for n in names if n.startswith("\\")))
    return flags, sorted(n for n in names if not n.startswith("\\"))


def dovecot_state(dv, box, maildir, location=None):
    """(uid, bytes, flags, keywords, date) of each message, as Dovecot sees it."""
    out = []
    for row in dv.rows("fetch", "uid flags date.received.unixtime guid", "mailbox", box, "all",
                       location=location):
        path = [os.path.join(maildir, sub, f) for sub in ("cur", "new")
                for f in os.listdir(os.path.join(maildir, sub))
                if f.split(":")[0] == row["guid"]][0]
        with open(path, "rb") as f:
            data = f.read()
        out.append((int(row["uid"]), data, *flags_and_keywords(row["flags"]),
                    int(row["date.received.unixtime"])))
    return out


def ours(store, name):
    reader = store.message_reader(name)
    return [(uid, reader.read(uid), flags, kws, date)
            for uid, _h, flags, kws, date in mailbox_state(store, name)]


def test_a_maildir_dovecot_wrote_comes_in_as_dovecot_had_it(cli, root, store, dvdir):
    dv = Doveadm(os.path.join(dvdir, "dovecot"), os.path.join(dvdir, "home"))
    for i in range(1, 6):
        dv("save", "-m", "INBOX", input=b"From: a@example.com\nSubject: m%d\n\nbody %d\n" % (i, i))
    dv("mailbox", "create", "Lists.dev", "Entwürfe")
    dv("save", "-m", "Lists.dev", input=b"Subject: dev\n\nx\n")
    dv("flags", "add", "\\Seen $Label1 work", "mailbox", "INBOX", "uid", "2")
    dv("flags", "add", "\\Flagged \\Answered \\Draft", "mailbox", "INBOX", "uid", "3")
    dv("flags", "add", "\\Deleted", "mailbox", "INBOX", "uid", "5")
    dv("expunge", "mailbox", "INBOX", "uid", "1")
    maildir = os.path.join(dvdir, "home", "Maildir")
    want = dovecot_state(dv, "INBOX", maildir)
    status = dv.rows("mailbox", "status", "uidvalidity uidnext", "INBOX")[0]
    assert [w[0] for w in want] == [2, 3, 4, 5]

    r = cmd(cli, store, "imsimport", "--store-root", root, maildir, "user/joe")
    assert r.code == 0, r
    assert ours(store, "user/joe") == want
    h = store.header("user/joe")
    assert (h.uidvalidity, h.uidnext) == (int(status["uidvalidity"]), int(status["uidnext"]))
    assert ours(store, "user/joe/Lists/dev") == dovecot_state(
        dv, "Lists.dev", os.path.join(maildir, ".Lists.dev"))
    assert store.exists("user/joe/Entwürfe")


def test_dovecot_reads_what_imsexport_wrote(cli, root, store, dvdir):
    store.create("user/joe")
    store.create("user/joe/Lists/dev")
    store.create("user/joe/Entwürfe")
    uids = store.append_many("user/joe", [b"Subject: %d\r\n\r\nbody\r\n" % i for i in range(8)],
                             internaldate=1700000000)
    store.store_flags("user/joe", uids[:3], index.FLAG_SEEN, ["$Label1"], "add")
    store.store_flags("user/joe", uids[2:4], index.FLAG_FLAGGED | index.FLAG_DRAFT,
                      ["$Forwarded"], "add")
    store.store_flags("user/joe", uids[5:6], index.FLAG_DELETED, [], "add")
    store.expunge("user/joe", [uids[5]])
    store.append("user/joe/Lists/dev", b"Subject: dev\n\nx\n", internaldate=1600000000)
    dest = os.path.join(dvdir, "export")
    assert cmd(cli, store, "imsexport", "--store-root", root, "user/joe", dest).code == 0
    dv = Doveadm(os.path.join(dvdir, "dovecot"), os.path.join(dvdir, "home"))
    subprocess.run(["chown", "-R", "8:8", dest], check=True)
    assert dovecot_state(dv, "INBOX", dest, location=dest) == ours(store, "user/joe")
    assert dovecot_state(dv, "Lists.dev", os.path.join(dest, ".Lists.dev"),
                         location=dest) == ours(store, "user/joe/Lists/dev")
    status = dv.rows("mailbox", "status", "uidvalidity uidnext", "INBOX", location=dest)[0]
    h = store.header("user/joe")
    assert (int(status["uidvalidity"]), int(status["uidnext"])) == (h.uidvalidity, h.uidnext)
    names = dv("mailbox", "list", location=dest).split()
    assert {"INBOX", "Lists.dev", "Entwürfe"} <= set(names)
