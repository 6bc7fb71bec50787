"""imapd: IMAP4rev1 access to the store, on Twisted's `twisted.mail.imap4`
server, whose account, mailbox and message interfaces are implemented here
over the store's API (issue 13, first part: the personal namespace, no
keywords, no IDLE notifications, no TLS yet).

Names: a user's INBOX is `INBOX`, its folders `Sent`, `Lists/dev`, ...
(`user/<id>/Sent` in the store). Flags: the five system flags of the
index; `\\Recent` is not kept (always 0 recent).

Every store call runs in the reactor's thread: they are short (an index
read, a file read, an append with its fsyncs); the password check (an
argon2 hash, ~0.1 s) runs in a thread so that it holds no one up."""

from __future__ import annotations

import email
import email.utils
import io
import re

from twisted.internet import defer, protocol
from twisted.mail import imap4
from zope.interface import implementer

from ..errors import StoreError
from ..index import FLAG_NAMES, flags_to_names, names_to_flags
from ..layout import INBOX, USER_NS
from ..mailbox import Store
from ..message import to_crlf
from .login import StoredReadiness, login_portal, serve

DELIMITER = "/"
_NAME_OF_FLAG = {n.lower(): bit for bit, n in FLAG_NAMES.items()}


class Part:
    """A message or one of its MIME parts, as imap4.IMessagePart wants it."""

    def __init__(self, msg: email.message.Message, raw: bytes | None = None):
        self._msg = msg
        self._raw = raw

    def getHeaders(self, negate, *names):
        want = {_text(n).lower() for n in names}
        out = {}
        for k, v in self._msg.items():
            if not names or (k.lower() in want) != negate:
                out[k.lower()] = str(v)
        return out

    def getBodyFile(self):
        if self._raw is not None:  # the top level: the stored bytes after the header
            end = _header_end(self._raw)
            return io.BytesIO(self._raw[end:])
        payload = self._msg.get_payload(decode=False)
        if isinstance(payload, list):
            payload = "".join(p.as_string() for p in payload)
        return io.BytesIO(payload.encode("utf-8", "surrogateescape"))

    def getSize(self):
        if self._raw is not None:
            return len(self._raw)
        return len(self._msg.as_bytes())

    def isMultipart(self):
        return self._msg.is_multipart()

    def getSubPart(self, part):
        if not self._msg.is_multipart():
            raise IndexError(part)
        return Part(self._msg.get_payload()[part])


def _text(value: str | bytes) -> str:
    """Twisted hands names, flags and dates as bytes or str, by command."""
    return value.decode() if isinstance(value, bytes) else value


def _flag_bits(flags) -> tuple[int, list[str]]:
    """(the index bits of the system flags among `flags`, the keywords)."""
    names = [_text(f) for f in flags]
    keywords = [n for n in names if n.lower() not in _NAME_OF_FLAG]
    return names_to_flags(" ".join(n for n in names if n not in keywords)), keywords


def _header_end(raw: bytes) -> int:
    m = re.search(rb"\r?\n\r?\n", raw)
    return m.end() if m else len(raw)


@implementer(imap4.IMessage)
class Message(Part):
    """A stored message as IMAP serves it: with CRLF line ends (RFC 3501;
    the store keeps LF, as Dovecot's maildir does), RFC822.SIZE counting them."""

    def __init__(self, raw: bytes, rec):
        wire = to_crlf(raw)
        super().__init__(email.message_from_bytes(wire), wire)
        self.rec = rec

    def getUID(self):
        return self.rec.uid

    def getFlags(self):
        return flags_to_names(self.rec.flags)

    def getInternalDate(self):
        return email.utils.formatdate(self.rec.internaldate)


@implementer(imap4.IMailbox)
class Mailbox:
    """One selected mailbox. The records are read at SELECT and again after
    every change this session makes."""

    def __init__(self, store: Store, name: str, rw: bool):
        self._store, self.name, self.rw = store, name, rw
        self.listeners: list = []
        self._load()

    def _load(self) -> None:
        idx = self._store.read(self.name)
        if idx.problems:
            raise imap4.MailboxException(f"{self.name} is damaged: run reconstruct")
        self.header, self.records = idx.header, idx.records

    def getUIDValidity(self):
        return self.header.uidvalidity

    def getUIDNext(self):
        return self.header.uidnext

    def getUID(self, message):
        return self.records[message - 1].uid

    def getMessageCount(self):
        return len(self.records)

    def getRecentCount(self):
        return 0

    def getUnseenCount(self):
        return sum(1 for r in self.records if not r.flags & _NAME_OF_FLAG["\\seen"])

    def isWriteable(self):
        return self.rw

    def getFlags(self):
        return list(FLAG_NAMES.values())

    def getHierarchicalDelimiter(self):
        return DELIMITER

    def destroy(self):
        self._store.delete(self.name)

    def requestStatus(self, names):
        return imap4.statusRequestHelper(self, names)

    def addListener(self, listener):
        self.listeners.append(listener)

    def removeListener(self, listener):
        self.listeners.remove(listener)

    def _selected(self, messages, uid):
        """(seq, record) for a message set, by sequence number or UID."""
        if uid:
            messages.last = self.records[-1].uid if self.records else 1
            return [(i, r) for i, r in enumerate(self.records, 1) if r.uid in messages]
        messages.last = len(self.records) or 1
        return [(i, self.records[i - 1]) for i in messages if 0 < i <= len(self.records)]

    def fetch(self, messages, uid):
        for seq, rec in self._selected(messages, uid):
            yield seq, Message(self._store.message(self.name, rec.uid), rec)

    def store(self, messages, flags, mode, uid):  # noqa: A003 - the interface's name
        bits, keywords = _flag_bits(flags)
        if keywords:
            raise imap4.MailboxException(f"keywords are not supported yet: {' '.join(keywords)}")
        how = {-1: "remove", 0: "set", 1: "add"}[mode]
        out = {}
        for seq, rec in self._selected(messages, uid):
            out[seq] = flags_to_names(self._store.set_flags(self.name, rec.uid, bits, how))
        self._load()
        return out

    def expunge(self):
        seq_of = {r.uid: i for i, r in enumerate(self.records, 1)}
        gone = self._store.expunge(self.name)
        self._load()
        return sorted((seq_of[u] for u in gone if u in seq_of), reverse=True)

    def addMessage(self, message, flags=(), date=None):
        bits, _keywords = _flag_bits(flags)  # an APPEND's keywords are dropped, not refused
        when = None
        if date:
            when = int(email.utils.parsedate_to_datetime(_text(date)).timestamp())
        data = message.read()
        try:
            uid = self._store.append(self.name, data, flags=bits, internaldate=when)
        except StoreError as e:
            return defer.fail(imap4.MailboxException(str(e)))
        self._load()
        return defer.succeed(uid)


@implementer(imap4.IMailboxInfo)
class MailboxInfo:
    def getFlags(self):
        return []

    def getHierarchicalDelimiter(self):
        return DELIMITER


@implementer(imap4.IAccount)
class Account:
    """A logged-in user: the personal namespace only (INBOX and its folders)."""

    def __init__(self, store: Store, user: str):
        self.store, self.user = store, user
        self.inbox = f"{USER_NS}/{user}/{INBOX}"

    def _store_name(self, name) -> str:
        name = _text(name)
        if name.upper() == INBOX:
            return self.inbox
        if name.upper().startswith(INBOX + DELIMITER):
            name = name[len(INBOX) + 1:]
        return f"{USER_NS}/{self.user}/{name}"

    def _imap_name(self, store_name: str) -> str:
        if store_name == self.inbox:
            return INBOX
        return store_name[len(f"{USER_NS}/{self.user}/"):]

    def listMailboxes(self, ref, wildcard):
        rx = imap4.wildcardToRegexp(_text(ref) + _text(wildcard), DELIMITER)
        names = [i.name for i in self.store.list(f"{USER_NS}/{self.user}/*")]
        return [(n, MailboxInfo()) for n in map(self._imap_name, names) if rx.match(n)]

    def select(self, name, rw=True):
        box = self._store_name(name)
        if not self.store.exists(box):
            return None
        return Mailbox(self.store, box, rw)

    def create(self, pathspec):
        box = self._store_name(_text(pathspec).rstrip(DELIMITER))
        if self.store.exists(box):
            return False
        self.store.create(box)
        return True

    def addMailbox(self, name, mbox=None):
        return self.create(name)

    def delete(self, name):
        box = self._store_name(name)
        if box == self.inbox:
            raise imap4.MailboxException("INBOX cannot be deleted")
        self.store.delete(box)
        return True

    def rename(self, oldname, newname):
        self.store.rename(self._store_name(oldname), self._store_name(newname))
        return True

    def isSubscribed(self, name):
        return self._store_name(name) in self.store.subscriptions(self.user)

    def subscribe(self, name):
        self.store.set_subscribed(self.user, self._store_name(name), True)
        return True

    def unsubscribe(self, name):
        self.store.set_subscribed(self.user, self._store_name(name), False)
        return True


class IMAPServer(imap4.IMAP4Server):
    """Twisted's server, refusing logins while stored is not ready: the
    database may be checked or recovered, and a session would see it
    half-way (RFC 5530's UNAVAILABLE, as Dovecot and Cyrus answer)."""

    def _login_when_ready(self, tag, user, passwd):
        if not self.factory.stored_ready():
            self.sendNegativeResponse(tag, b"[UNAVAILABLE] the message store is not ready; "
                                           b"try again later")
            return
        imap4.IMAP4Server.do_LOGIN(self, tag, user, passwd)

    unauth_LOGIN = (_login_when_ready, imap4.IMAP4Server.arg_astring,
                    imap4.IMAP4Server.arg_finalastring)


class IMAPFactory(protocol.Factory):
    def __init__(self, store: Store):
        self.store = store
        self.portal = login_portal(store, "imapd", imap4.IAccount, Account)
        self.stored_ready = StoredReadiness(store.layout)

    def buildProtocol(self, addr):
        p = IMAPServer()
        p.portal = self.portal
        p.factory = self
        p.challengers = {b"PLAIN": imap4.PLAINCredentials}
        return p


def run(root: str, address: str, port: int) -> None:
    """imapd in the foreground until SIGTERM."""
    serve("imapd", root, address, port, IMAPFactory)
