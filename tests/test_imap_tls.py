"""TLS for imapd and popd: implicit TLS on the SSL ports and STARTTLS/STLS
with a configured certificate (a self-signed one made here with openssl),
and passwords in the clear refused off loopback (LOGINDISABLED)."""

import imaplib
import poplib
import re
import shutil
import ssl
import subprocess

import pytest
from lmtp_harness import free_port, start_service
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from store import accounts
from store.layout import Layout
from store.mailbox import Store

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")


def _cert(root):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", f"{root}/config/key.pem",
                    "-out", f"{root}/config/cert.pem"], check=True, capture_output=True)
    layout = Layout.open(root)
    layout.config.save({"local.service.tls.certfile": "config/cert.pem",
                        "local.service.tls.keyfile": "config/key.pem"})


@pytest.fixture
def tls_store(tmp_path):
    from lmtp_harness import start_stored, stop
    root = str(tmp_path / "store")
    with Store.init(root) as s:
        s.create("user/joe")
        s.append("user/joe", b"Subject: hi\n\nx\n")
    accounts.set_password(Layout.open(root), "joe", "pw")
    _cert(root)
    stored = start_stored(root)
    yield root
    stop(stored)


def _client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _start_tls_service(prog, root):
    sslport = free_port()
    proc, port = start_service(prog, root, sslport)
    return proc, port, sslport


def test_imap_over_implicit_tls_and_starttls(tls_store):
    proc, port, sslport = _start_tls_service("imapd", tls_store)
    try:
        c = imaplib.IMAP4_SSL("127.0.0.1", sslport, ssl_context=_client_ctx())
        assert c.login("joe", "pw")[0] == "OK"
        assert c.select("INBOX") == ("OK", [b"1"])
        c.logout()
        c = imaplib.IMAP4("127.0.0.1", port)
        assert "STARTTLS" in c.capabilities and "LOGINDISABLED" not in c.capabilities
        assert c.starttls(ssl_context=_client_ctx())[0] == "OK"
        assert c.login("joe", "pw")[0] == "OK"
        c.logout()
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, proc.stderr.read()


def test_pop_over_implicit_tls_and_stls(tls_store):
    proc, port, sslport = _start_tls_service("popd", tls_store)
    try:
        c = poplib.POP3_SSL("127.0.0.1", sslport, context=_client_ctx())
        c.user("joe")
        c.pass_("pw")
        assert c.stat()[0] == 1
        c.quit()
        c = poplib.POP3("127.0.0.1", port)
        assert "STLS" in c.capa()
        c.stls(context=_client_ctx())
        c.user("joe")
        c.pass_("pw")
        assert c.stat()[0] == 1
        c.quit()
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, proc.stderr.read()


def _session(factory_cls, store, peer):
    """A server protocol over an in-memory transport whose peer is `peer`."""
    f = factory_cls(store)
    p = f.buildProtocol(None)
    t = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
    p.makeConnection(t)
    return p, t


def test_passwords_in_the_clear_are_refused_off_loopback(tmp_path):
    from store.services.imapd import IMAPFactory
    from store.services.popd import POP3Factory
    root = str(tmp_path / "store")
    with Store.init(root) as s:
        s.create("user/joe")
        p, t = _session(IMAPFactory, s, "192.0.2.7")
        assert b"LOGINDISABLED" in t.value() and b"AUTH=PLAIN" not in t.value()
        t.clear()
        p.dataReceived(b"a LOGIN joe pw\r\n")
        assert t.value().startswith(b"a NO [PRIVACYREQUIRED]")
        t.clear()
        p.dataReceived(b"b AUTHENTICATE PLAIN\r\n")
        assert t.value().startswith(b"b NO [PRIVACYREQUIRED]")
        p, t = _session(IMAPFactory, s, "127.0.0.1")
        assert b"LOGINDISABLED" not in t.value() and b"AUTH=PLAIN" in t.value()
        p, t = _session(POP3Factory, s, "192.0.2.7")
        t.clear()
        p.dataReceived(b"CAPA\r\n")
        assert b"\r\nUSER\r\n" not in t.value()
        t.clear()
        p.dataReceived(b"USER joe\r\n")
        assert t.value().startswith(b"-ERR [SYS/PERM]")


def _handshake(port: int, *args: str) -> str | None:
    """The cipher `openssl s_client` agreed on with these options, or None."""
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    m = re.search(r"Cipher is (\S+)", r.stdout)
    return m.group(1) if m and m.group(1) != "(NONE)" and r.returncode == 0 else None


def test_tls_offers_forward_secret_aead_suites_only(tls_store):
    proc, _port, sslport = _start_tls_service("imapd", tls_store)
    try:
        for weak in ("AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA",
                     "DHE-RSA-AES256-SHA256", "ECDHE-RSA-AES256-SHA384"):
            assert _handshake(sslport, "-tls1_2", "-cipher", weak) is None, weak
        assert _handshake(sslport, "-tls1_2", "-cipher",
                          "ECDHE-RSA-AES128-GCM-SHA256") == "ECDHE-RSA-AES128-GCM-SHA256"
        assert _handshake(sslport, "-tls1_3") is not None
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, proc.stderr.read()
    Layout.open(tls_store).config.set("local.service.tls.profile", "modern")
    proc, _port, sslport = _start_tls_service("imapd", tls_store)
    try:
        assert _handshake(sslport, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256") is None
        assert _handshake(sslport, "-tls1_3") is not None
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, proc.stderr.read()
