"""imapd: IMAP4rev1 access to the store, on Twisted's `twisted.mail.imap4`
server, with its account interface implemented here (the mailbox is in
imapbox.py, the names in imapnames.py).

What it adds to Twisted's server: the three namespaces and ACL rights on
every command (NO [NOPERM]); SELECT's PERMANENTFLAGS, UNSEEN and UIDNEXT;
\\Seen set by a FETCH of a body; keywords; UIDPLUS (APPENDUID, COPYUID,
UID EXPUNGE); UNSELECT; IDLE and NOOP telling what other sessions and
deliveries did (each selected mailbox is polled every POLL_INTERVAL);
NO [UNAVAILABLE] while stored is not ready.

Every store call runs in the reactor's thread: they are short (an index
read, a file read, an append with its fsyncs); the password check (an
argon2 hash, ~0.1 s) runs in a thread so that it holds no one up."""

from __future__ import annotations

import email.utils
import functools
import re
import weakref

from twisted.internet import defer, protocol, task
from twisted.mail import imap4
from twisted.python import log
from zope.interface import implementer

from .. import logmsg, settings
from ..errors import CorruptionError, InvalidNameError, NoSuchMailboxError, StoreError
from ..mailbox import Store, pattern_to_regex, quota_root_mailbox
from . import imapfetch, telemetry
from .imapbox import Mailbox, NoPermission, refused, text
from .imapnames import DELIMITER, NAMESPACES, Names, parents
from .login import (
    PlainCredentials,
    Refused,
    StoredReadiness,
    address_of,
    host_of,
    login_portal,
    password_login,
    peer_of,
    plaintext_refused,
    serve,
)
from .sessions import SessionLimit

POLL_INTERVAL = 0.5  # seconds: IDLE hears of a delivery within this
REFUSED = object()  # what IMAPServer._run returns once it has answered NO
PRIVACY_REQUIRED = (b"[PRIVACYREQUIRED] a password in the clear is accepted only on loopback: "
                    b"use STARTTLS or the TLS port")


@implementer(imap4.IMailboxInfo)
class ListInfo:
    def __init__(self, flags: list[str]):
        self.flags = flags

    def getFlags(self):
        return self.flags

    def getHierarchicalDelimiter(self):
        return DELIMITER


@implementer(imap4.IAccount)
class Account:
    """A logged-in user: their personal namespace, and what other users and
    shared folders their ACL rights show them."""

    def __init__(self, store: Store, user: str):
        self.store, self.user = store, user
        self.names = Names(user)

    # -- names and rights -------------------------------------------------------------
    def store_name(self, name) -> str:
        try:
            return self.names.to_store(text(name))
        except InvalidNameError as e:
            raise imap4.MailboxException(str(e)) from None

    def rights(self, store_name: str) -> str:
        """The user's rights; a mailbox they may neither see nor read does
        not exist for them (RFC 4314 6)."""
        try:
            r = self.store.rights(store_name, self.user)
        except NoSuchMailboxError:
            return ""
        return r if set(r) & set("lr") else ""

    def visible(self) -> list[str]:
        """Store names of the mailboxes LIST shows: the user's own and the
        others whose ACL gives them `l`."""
        own = [i.name for i in self.store.list(f"user/{self.user}/*")]
        others = [n for n in self.store.shared_with(self.user) if "l" in self.rights(n)]
        return own + others

    # -- IAccount ---------------------------------------------------------------------
    def listMailboxes(self, ref, wildcard):
        if not text(wildcard):  # RFC 3501 6.3.8: the delimiter and the reference's root
            return [(text(ref).split(DELIMITER)[0], ListInfo(["\\Noselect"]))]
        # Twisted's wildcardToRegexp is neither anchored nor case-sensitive
        pattern = text(ref) + text(wildcard)
        rx, rx_inbox = pattern_to_regex(pattern), re.compile(pattern_to_regex(pattern).pattern,
                                                              re.I)
        names = {self.names.to_imap(n) for n in self.visible()}
        kids = {p for n in names for p in parents(n)}
        out = []
        for n in sorted(names | kids):
            if rx.match(n) or (n == "INBOX" and rx_inbox.match(n)):
                flags = [] if n in names else ["\\Noselect"]
                flags.append("\\HasChildren" if n in kids else "\\HasNoChildren")
                out.append((n, ListInfo(flags)))
        return out

    def select(self, name, rw=True):
        """A mailbox as the target of APPEND, COPY or STATUS (SELECT goes
        through open_session)."""
        box = self.store_name(name)
        rights = self.rights(box)
        if not rights:
            return None
        if "r" not in rights and not rw:
            raise NoPermission(f"[NOPERM] you may not read {text(name)}")
        return Mailbox(self.store, self.user, box, rights)

    def open_session(self, name, rw: bool) -> Mailbox | None:
        box = self.store_name(name)
        rights = self.rights(box)
        if not rights:
            return None
        if "r" not in rights:
            raise NoPermission(f"[NOPERM] you may not read {text(name)}")
        return Mailbox(self.store, self.user, box, rights, rw=rw, session=True)

    def create(self, pathspec):
        box = self.store_name(text(pathspec).rstrip(DELIMITER))
        if self.store.exists(box):
            return False
        # rights and limits are the mailbox layer's (a StoreError: IMAPServer._run answers
        # NO with its code)
        self.store.create(box, actor=self.user)
        return True

    def addMailbox(self, name, mbox=None):
        return self.create(name)

    def delete(self, name):
        box = self.store_name(name)
        if box == self.names.to_store("INBOX"):
            raise imap4.MailboxException("INBOX cannot be deleted")
        if "x" not in self.rights(box):
            raise NoPermission(f"[NOPERM] you may not delete {text(name)}")
        self.store.delete(box)  # a StoreError: IMAPServer._run answers NO with its code
        return True

    def rename(self, oldname, newname):
        old, new = self.store_name(oldname), self.store_name(newname)
        if not self.rights(old):  # RFC 4314 6: not there for them
            raise imap4.MailboxException(f"no such mailbox {text(oldname)}")
        self.store.rename(old, new, actor=self.user)  # rights checked by the mailbox layer
        return True

    # -- QUOTA (RFC 9208) ----------------------------------------------------------------
    def quota_root(self, name) -> str | None:
        """The quota root of a mailbox the user sees ("" for none); None when
        they do not see it."""
        box = self.store_name(name)
        if not self.rights(box):
            return None
        return self.store.entry(box).quotaroot

    def quota(self, root: str) -> dict | None:
        """The usage and limits of a quota root whose mailbox the user sees."""
        try:
            visible = bool(self.rights(quota_root_mailbox(root)))
        except StoreError:  # not a root's name at all
            return None
        rows = self.store.quotas(root) if visible else []
        return rows[0] if rows else None

    def isSubscribed(self, name):
        return self.store_name(name) in self.store.subscriptions(self.user)

    def subscribe(self, name):
        self.store.set_subscribed(self.user, self.store_name(name), True)
        return True

    def unsubscribe(self, name):
        self.store.set_subscribed(self.user, self.store_name(name), False)
        return True


class IMAPServer(imap4.IMAP4Server):
    """Twisted's server with what imapd adds (see the module's text)."""

    IDENT = b"msgstore IMAP4rev1 ready"
    ALWAYS = {b"CAPABILITY", b"LOGOUT", b"NOOP", b"DONE"}  # answered while stored is not ready

    def capabilities(self):
        cap = imap4.IMAP4Server.capabilities(self)
        cap.pop(b"LOGINDISABLED", None)  # Twisted's: whenever STARTTLS is offered
        if plaintext_refused(self.transport):
            cap[b"LOGINDISABLED"], cap[b"AUTH"] = None, []
        cap[b"UIDPLUS"] = None
        cap[b"UNSELECT"] = None
        cap[b"CHILDREN"] = None
        cap[b"QUOTA"] = None
        cap[b"QUOTA=RES-STORAGE"] = None
        cap[b"QUOTA=RES-MESSAGE"] = None
        return cap

    _account = None
    _telemetry = None

    @property
    def account(self):
        return self._account

    @account.setter
    def account(self, avatar):
        """Set by Twisted at LOGIN and AUTHENTICATE alike: the session's
        telemetry starts here (the login's reply is its first line)."""
        self._account = avatar
        if avatar is not None and self._telemetry is None:
            self._telemetry = telemetry.attach(self, self.factory.store.layout, "imap",
                                               avatar.user)

    def lineReceived(self, line):
        if self._telemetry is not None:
            self._telemetry.client(line)
        imap4.IMAP4Server.lineReceived(self, line)

    def rawDataReceived(self, data):  # a literal: APPEND's message
        if self._telemetry is not None:
            self._telemetry.client(data)
        imap4.IMAP4Server.rawDataReceived(self, data)

    def connectionLost(self, reason):
        self.factory.limit.live -= 1
        self._leave()
        imap4.IMAP4Server.connectionLost(self, reason)
        if self._telemetry is not None:
            self._telemetry.close()

    def _leave(self) -> None:
        if self.mbox is not None:
            self.factory.watcher.discard(self.mbox)
            if self in self.mbox.listeners:
                self.mbox.removeListener(self)

    def do_NAMESPACE(self, tag):  # Twisted's gives the shared ones for other users too
        self.sendUntaggedResponse(b"NAMESPACE " + imap4.collapseNestedLists(list(NAMESPACES)))
        self.sendPositiveResponse(tag, b"NAMESPACE completed")

    auth_NAMESPACE = select_NAMESPACE = (do_NAMESPACE,)

    # -- readiness ------------------------------------------------------------------------
    def dispatchCommand(self, tag, cmd, rest, uid=None):
        if (self.state in ("auth", "select") and cmd.upper() not in self.ALWAYS
                and not self.factory.stored_ready()):
            self.sendNegativeResponse(tag, b"[UNAVAILABLE] the message store is not ready; "
                                           b"try again later")
            return None
        return imap4.IMAP4Server.dispatchCommand(self, tag, cmd, rest, uid)

    def authenticateLogin(self, user, passwd):
        return password_login(self.portal, user, passwd, peer_of(self.transport),
                              imap4.IAccount)

    def _login_when_ready(self, tag, user, passwd):
        if plaintext_refused(self.transport):
            self.sendNegativeResponse(tag, PRIVACY_REQUIRED)
            return
        if not self.factory.stored_ready():
            self.sendNegativeResponse(tag, b"[UNAVAILABLE] the message store is not ready; "
                                           b"try again later")
            return
        imap4.IMAP4Server.do_LOGIN(self, tag, user, passwd)

    unauth_LOGIN = (_login_when_ready, imap4.IMAP4Server.arg_astring,
                    imap4.IMAP4Server.arg_finalastring)

    def do_AUTHENTICATE(self, tag, args):
        if plaintext_refused(self.transport):
            self.sendNegativeResponse(tag, PRIVACY_REQUIRED)
            return
        imap4.IMAP4Server.do_AUTHENTICATE(self, tag, args)

    unauth_AUTHENTICATE = (do_AUTHENTICATE, imap4.IMAP4Server.arg_atom)

    # -- errors ---------------------------------------------------------------------------
    def _run(self, tag, fn, *args):
        """fn(*args), its refusals answered as NO with their code (REFUSED)."""
        try:
            return fn(*args)
        except imap4.MailboxException as e:  # Refused and NoPermission among them
            self.sendNegativeResponse(tag, str(e).encode())
        except StoreError as e:
            if isinstance(e, CorruptionError):
                logmsg.log("imapd", logmsg.MAILBOX_REFUSED_DAMAGED, service="imapd",
                           mailbox=e.mailbox or "?", user=getattr(self.account, "user", "?"),
                           error=e.message)
            self.sendNegativeResponse(tag, str(refused(e)).encode())
        return REFUSED

    # -- SELECT / EXAMINE / UNSELECT ------------------------------------------------------
    def _select(self, tag, name, rw, cmd):
        if self.mbox is not None:
            self._leave()
            self.mbox, self.state = None, "auth"
        box = self._run(tag, self.account.open_session, imap4._parseMbox(name), rw)
        if box is None:
            self.sendNegativeResponse(tag, b"[NONEXISTENT] no such mailbox")
        if box is None or box is REFUSED:
            return
        s = self.sendUntaggedResponse
        s(b"%d EXISTS" % box.getMessageCount())
        s(b"%d RECENT" % box.getRecentCount())
        s(b"FLAGS (" + " ".join(box.getFlags()).encode() + b")")
        s(b"OK [PERMANENTFLAGS (" + " ".join(box.permanent_flags()).encode() + b")] limits")
        first = box.first_unseen()
        if first is not None:
            s(b"OK [UNSEEN %d] first unseen" % first)
        s(b"OK [UIDVALIDITY %d] UIDs valid" % box.getUIDValidity())
        s(b"OK [UIDNEXT %d] predicted next UID" % box.getUIDNext())
        box.addListener(self)
        self.factory.watcher.add(box)
        self.mbox, self.state = box, "select"
        mode = b"READ-WRITE" if box.isWriteable() else b"READ-ONLY"
        self.sendPositiveResponse(tag, b"[" + mode + b"] " + cmd + b" completed")

    auth_SELECT = (_select, imap4.IMAP4Server.arg_astring, 1, b"SELECT")
    select_SELECT = auth_SELECT
    auth_EXAMINE = (_select, imap4.IMAP4Server.arg_astring, 0, b"EXAMINE")
    select_EXAMINE = auth_EXAMINE

    def do_UNSELECT(self, tag):
        self._leave()
        self.mbox, self.state = None, "auth"
        self.sendPositiveResponse(tag, b"UNSELECT completed")

    select_UNSELECT = (do_UNSELECT,)

    def do_CLOSE(self, tag):
        if self.mbox.isWriteable() and "e" in self.mbox.rights:
            self._run(tag, self.mbox.expunge)  # silently (RFC 3501 6.4.2)
        self.do_UNSELECT(tag)

    select_CLOSE = (do_CLOSE,)

    # -- NOOP, CHECK, IDLE: what others did ------------------------------------------------
    def do_NOOP(self, tag):
        if self.mbox is not None:
            self.mbox.refresh()
            self.mbox.tell_expunges()
        self.sendPositiveResponse(tag, b"NOOP completed")

    unauth_NOOP = auth_NOOP = select_NOOP = (do_NOOP,)
    select_CHECK = (do_NOOP,)

    def do_IDLE(self, tag):
        imap4.IMAP4Server.do_IDLE(self, tag)
        if self.mbox is not None:
            self.mbox.idling = True
            self.mbox.refresh()
            self.mbox.tell_expunges()

    def parse_idle(self, *args):
        if self.mbox is not None:
            self.mbox.idling = False
        imap4.IMAP4Server.parse_idle(self, *args)

    select_IDLE = auth_IDLE = (do_IDLE,)

    # -- FETCH, STORE, EXPUNGE ------------------------------------------------------------
    def do_FETCH(self, tag, messages, query, uid=0):
        if any(_sets_seen(q) for q in query) and \
                self._run(tag, self.mbox.mark_seen, messages, uid) is REFUSED:
            return
        imapfetch.send(self, tag, self.mbox, self.mbox.iter_selected(messages, uid), query, uid)

    select_FETCH = (do_FETCH, imap4.IMAP4Server.arg_seqset, imap4.IMAP4Server.arg_fetchatt)

    def do_STORE(self, tag, messages, mode, flags, uid=0):
        mode = mode.upper()
        how = 1 if mode.startswith(b"+") else -1 if mode.startswith(b"-") else 0
        result = self._run(tag, self.mbox.store, messages, flags, how, uid)
        if result is REFUSED:
            return
        if not mode.endswith(b"SILENT"):
            for seq, names in result.items():
                uidpart = b" UID %d" % self.mbox.getUID(seq) if uid else b""
                self.sendUntaggedResponse(b"%d FETCH (FLAGS (%s)%s)"
                                          % (seq, " ".join(names).encode(), uidpart))
        self.sendPositiveResponse(tag, b"STORE completed")

    select_STORE = (do_STORE, imap4.IMAP4Server.arg_seqset, imap4.IMAP4Server.arg_atom,
                    imap4.IMAP4Server.arg_flaglist)

    def do_EXPUNGE(self, tag, uids=None):
        seqs = self._run(tag, self.mbox.expunge, uids)
        if seqs is REFUSED:
            return
        for seq in seqs:
            self.sendUntaggedResponse(b"%d EXPUNGE" % seq)
        self.sendPositiveResponse(tag, b"EXPUNGE completed")

    select_EXPUNGE = (do_EXPUNGE,)

    def do_UID(self, tag, command, line):
        if command.upper() == b"EXPUNGE":  # UIDPLUS (RFC 4315)
            try:
                uids = imap4.parseIdList(line.strip(), self.mbox.getUIDNext())
            except (imap4.IllegalIdentifierError, ValueError) as e:
                self.sendBadResponse(tag, b"UID EXPUNGE: " + str(e).encode())
                return
            self.do_EXPUNGE(tag, [u for u in uids if u is not None])
            return
        imap4.IMAP4Server.do_UID(self, tag, command, line)

    select_UID = (do_UID, imap4.IMAP4Server.arg_atom, imap4.IMAP4Server.arg_line)

    # -- APPEND and COPY, with UIDPLUS's codes ---------------------------------------------
    def _target(self, tag, mailbox) -> Mailbox | None:
        """The mailbox APPEND or COPY puts messages in; None once answered."""
        target = self._run(tag, self.account.select, imap4._parseMbox(mailbox))
        if target is None:
            self.sendNegativeResponse(tag, b"[TRYCREATE] no such mailbox")
        return None if target is REFUSED else target

    def do_APPEND(self, tag, mailbox, flags, date, message):
        target = self._target(tag, mailbox)
        if target is None:
            return
        uid = self._run(tag, target.append, message.read(), flags, date)
        if uid is REFUSED:
            return
        if self.mbox is not None and self.mbox.name == target.name:
            self.mbox.refresh()
        self.sendPositiveResponse(tag, b"[APPENDUID %d %d] APPEND completed"
                                  % (target.getUIDValidity(), uid))

    auth_APPEND = (do_APPEND, imap4.IMAP4Server.arg_astring, imap4.IMAP4Server.opt_plist,
                   imap4.IMAP4Server.opt_datetime, imap4.IMAP4Server.arg_literal)
    select_APPEND = auth_APPEND

    def do_COPY(self, tag, messages, mailbox, uid=0):
        target = self._target(tag, mailbox)
        if target is None:
            return
        pairs = []
        for _seq, rec in self.mbox.selected(messages, uid):
            data = self._run(tag, self.mbox.read_message, rec.uid)
            new = data if data is REFUSED else self._run(
                tag, target.append, data, self.mbox.flags_of(rec),
                email.utils.formatdate(rec.internaldate))
            if new is REFUSED:
                return  # the ones copied stay copied: as Dovecot, without a rollback
            pairs.append((rec.uid, new))
        if self.mbox.name == target.name:
            self.mbox.refresh()
        if not pairs:
            self.sendPositiveResponse(tag, b"COPY completed (nothing to copy)")
            return
        src = ",".join(str(a) for a, _b in pairs).encode()
        dst = ",".join(str(b) for _a, b in pairs).encode()
        self.sendPositiveResponse(tag, b"[COPYUID %d %s %s] COPY completed"
                                  % (target.getUIDValidity(), src, dst))

    select_COPY = (do_COPY, imap4.IMAP4Server.arg_seqset, imap4.IMAP4Server.arg_finalastring)

    # -- QUOTA (RFC 9208): STORAGE in units of 1,024 bytes, MESSAGE in messages ---------------
    def _send_quota(self, root: str, q: dict) -> None:
        res = []
        if q["limit_bytes"] is not None:
            res.append(b"STORAGE %d %d" % (-(-q["used_bytes"] // 1024), q["limit_bytes"] // 1024))
        if q.get("limit_messages") is not None:
            res.append(b"MESSAGE %d %d" % (q["used_messages"], q["limit_messages"]))
        self.sendUntaggedResponse(b"QUOTA " + imap4._quote(root.encode("imap4-utf-7"))
                                  + b" (" + b" ".join(res) + b")")

    def do_GETQUOTAROOT(self, tag, name):
        name = imap4._parseMbox(name)
        root = self._run(tag, self.account.quota_root, name)
        if root is REFUSED:
            return
        if root is None:
            self.sendNegativeResponse(tag, b"[NONEXISTENT] no such mailbox")
            return
        shown = self.account.names.to_imap(self.account.store_name(name)).encode("imap4-utf-7")
        self.sendUntaggedResponse(b"QUOTAROOT " + imap4._quote(shown)
                                  + (b" " + imap4._quote(root.encode("imap4-utf-7"))
                                     if root else b""))
        q = self.account.quota(root) if root else None
        if q is not None:
            self._send_quota(root, q)
        self.sendPositiveResponse(tag, b"GETQUOTAROOT completed")

    auth_GETQUOTAROOT = select_GETQUOTAROOT = (do_GETQUOTAROOT, imap4.IMAP4Server.arg_astring)

    def do_GETQUOTA(self, tag, root):
        root = text(root)
        q = self._run(tag, self.account.quota, root)
        if q is REFUSED:
            return
        if q is None:
            self.sendNegativeResponse(tag, b"[NONEXISTENT] no such quota root")
            return
        self._send_quota(root, q)
        self.sendPositiveResponse(tag, b"GETQUOTA completed")

    auth_GETQUOTA = select_GETQUOTA = (do_GETQUOTA, imap4.IMAP4Server.arg_astring)

    def do_SETQUOTA(self, tag, line):
        self.sendNegativeResponse(tag, b"[NOPERM] quota limits are the administrator's "
                                       b"(mboxutil --set-quota)")

    auth_SETQUOTA = select_SETQUOTA = (do_SETQUOTA, imap4.IMAP4Server.arg_line)

    # -- names: CREATE/DELETE/RENAME refusals as NO with their code -----------------------
    def do_CREATE(self, tag, name):
        made = self._run(tag, self.account.create, imap4._parseMbox(name))
        if made is REFUSED:
            return
        if made:
            self.sendPositiveResponse(tag, b"CREATE completed")
        else:
            self.sendNegativeResponse(tag, b"[ALREADYEXISTS] mailbox already exists")

    auth_CREATE = select_CREATE = (do_CREATE, imap4.IMAP4Server.arg_astring)

    def do_DELETE(self, tag, name):
        if self._run(tag, self.account.delete, imap4._parseMbox(name)) is not REFUSED:
            self.sendPositiveResponse(tag, b"DELETE completed")

    auth_DELETE = select_DELETE = (do_DELETE, imap4.IMAP4Server.arg_astring)

    def do_RENAME(self, tag, oldname, newname):
        if self._run(tag, self.account.rename, imap4._parseMbox(oldname),
                     imap4._parseMbox(newname)) is not REFUSED:
            self.sendPositiveResponse(tag, b"RENAME completed")

    auth_RENAME = select_RENAME = (do_RENAME, imap4.IMAP4Server.arg_astring,
                                   imap4.IMAP4Server.arg_astring)

    def do_SUBSCRIBE(self, tag, name):  # Twisted's answers a refusal BAD Server error
        if self._run(tag, self.account.subscribe, imap4._parseMbox(name)) is not REFUSED:
            self.sendPositiveResponse(tag, b"SUBSCRIBE completed")

    auth_SUBSCRIBE = select_SUBSCRIBE = (do_SUBSCRIBE,  # type: ignore[assignment]
                                         imap4.IMAP4Server.arg_astring)


def _sets_seen(part) -> bool:
    """Whether a FETCH item sets \\Seen: BODY[...] without PEEK, RFC822,
    RFC822.TEXT (RFC 3501 6.4.5)."""
    if isinstance(part, imap4._FetchParser.Body):  # BODY alone is the structure
        return not part.peek and bool(part.header or part.text or part.mime or part.empty
                                      or part.part)
    return isinstance(part, (imap4._FetchParser.RFC822, imap4._FetchParser.RFC822Text))


class Watcher:
    """Polls every selected mailbox every POLL_INTERVAL (one header read
    each) so that sessions hear of deliveries and other sessions' changes."""

    def __init__(self):
        self.boxes: weakref.WeakSet = weakref.WeakSet()
        self.loop = task.LoopingCall(self.poll)

    def add(self, box: Mailbox) -> None:
        self.boxes.add(box)

    def discard(self, box: Mailbox) -> None:
        self.boxes.discard(box)

    def poll(self) -> None:
        """One header read per mailbox, however many sessions have it selected."""
        by_name: dict[str, list[Mailbox]] = {}
        for box in list(self.boxes):
            by_name.setdefault(box.name, []).append(box)
        for boxes in by_name.values():
            try:
                header = boxes[0].read_header()
            except (OSError, StoreError):
                continue  # being rebuilt or renamed: looked at again at the next poll
            for box in boxes:
                try:
                    box.poll(header)
                except Exception:  # noqa: BLE001 - one session must not stop the others' polls
                    log.err()

    def start(self) -> defer.Deferred:
        return self.loop.start(POLL_INTERVAL, now=False)


class IMAPFactory(protocol.Factory):
    def __init__(self, store: Store, tls=None):
        self.store, self.tls = store, tls
        self.portal = login_portal(store, "imapd", imap4.IAccount, Account)
        self.stored_ready = StoredReadiness(store)
        self.watcher = Watcher()
        self.limit = SessionLimit("imapd", settings.IMAP_MAX_SESSIONS.name,
                                  store.layout.config.get_int(settings.IMAP_MAX_SESSIONS))

    def startFactory(self):
        self.watcher.start()

    def buildProtocol(self, addr):
        reason = self.limit.refusal()
        if reason is not None:
            self.limit.refused(address_of(addr), reason)
            return Refused(b"* BYE [UNAVAILABLE] " + reason.encode() + b"; try again later\r\n")
        self.limit.live += 1
        p = IMAPServer(contextFactory=self.tls)
        p.portal = self.portal
        p.factory = self
        p.challengers = {b"PLAIN": functools.partial(PlainCredentials, host_of(addr))}
        return p


def run(root: str, address: str, port: int, sslport: int = 0) -> None:
    """imapd in the foreground until SIGTERM."""
    serve("imapd", root, address, port, sslport, IMAPFactory)
