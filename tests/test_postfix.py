"""End to end with a real Postfix: messages injected with Postfix's
sendmail reach the store through lmtpd (mailbox_transport = lmtp:unix:)
and through the pipe transport running `deliver`; over quota, a held lock
and a stopped store are deferred by Postfix and delivered once the
condition clears.

The Postfix instance is private: its own config directory, queue and log,
and no listening service at all (mail comes in only through sendmail).
Needs root (Postfix's master) and the Debian package postfix, which
.ci/run installs; skipped without them."""

import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
from conftest import ROOT, wait_for
from lmtp_harness import start_lmtpd, start_stored, stop

from store.mailbox import Store

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="Postfix's master needs root"),
    pytest.mark.skipif(not os.path.exists(POSTFIX),
                       reason="Postfix is not installed (Debian package postfix)"),
]

MASTER_CF = """\
pickup    unix  n       -       n       1       1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
lmtp      unix  -       -       n       -       -       lmtp
smtp      unix  -       -       n       -       -       smtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
msgstore  unix  -       n       n       -       -       pipe
  flags=q user=nobody null_sender= argv={deliver} --store-root {root} -f ${{sender}} -a ${{recipient}}
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {base}/queue
data_directory = {base}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.example.com
mydomain = example.com
myorigin = example.com
mydestination = example.com
inet_interfaces = loopback-only
alias_maps =
alias_database =
mailbox_transport = lmtp:unix:{socket}
relay_domains = pipe.example.com
transport_maps = inline:{{ pipe.example.com=msgstore: }}
msgstore_destination_recipient_limit = 1
maillog_file = {base}/maillog
maillog_file_prefixes = {base}
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
lmtp_connect_timeout = 5s
biff = no
"""

MSG = (b"From: Alice <alice@example.org>\nTo: joe@example.com\nSubject: via postfix {n}\n"
       b"Message-ID: <{n}@example.org>\n\nBody {n}.\n.dot line\n")


def _deliver_script():
    script = os.path.join(os.path.dirname(sys.executable), "deliver")
    if not os.path.exists(script):
        pytest.skip("the deliver console script is not installed in this environment")
    return script


@pytest.fixture
def world():
    """A store owned by nobody:postfix (the MTA is in the store's group, as in
    a real installation), stored and lmtpd on it, and a private Postfix."""
    yield from _world(MASTER_CF.format(deliver=_deliver_script(), root="{root}"), "")


def _world(master_cf, main_extra, lmtpd_args=()):
    opened, mode = None, None
    probe = [sys.executable, "-c", "import os; os.setgroups([]); os.setgid(65534); "
             "os.setuid(65534); import json"]
    if subprocess.run(probe, capture_output=True).returncode != 0:  # /root 0700 here
        opened, mode = "/root", os.stat("/root").st_mode
        os.chmod(opened, mode | 0o001)
    base = tempfile.mkdtemp(prefix="postfix-e2e-", dir="/tmp")
    os.chmod(base, 0o755)
    root = os.path.join(base, "store")
    with Store.init(root) as s:
        s.create("user/joe")
    uid, gid = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("postfix").gr_gid
    for d, _dirs, files in os.walk(root):
        for n in [d] + [os.path.join(d, f) for f in files]:
            os.lchown(n, uid, gid)
    sock = os.path.join(root, "run", "lmtp")
    etc = os.path.join(base, "etc")
    os.makedirs(etc)
    with open(os.path.join(etc, "main.cf"), "w") as f:
        f.write(MAIN_CF.format(base=base, socket=sock) + main_extra)
    with open(os.path.join(etc, "master.cf"), "w") as f:
        f.write(master_cf.replace("{root}", root))
    procs = {"stored": start_stored(root), "lmtpd": start_lmtpd(root, *lmtpd_args)}
    os.makedirs(os.path.join(base, "queue"))  # its subdirectories: postfix check makes them
    os.chmod(os.path.join(base, "queue"), 0o755)  # whatever the umask (Store.init narrows it)
    r = _postfix(etc, "check")
    if r.returncode == 0:
        r = _postfix(etc, "start")
    if r.returncode != 0:
        for p in procs.values():
            stop(p)
        shutil.rmtree(base, ignore_errors=True)
        if opened:
            os.chmod(opened, mode)
        pytest.fail(f"postfix did not start: {r.stdout} {r.stderr}")
    w = World(base, root, etc, procs)
    try:
        yield w
    finally:
        subprocess.run([POSTFIX, "-c", etc, "stop"], capture_output=True)
        for p in procs.values():
            stop(p)
        shutil.rmtree(base, ignore_errors=True)
        if opened:
            os.chmod(opened, mode)


def _postfix(etc, command):
    """postfix(1) says why it fails only on a terminal or to syslog: `script`
    gives it a terminal."""
    argv = [POSTFIX, "-c", etc, command]
    if shutil.which("script"):
        argv = ["script", "-qec", " ".join(argv), "/dev/null"]
    return subprocess.run(argv, capture_output=True, text=True)


class World:
    def __init__(self, base, root, etc, procs):
        self.base, self.root, self.etc, self.procs = base, root, etc, procs

    def send(self, rcpt, data, sender="alice@example.org"):
        r = subprocess.run(["/usr/sbin/sendmail", "-C", self.etc, "-f", sender, rcpt],
                           input=data, capture_output=True)
        assert r.returncode == 0, r

    def maillog(self):
        try:
            with open(os.path.join(self.base, "maillog"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, timeout=60):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if re.search(pattern, self.maillog()):
                return
            time.sleep(0.2)
        raise AssertionError(f"{pattern!r} not in Postfix's log:\n{self.maillog()[-3000:]}")

    def flush(self):
        subprocess.run(["/usr/sbin/postqueue", "-c", self.etc, "-f"], capture_output=True)

    def admin(self, prog, *args):
        r = subprocess.run([sys.executable, "-c", f"from store.cli.{prog} import main; main()",
                            "--store-root", self.root, *args], cwd=ROOT, capture_output=True,
                           text=True)
        assert r.returncode == 0, r

    def messages(self, box="user/joe"):
        with Store.open(self.root) as s:
            return [s.message(box, r.uid) for r in s.read(box).records]


def _lmtpd_waiting(root):
    """How many times an lmtpd worker logged that stored is not ready."""
    with open(os.path.join(root, "log", "default"), encoding="utf-8", errors="replace") as f:
        return f.read().count("lmtpd: stored is not ready on")


def test_postfix_delivers_through_lmtpd_and_the_pipe_transport(world):
    world.send("joe@example.com", MSG.replace(b"{n}", b"1"))
    world.wait_log(r"to=<joe@example\.com>.*relay=.*status=sent")
    world.send("joe@pipe.example.com", MSG.replace(b"{n}", b"2"))
    world.wait_log(r"to=<joe@pipe\.example\.com>.*relay=msgstore.*status=sent")
    got = world.messages()
    assert len(got) == 2
    # byte-identical below the headers the MTA and we add (Received:, Return-Path, ...)
    for n, m in zip((b"1", b"2"), got, strict=True):
        body = MSG.replace(b"{n}", n)
        assert m.endswith(body.split(b"\n\n", 1)[1]), m
        for line in body.split(b"\n\n", 1)[0].split(b"\n"):
            assert line + b"\n" in m
        assert m.startswith(b"Return-Path: <alice@example.org>\n"), m
    world.send("nobody@example.com", MSG.replace(b"{n}", b"3"))
    world.wait_log(r"to=<nobody@example\.com>.*status=bounced .*5\.1\.1")


def test_postfix_defers_what_can_clear_and_delivers_it_later(world):
    # over quota: deferred (4.2.2), delivered once the quota is raised
    world.admin("mboxutil", "--set-quota", "user/joe", "10")  # as the store's owner
    world.send("joe@example.com", MSG.replace(b"{n}", b"q"))
    world.wait_log(r"to=<joe@example\.com>.*status=deferred .*4\.2\.2")
    world.send("joe@pipe.example.com", MSG.replace(b"{n}", b"p"))
    world.wait_log(r"to=<joe@pipe\.example\.com>.*relay=msgstore.*status=deferred")
    world.admin("mboxutil", "--set-quota", "user/joe", "none")
    world.flush()
    world.wait_log(r"to=<joe@example\.com>.*status=sent")
    world.wait_log(r"to=<joe@pipe\.example\.com>.*relay=msgstore.*status=sent")
    assert len(world.messages()) == 2

    # the store stopped: deferred, delivered once stored is back
    waiting = _lmtpd_waiting(world.root)
    stop(world.procs["stored"])
    # each of lmtpd's 2 workers logs once that it saw stored go: deliveries are deferred from then
    wait_for(lambda: _lmtpd_waiting(world.root) >= waiting + 2, 60, "lmtpd to see stored stop")
    world.send("joe@example.com", MSG.replace(b"{n}", b"s"))
    world.wait_log(r"to=<joe@example\.com>.*status=deferred .*4\.3\.0")
    world.procs["stored"] = start_stored(world.root)
    world.flush()
    t0 = time.monotonic()
    while len(world.messages()) < 3 and time.monotonic() - t0 < 120:
        world.flush()
        time.sleep(0.5)
    assert len(world.messages()) == 3

    # a lock held for longer than lmtpd waits: deferred (4.2.0), then delivered
    holder = subprocess.Popen(  # as the store's owner, like any tool of ours run as root
        [sys.executable, "-c", "import sys\nfrom store.proc import become_owner\n"
         "from store.mailbox import Store\nbecome_owner(sys.argv[1])\n"
         "with Store.open(sys.argv[1]) as s, s.lock('user/joe/INBOX'):\n"
         "    print('held', flush=True)\n    sys.stdin.read()\n", world.root],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    world.send("joe@example.com", MSG.replace(b"{n}", b"l"))
    world.wait_log(r"to=<joe@example\.com>.*status=deferred .*4\.2\.0", timeout=90)
    holder.stdin.close()
    holder.wait(30)
    t0 = time.monotonic()
    while len(world.messages()) < 4 and time.monotonic() - t0 < 120:
        world.flush()
        time.sleep(0.5)
    got = world.messages()
    assert len(got) == 4
    assert sorted(m.split(b"Subject: via postfix ")[1][:1] for m in got) == [b"l", b"p", b"q", b"s"]


def test_postfix_asks_policyd_at_rcpt_time_so_nothing_is_queued_for_a_full_mailbox(world):
    """Issue 25 (seed 004): check_policy_service answered by policyd refuses
    a full quota root (4.2.2) and an unknown user (5.1.1) in the SMTP
    dialogue, before Postfix queues anything; a user with room gets it."""
    import smtplib
    import socket

    from lmtp_harness import free_port
    policyd = subprocess.Popen([sys.executable, "-c", "from store.cli.policyd import main; main()",
                                "--store-root", world.root], cwd=ROOT, stderr=subprocess.PIPE)
    sock = os.path.join(world.root, "run", "policy")
    try:
        wait_for(lambda: os.path.exists(sock), 120, "policyd's socket")
        world.admin("mboxutil", "-c", "user/ann")
        world.admin("mboxutil", "--set-quota", "user/joe", "0")
        port = free_port()
        with open(os.path.join(world.etc, "master.cf"), "a") as f:
            f.write(f"127.0.0.1:{port} inet n - n - - smtpd\n")
        r = subprocess.run(["postconf", "-c", world.etc, "-e", "local_recipient_maps =",
                            "smtpd_recipient_restrictions = check_policy_service unix:"
                            f"{sock}, permit_mynetworks, reject_unauth_destination"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r
        assert _postfix(world.etc, "reload").returncode == 0

        def listening():
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                return True
            except OSError:
                return False
        wait_for(listening, 60, "Postfix's smtpd on loopback")
        c = smtplib.SMTP("127.0.0.1", port, timeout=60)
        c.ehlo("client.example.org")
        assert c.mail("alice@example.org")[0] == 250
        code, text = c.rcpt("joe@example.com")
        assert code == 452 and text.startswith(b"4.2.2 ") and b"Mailbox is full" in text, text
        code, text = c.rcpt("nobody@example.com")
        assert code == 550 and text.startswith(b"5.1.1 ") and text.endswith(b": User unknown"), text
        assert c.rcpt("ann@example.com")[0] == 250
        assert c.data(MSG.replace(b"{n}", b"a"))[0] == 250
        c.quit()
        world.wait_log(r"to=<ann@example\.com>.*status=sent")
        assert len(world.messages("user/ann")) == 1 and world.messages("user/joe") == []
        log = world.maillog()  # refused before the queue: NOQUEUE, never a delivery attempt
        assert re.search(r"NOQUEUE: reject: RCPT .* 452 4\.2\.2 <joe@example\.com>", log), log
        assert not re.search(r"to=<joe@example\.com>.*status=", log), log
    finally:
        stop(policyd)


def test_a_bounce_arrives_with_the_null_return_path_on_both_paths(world):
    """Issue 26: a null sender arrived as `Return-Path: <<>>` over LMTP and as
    `<MAILER-DAEMON>` through the pipe line (no null_sender=)."""
    world.send("joe@example.com", MSG.replace(b"{n}", b"n1"), sender="<>")
    world.wait_log(r"to=<joe@example\.com>.*relay=.*status=sent")
    world.send("joe@pipe.example.com", MSG.replace(b"{n}", b"n2"), sender="<>")
    world.wait_log(r"to=<joe@pipe\.example\.com>.*relay=msgstore.*status=sent")
    got = world.messages()
    assert len(got) == 2 and all(m.startswith(b"Return-Path: <>\n") for m in got), \
        [m[:60] for m in got]


DEBIAN_MASTER_CF = "/etc/postfix/master.cf"  # Debian's postinst writes it, chroot y for lmtp


@pytest.fixture
def debian_world():
    """Issue 26: Postfix with Debian's own master.cf (its lmtp client
    chrooted in the queue directory, where the store's socket path does not
    exist) and only the documented lines: lmtpd's loopback port, and no
    local_recipient_maps check of UNIX accounts."""
    from lmtp_harness import free_port
    try:
        text = open(DEBIAN_MASTER_CF, encoding="utf-8").read()
    except OSError:
        pytest.skip("no /etc/postfix/master.cf (Debian package postfix)")
    if not re.search(r"^lmtp\s+unix\s+-\s+-\s+y\s", text, re.M):
        pytest.skip("/etc/postfix/master.cf is not Debian's (lmtp not chrooted)")
    port, smtp = free_port(), free_port()
    # its SMTP listener on a free loopback port rather than everyone's port 25
    text = re.sub(r"^smtp(\s+inet\s)", f"127.0.0.1:{smtp}\\1", text, flags=re.M)
    yield from _world(text, f"mailbox_transport = lmtp:inet:127.0.0.1:{port}\n"
                            "local_recipient_maps =\n", ("--port", str(port)))


def test_debians_stock_master_cf_with_the_documented_lines_delivers_and_bounces(debian_world):
    w = debian_world
    w.send("joe@example.com", MSG.replace(b"{n}", b"d1"))
    w.wait_log(r"to=<joe@example\.com>.*relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+.*status=sent")
    assert len(w.messages()) == 1
    w.send("nobody@example.com", MSG.replace(b"{n}", b"d2"))
    w.wait_log(r"to=<nobody@example\.com>.*status=bounced .*5\.1\.1")
