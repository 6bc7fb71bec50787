"""What imapd and popd share: the password check (twisted.cred over
accounts.verify), whether stored is ready, and running a Twisted service
in the foreground."""

from __future__ import annotations

import os
import time
from typing import Any

from twisted.cred import checkers, credentials, error, portal
from twisted.internet import defer, protocol, threads
from zope.interface import implementer

from .. import accounts, logmsg, settings
from ..daemon import state
from ..errors import SettingError, StoreError
from ..layout import Layout
from ..mailbox import Store

FAILED_LOGIN_DELAY = 1.0  # seconds, on top of the hash check, before the refusal is sent
READY_POLL = 0.5  # seconds a look at stored's state is good for


@implementer(checkers.ICredentialsChecker)
class PasswordChecker:
    """The user's password against config/passwd. The hash check runs in a
    thread (~0.1 s of argon2); a failure is answered FAILED_LOGIN_DELAY
    later and logged; the password is never logged."""

    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self, store: Store, service: str):
        self.store, self.service = store, service

    def requestAvatarId(self, creds):
        peer = getattr(creds, "peer", UNKNOWN_PEER)
        user = creds.username.decode("utf-8", "replace")
        password = creds.password.decode("utf-8", "replace")
        d = threads.deferToThread(accounts.verify, self.store.layout, user, password)

        def checked(ok):
            if ok:
                logmsg.log(self.service, logmsg.LOGIN, service=self.service, user=user,
                           peer=peer)
                return user.encode()
            logmsg.log(self.service, logmsg.LOGIN_FAILED, service=self.service, user=user,
                       peer=peer)
            from twisted.internet import reactor
            later = defer.Deferred()
            reactor.callLater(FAILED_LOGIN_DELAY, later.errback,
                              error.UnauthorizedLogin("bad user or password"))
            return later
        return d.addCallback(checked)


UNKNOWN_PEER = "an unknown address"  # a protocol driven in-process has no peer


def host_of(addr) -> str:
    """The client's address as the log names it (fail2ban's <HOST>), from
    the address buildProtocol is given (None in-process)."""
    return getattr(addr, "host", None) or UNKNOWN_PEER


def peer_of(transport) -> str:
    """host_of the transport's peer."""
    return host_of(transport.getPeer() if transport is not None else None)


def address_of(addr) -> str:
    """`host:port` of a connection's peer, for a refused connection's line."""
    host = host_of(addr)
    return f"{host}:{addr.port}" if host != UNKNOWN_PEER else host


def password_login(portal_: portal.Portal, user: bytes, password: bytes, peer: str, interface):
    """A USER/PASS or LOGIN login through the portal, its client's address
    with the credentials, for the log."""
    creds: Any = credentials.UsernamePassword(user, password)  # an ICredentials (zope)
    creds.peer = peer
    return portal_.login(creds, None, interface)


class PlainCredentials(credentials.UsernamePassword):
    """SASL PLAIN (RFC 4616): `authzid NUL authcid NUL password`. Twisted's
    own drops the authorization identity, so that `bob NUL alice NUL pw`
    logs alice in while the client believes it acts as bob; no one here may
    act as another user (there are no proxy administrators), so an authzid
    other than the authcid is refused."""

    def __init__(self, peer: str = UNKNOWN_PEER):
        super().__init__(b"", b"")  # setResponse gives both
        self.peer = peer

    def getChallenge(self):
        return b""

    def setResponse(self, response):
        from twisted.mail.imap4 import IllegalClientResponse
        parts = response.split(b"\0")
        if len(parts) != 3:
            raise IllegalClientResponse("Malformed Response - wrong number of parts")
        authzid, self.username, self.password = parts
        if authzid and authzid != self.username:
            raise IllegalClientResponse("authorization identity differs from the "
                                        "authentication identity: not permitted")

    def moreChallenges(self):
        return False


@implementer(portal.IRealm)
class Realm:
    """A logged-in user's avatar for one service: what `make(store, user)`
    returns, as `interface`; the logout is logged."""

    def __init__(self, store: Store, service: str, interface, make):
        self.store, self.service, self.interface, self.make = store, service, interface, make

    def requestAvatar(self, avatar_id, mind, *interfaces):
        if self.interface not in interfaces:
            raise NotImplementedError(f"{self.service} serves {self.interface.__name__} only")
        user = avatar_id.decode()

        def logout():
            logmsg.log(self.service, logmsg.LOGOUT, service=self.service, user=user)
        return self.interface, self.make(self.store, user), logout


def login_portal(store: Store, service: str, interface, make) -> portal.Portal:
    """Users of config/passwd logging in to `make(store, user)`."""
    return portal.Portal(Realm(store, service, interface, make),
                         [PasswordChecker(store, service)])


class StoredReadiness:
    """Called: whether stored is ready, looked at most every READY_POLL s.
    A new stored process may have put a recovered database in place: the
    store's handle is closed then, and the next use opens the new one (the
    services call the store from one thread, so nothing uses it meanwhile)."""

    def __init__(self, store: Store):
        self.store = store
        self._seen = (0.0, False)
        self._pid: int | None = None

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self._seen[0] > READY_POLL:
            st = state.running(self.store.layout)
            ready = st is not None and st["state"] == state.READY
            if ready and self._pid is not None and st["pid"] != self._pid:
                self.store.close()
            if ready:
                self._pid = st["pid"]
            self._seen = (now, ready)
        return self._seen[1]


def tls_context(layout: Layout):
    """The TLS context of local.service.tls.certfile/keyfile, or None when
    no certificate is set. A file that cannot be loaded is a SettingError
    (the service does not start half-secure)."""
    cert = layout.config.get(settings.TLS_CERT_FILE)
    if not cert:
        return None
    key = layout.config.get(settings.TLS_KEY_FILE) or cert
    cert, key = (p if os.path.isabs(p) else os.path.join(layout.root, p) for p in (cert, key))
    for path in {cert, key}:
        if not os.path.isfile(path):
            raise SettingError(f"local.service.tls.certfile/keyfile: {path} is not a file")
    from OpenSSL import SSL
    from twisted.internet import ssl
    try:
        factory = ssl.DefaultOpenSSLContextFactory(key, cert, sslmethod=SSL.TLS_METHOD)
    except (OSError, SSL.Error) as e:
        raise SettingError(f"local.service.tls.certfile/keyfile: {cert} with key {key} is not "
                           f"a PEM certificate and its key ({e.__class__.__name__})") from None
    ctx = factory.getContext()
    if layout.config.get(settings.TLS_PROFILE) == "modern":
        ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    else:
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_cipher_list(INTERMEDIATE_CIPHERS.encode())
    ctx.set_options(SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_COMPRESSION
                    | SSL.OP_NO_RENEGOTIATION)
    return factory


# Mozilla's "intermediate" server profile (ssl-config.mozilla.org, version 5.7): for TLS 1.2
# only forward-secret key exchange (ECDHE, DHE) with AEAD ciphers; TLS 1.3's suites are all
# of that kind and are OpenSSL's defaults.
INTERMEDIATE_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305"))


def is_loopback(transport) -> bool:
    host = getattr(transport.getPeer(), "host", "")
    return host.startswith("127.") or host == "::1" or host.startswith("::ffff:127.")


def is_secure(transport) -> bool:
    """TLS from the start (the SSL port) or after STARTTLS/STLS."""
    from twisted.internet.interfaces import ISSLTransport
    return ISSLTransport.providedBy(transport) or ISSLTransport.providedBy(
        getattr(transport, "_transport", None))  # behind telemetry's RecordingTransport


def plaintext_refused(transport) -> bool:
    """A password in the clear is refused off loopback before TLS (RFC 3501
    6.2.3, RFC 2595): the one rule imapd and popd both apply."""
    return not is_secure(transport) and not is_loopback(transport)


class Refused(protocol.Protocol):
    """A connection a service cannot take now: one line saying so, then closed."""

    def __init__(self, line: bytes):
        self.line = line

    def connectionMade(self):
        self.transport.write(self.line)
        self.transport.loseConnection()


def serve(service: str, root: str, address: str, port: int, sslport: int, factory) -> None:
    """`factory(store, tls)` listening on address:port and, with a
    certificate, with TLS on address:sslport (0: no such listener), until
    SIGTERM (Twisted's reactor stops on it); READY for systemd once
    listening."""
    from twisted.internet import reactor
    from twisted.logger import globalLogPublisher

    from ..proc import sd_notify

    def failures(event) -> None:
        """What Twisted catches in a session (a command's unexpected error,
        answered BAD Server error) goes to the default log with its traceback."""
        f = event.get("log_failure")
        if f is not None:
            logmsg.log_internal(service, service, f.value, f.getTraceback())
    globalLogPublisher.addObserver(failures)  # type: ignore[arg-type]
    store = Store.open(root)
    tls = tls_context(store.layout)
    f = factory(store, tls)
    from twisted.internet.error import CannotListenError
    wheres = []
    try:
        if port:
            listener = reactor.listenTCP(port, f, interface=address)
            wheres.append(f"{address}:{listener.getHost().port}")
        if sslport and tls is not None:
            listener = reactor.listenSSL(sslport, f, tls, interface=address)
            wheres.append(f"{address}:{listener.getHost().port} (TLS)")
    except CannotListenError as e:  # another server has the port: one line, exit 8
        store.close()
        why = getattr(e.socketError, "strerror", None) or e.socketError
        raise StoreError(f"{service}: cannot listen on {e.interface or address}:{e.port}: "
                         f"{why}") from None
    where = ", ".join(wheres)

    def ready():
        logmsg.log(service, logmsg.SERVICE_READY, service=service, where=where)
        sd_notify("READY=1")
    reactor.callWhenRunning(ready)
    reactor.run()
    store.close()
    logmsg.log(service, logmsg.SERVICE_STOPPED, service=service, where=where)
