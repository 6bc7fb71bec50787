"""imapd and popd with real clients from Debian packages: mbsync (isync)
syncing a mailbox down and back up with changes on both sides, fetchmail
downloading over POP3, mutt reading a message. Each skips only when its
program is not installed (.ci/run installs them as root)."""

import glob
import imaplib
import os
import shutil
import subprocess

import pytest
from lmtp_harness import start_service, start_stored, stop

from store import accounts, index
from store.layout import Layout
from store.mailbox import Store


def _msg(i):
    return (b"From: a@example.org\nTo: joe@example.com\nSubject: msg %d\n"
            b"Date: Thu, 03 Dec 2026 08:00:00 +0000\nMessage-ID: <m%d@example.org>\n\nbody %d\n"
            % (i, i, i))


@pytest.fixture
def served(tmp_path):
    root = str(tmp_path / "store")
    with Store.init(root) as s:
        s.create("user/joe")
        s.create("user/joe/Sent")
        for i in range(3):
            s.append("user/joe", _msg(i))
    accounts.set_password(Layout.open(root), "joe", "pw")
    stored = start_stored(root)
    procs = []

    def service(prog):
        proc, port = start_service(prog, root)
        procs.append(proc)
        return port
    yield root, service
    for p in procs:
        p.terminate()
        assert p.wait(30) == 0, p.stderr.read()
    stop(stored)


def _flags(root, box="user/joe"):
    with Store.open(root) as s:
        return {r.uid: index.flags_to_names(r.flags) for r in s.read(box).records}


def _subjects(root, box="user/joe"):
    with Store.open(root) as s:
        out = {}
        for r in s.read(box).records:
            head = s.message(box, r.uid).replace(b"\r\n", b"\n").split(b"\n\n")[0]
            out[r.uid] = next(x for x in head.split(b"\n") if x.startswith(b"Subject:"))
        return out


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) not installed")
def test_mbsync_down_and_back_up(served, tmp_path):
    root, service = served
    port = service("imapd")
    local = tmp_path / "maildir"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(f"""IMAPAccount srv
Host 127.0.0.1
Port {port}
User joe
Pass pw
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account srv

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel ch
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
""")

    def sync():
        r = subprocess.run(["mbsync", "-c", str(rc), "ch"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr

    sync()
    got = sorted(glob.glob(f"{local}/INBOX/new/*"))
    assert len(got) == 3 and os.path.isdir(f"{local}/Sent")
    # near side: seen+flagged on message 1, message 3 trashed, a new message
    os.makedirs(f"{local}/INBOX/cur", exist_ok=True)
    one = next(p for p in got if ",U=1:2," in p)
    three = next(p for p in got if ",U=3:2," in p)
    os.rename(one, f"{local}/INBOX/cur/{os.path.basename(one)}FS")
    os.rename(three, f"{local}/INBOX/cur/{os.path.basename(three)}T")
    with open(f"{local}/INBOX/new/100.local:2,", "wb") as f:
        f.write(b"From: me@example.com\nSubject: written locally\n\nhello\n")
    # far side: message 2 answered, by another client
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login("joe", "pw")
    c.select("INBOX")
    c.store("2", "+FLAGS", "(\\Answered)")
    c.logout()
    sync()
    flags = _flags(root)
    assert flags[1] == ["\\Seen", "\\Flagged"] and flags[2] == ["\\Answered"]
    assert 3 not in flags  # expunged
    new = [u for u in flags if u > 3]
    assert len(new) == 1 and _subjects(root)[new[0]] == b"Subject: written locally"
    assert any(p.endswith(",R") for p in glob.glob(f"{local}/INBOX/cur/*U=2:2,*"))
    sync()  # nothing left to do: the second run changes nothing
    assert _flags(root) == flags


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail not installed")
def test_fetchmail_downloads_over_pop3(served, tmp_path):
    root, service = served
    port = service("popd")
    out = tmp_path / "fetched.mbox"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(f'poll 127.0.0.1 service {port} protocol pop3 auth password user "joe" '
                  f'password "pw" sslproto \'\' mda "cat >> {out}"\n')
    rc.chmod(0o600)
    r = subprocess.run(["fetchmail", "-f", str(rc), "--nosyslog", "--pidfile",
                        str(tmp_path / "fm.pid")], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stdout + r.stderr
    text = out.read_text()
    assert [x for x in text.splitlines() if x.startswith("Subject:")] == [
        "Subject: msg 0", "Subject: msg 1", "Subject: msg 2"]
    assert _flags(root) == {}  # fetchmail deletes what it fetched (no `keep`)


@pytest.mark.skipif(shutil.which("mutt") is None or shutil.which("script") is None,
                    reason="mutt or script (bsdutils) not installed")
def test_mutt_reads_a_message(served, tmp_path):
    root, service = served
    port = service("imapd")
    out = tmp_path / "read.txt"
    rc = tmp_path / "muttrc"
    rc.write_text(f"""set folder="imap://joe@127.0.0.1:{port}/"
set spoolfile="+INBOX"
set imap_pass="pw"
set ssl_starttls=no
set ssl_force_tls=no
set header_cache=""
set message_cachedir=""
set wait_key=no
set sort=date-sent
""")
    keys = f"<display-message><exit><pipe-message>cat > {out}<enter><quit>"
    r = subprocess.run(["script", "-qec", f"mutt -n -F {rc} -e 'push \"{keys}\"'", "/dev/null"],
                       capture_output=True, timeout=60,
                       env={**os.environ, "TERM": "vt100", "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stdout[-2000:]
    assert b"Subject: msg 0" in out.read_bytes() and b"body 0" in out.read_bytes()
    assert _flags(root)[1] == ["\\Seen"]  # read, and the flag synced at quit
