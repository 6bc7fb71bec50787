"""Issue 26: fail2ban can act on the services' failed logins. The real
fail2ban-regex (Debian package fail2ban, which .ci/run installs) reads a log
imapd and popd wrote, with the filter shipped in contrib/: every failed
login of IMAP (LOGIN and AUTHENTICATE PLAIN) and POP3 matches, with its
address, and nothing else does (successful logins, a user name that tries
to forge an address)."""

import imaplib
import os
import poplib
import re
import shutil
import subprocess

import pytest
from conftest import ROOT
from lmtp_harness import start_service, start_stored, stop

from store import accounts
from store.layout import Layout
from store.mailbox import Store

FAIL2BAN_REGEX = shutil.which("fail2ban-regex")
FILTER = os.path.join(ROOT, "contrib", "fail2ban", "filter.d", "msgstore.conf")
pytestmark = pytest.mark.skipif(FAIL2BAN_REGEX is None,
                                reason="fail2ban is not installed (Debian package fail2ban)")


def test_fail2ban_regex_matches_every_failed_login_and_nothing_else(tmp_path):
    root = str(tmp_path / "store")
    with Store.init(root) as s:
        s.create("user/joe")
    accounts.set_password(Layout.open(root), "joe", "pw")
    stored = start_stored(root)
    imapd, iport = start_service("imapd", root)
    popd, pport = start_service("popd", root)
    try:
        c = imaplib.IMAP4("127.0.0.1", iport)
        for user in ("joe", "nobody", '"x from 10.9.9.9"'):  # imaplib quotes only passwords
            with pytest.raises(imaplib.IMAP4.error):
                c.login(user, "wrong")
        with pytest.raises(imaplib.IMAP4.error):
            c.authenticate("PLAIN", lambda _challenge: b"\0joe\0wrong")
        c.login("joe", "pw")  # a success: not a match
        c.logout()
        p = poplib.POP3("127.0.0.1", pport)
        p.user("joe")
        with pytest.raises(poplib.error_proto):
            p.pass_("wrong")
        p.quit()
        p = poplib.POP3("127.0.0.1", pport)
        p.user("joe")
        p.pass_("pw")
        p.quit()
    finally:
        stop(popd)
        stop(imapd)
        stop(stored)
    log = os.path.join(root, "log", "default")
    text = open(log, encoding="utf-8").read()
    failed = text.count("login failed for ")
    assert failed == 5 and text.count(" logged in from 127.0.0.1") == 2, text[-3000:]
    r = subprocess.run([FAIL2BAN_REGEX, log, FILTER], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"^Failregex: (\d+) total", r.stdout, re.M)
    assert m and int(m.group(1)) == failed, r.stdout  # every failed login, nothing else
    r = subprocess.run([FAIL2BAN_REGEX, "-o", "ip", log, FILTER], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["127.0.0.1"] * failed, r.stdout  # never the forged 10.9.9.9
