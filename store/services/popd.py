"""popd: POP3 access to a user's INBOX, on Twisted's `twisted.mail.pop3`
server, its mailbox interface implemented over the store (issue 13).

USER/PASS only (APOP is refused: it needs the plain password on the
server). UIDL is `<UIDVALIDITY>.<UID>`, stable across sessions and
reconstruct. DELE marks; QUIT applies the marks as an expunge (\\Deleted,
then the records move to store.exp; stored erases the files later), so a
session cut off deletes nothing. Messages are served with CRLF line ends
(Twisted adds them); LIST's sizes count them."""

from __future__ import annotations

import io

from twisted.internet import protocol
from twisted.mail import pop3
from zope.interface import implementer

from .. import logmsg, settings
from ..index import FLAG_DELETED
from ..layout import INBOX, USER_NS
from ..mailbox import FlagMode, Store
from ..message import crlf_size
from . import telemetry
from .login import (
    Refused,
    StoredReadiness,
    address_of,
    is_secure,
    login_portal,
    password_login,
    peer_of,
    plaintext_refused,
    serve,
)
from .sessions import SessionLimit


@implementer(pop3.IMailbox)
class Maildrop:
    """The user's INBOX as it was at login: POP3 numbers stay fixed for the
    session (RFC 1939)."""

    def __init__(self, store: Store, user: str):
        self._store = store
        self.name = f"{USER_NS}/{user}/{INBOX}"
        idx = store.read(self.name)
        if idx.problems and store.settle(self.name):  # an append a kill cut off
            idx = store.read(self.name)
        if idx.problems:
            logmsg.log("popd", logmsg.MAILBOX_REFUSED_DAMAGED, service="popd", mailbox=self.name,
                       user=user, error=idx.problems[0])
            raise pop3.POP3Error(f"{self.name} is damaged: run reconstruct")
        self.uidvalidity = idx.header.uidvalidity
        self.records = idx.records
        self.deleted: set[int] = set()
        self._sizes: list[int] | None = None  # as sent (CRLF), read once per session

    def listMessages(self, index=None):
        if self._sizes is None:
            self._sizes = [crlf_size(self._raw(r.uid)) for r in self.records]
        sizes = [0 if i in self.deleted else n for i, n in enumerate(self._sizes)]
        return sizes if index is None else sizes[index]

    def _raw(self, uid: int) -> bytes:
        return self._store.message(self.name, uid)

    def getMessage(self, index):
        if index in self.deleted:
            raise ValueError("deleted")
        # Twisted sends each line with CRLF itself: hand it LF line ends
        return io.BytesIO(self._raw(self.records[index].uid).replace(b"\r\n", b"\n"))

    def getUidl(self, index):
        return f"{self.uidvalidity}.{self.records[index].uid}".encode()

    def deleteMessage(self, index):
        self.records[index]  # noqa: B018 - IndexError for a message that is not there
        self.deleted.add(index)

    def undeleteMessages(self):
        self.deleted.clear()

    def sync(self):
        if not self.deleted:
            return
        uids = [self.records[i].uid for i in sorted(self.deleted)]
        for uid in uids:
            self._store.set_flags(self.name, uid, FLAG_DELETED, FlagMode.ADD)
        # only what this session deleted: a message an IMAP client flagged \Deleted and
        # never expunged is not POP's to remove (as Dovecot's pop3)
        self._store.expunge(self.name, uids)
        self.deleted.clear()


class POP3Server(pop3.POP3):
    _telemetry = None
    AUTH_CMDS = pop3.POP3.AUTH_CMDS + [b"STLS"]

    def listCapabilities(self):
        caps = pop3.POP3.listCapabilities(self)
        if plaintext_refused(self.transport):
            caps.remove(b"USER")
        if self.factory.tls is not None and not is_secure(self.transport):
            caps.append(b"STLS")
        return caps

    def do_STLS(self):
        if self.mbox or self.factory.tls is None or is_secure(self.transport):
            self.failResponse(b"STLS not available here")
            return
        self.successResponse(b"Begin TLS negotiation now")
        self.transport.startTLS(self.factory.tls)

    def do_USER(self, user):
        if plaintext_refused(self.transport):
            self.failResponse(b"[SYS/PERM] a password in the clear is accepted only on "
                              b"loopback: use STLS or the TLS port")
            return
        pop3.POP3.do_USER(self, user)

    def _cbMailbox(self, result, user):
        self._telemetry = telemetry.attach(self, self.factory.layout, "pop",
                                           user.decode("utf-8", "replace"))
        pop3.POP3._cbMailbox(self, result, user)

    def lineReceived(self, line):
        if self._telemetry is not None:
            self._telemetry.client(line)
        pop3.POP3.lineReceived(self, line)

    def connectionLost(self, reason):
        self.factory.limit.live -= 1
        pop3.POP3.connectionLost(self, reason)
        if self._telemetry is not None:
            self._telemetry.close()

    def authenticateUserPASS(self, user, password):
        return password_login(self.portal, user, password, peer_of(self.transport),
                              pop3.IMailbox)

    def do_APOP(self, user, digest):
        self.failResponse(b"APOP is not offered: use USER and PASS")

    def do_PASS(self, password, *words):
        if not self.factory.stored_ready():
            self._userIs = None
            self.failResponse(b"[SYS/TEMP] the message store is not ready; try again later")
            return
        pop3.POP3.do_PASS(self, password, *words)


class POP3Factory(protocol.ServerFactory):
    def __init__(self, store: Store, tls=None):
        self.tls = tls
        self.layout = store.layout
        self.portal = login_portal(store, "popd", pop3.IMailbox, Maildrop)
        self.stored_ready = StoredReadiness(store)
        self.limit = SessionLimit("popd", settings.POP_MAX_SESSIONS.name,
                                  store.layout.config.get_int(settings.POP_MAX_SESSIONS))

    def buildProtocol(self, addr):
        reason = self.limit.refusal()
        if reason is not None:
            self.limit.refused(address_of(addr), reason)
            return Refused(b"-ERR [SYS/TEMP] " + reason.encode() + b"; try again later\r\n")
        self.limit.live += 1
        p = POP3Server()
        p.portal = self.portal
        p.factory = self
        return p


def run(root: str, address: str, port: int, sslport: int = 0) -> None:
    """popd in the foreground until SIGTERM."""
    serve("popd", root, address, port, sslport, POP3Factory)
