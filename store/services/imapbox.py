"""A mailbox as one IMAP session sees it (twisted.mail.imap4's IMailbox),
over the store: the session's view of the records, numbered by sequence,
kept in step with what other sessions and deliveries do.

The view changes only as RFC 3501 allows: new messages and flag changes
are told as they are found (EXISTS, FETCH FLAGS); messages expunged by
someone else stay in the view (their files are kept in store.exp's care
until stored erases them) until the session may be told (NOOP, CHECK,
IDLE, EXPUNGE), so sequence numbers never shift under a command.
`poll()` is called by the server every POLL_INTERVAL while selected; it
reads the index header only (uidnext, exists, modseq) and the records
only when those moved."""

from __future__ import annotations

import bisect
import collections
import contextlib
import email
import email.utils
import weakref
from collections.abc import Iterator

from twisted.mail import imap4
from zope.interface import implementer

from ..errors import (
    CorruptionError,
    KeywordError,
    LimitError,
    OverQuotaError,
    PermissionDeniedError,
    StoreError,
)
from ..index import (
    FLAG_NAMES,
    FLAG_SEEN,
    Header,
    Record,
    flags_to_names,
    keyword_names,
    names_to_flags,
)
from ..layout import user_of
from ..mailbox import FlagMode, Store, UidRanges
from ..message import to_crlf
from .imapnames import DELIMITER
from .imapsearch import Compiler
from .imapstructure import split_header

RECENT = "\\Recent"
SYSTEM = {n.lower() for n in FLAG_NAMES.values()}
# the right each flag needs to be stored (RFC 4314 4): s for \Seen,
# t for \Deleted, w for the rest and for keywords
_RIGHT_OF_FLAG = {"\\seen": "s", "\\deleted": "t"}


class NoPermission(imap4.MailboxException):
    """The user lacks the ACL right a command needs: NO [NOPERM]."""


class Refused(imap4.MailboxException):
    """A command the store refused, with the response code to give."""

    def __init__(self, code: str, text: str):
        super().__init__(f"[{code}] {text}")


def text(value: str | bytes) -> str:
    """Twisted hands names, flags and dates as bytes or str, by command."""
    return value.decode() if isinstance(value, bytes) else value


def refused(e: StoreError) -> Refused:
    """The IMAP response code of a store error (RFC 5530)."""
    if isinstance(e, OverQuotaError):
        return Refused("OVERQUOTA", str(e))
    if isinstance(e, PermissionDeniedError):
        return Refused("NOPERM", str(e))
    if isinstance(e, LimitError):
        return Refused("LIMIT", str(e))
    if isinstance(e, KeywordError):
        return Refused("LIMIT" if "no room" in str(e) else "CANNOT", str(e))
    if isinstance(e, CorruptionError):
        return Refused("SERVERBUG", f"{e}; the administrator must run reconstruct")
    return Refused("CANNOT", str(e))


class Message:
    """A stored message as IMAP serves it: with CRLF line ends (RFC 3501;
    the store keeps LF, as Dovecot's maildir does), RFC822.SIZE counting
    them. The file is read, and parsed, only when a FETCH or SEARCH item
    needs it: FLAGS, UID and INTERNALDATE come from the index alone. (Not
    Twisted's IMessage: FETCH, SEARCH and COPY are imapd's own.)"""

    def __init__(self, box: Mailbox, rec: Record):
        self._box, self.rec = box, rec
        self._wire: bytes | None = None
        self._parsed: email.message.Message | None = None

    @property
    def wire(self) -> bytes:
        if self._wire is None:
            try:
                self._wire = to_crlf(self._box.read_message(self.rec.uid))
            except FileNotFoundError:  # expunged by another session and erased since
                self._wire = b""
        return self._wire

    def parsed(self) -> email.message.Message:
        if self._parsed is None:
            self._parsed = email.message_from_bytes(self.wire)
        return self._parsed

    def getSize(self):
        return len(self.wire)

    def header_bytes(self) -> bytes:
        """The header with its blank line, CRLF: from the index's header
        size, without reading the body, unless the message is read already."""
        if self._wire is None and self.rec.header_size:
            try:
                head = to_crlf(self._box.read_message(self.rec.uid, self.rec.header_size))
            except FileNotFoundError:
                head = b""
            return head if head.endswith(b"\r\n\r\n") else head + b"\r\n"
        return split_header(self.wire)[0]

    def header_fields(self) -> list[tuple[str, str]]:
        return self.parsed().items()

    def body_bytes(self) -> bytes:
        return split_header(self.wire)[1]

    def getFlags(self):
        return self._box.flags_of(self.rec)


class Snapshot:
    """A mailbox's records as one read of its index found them, shared by
    every session whose view is at that state: 1,000 sessions on a
    100,000-message INBOX hold one copy, not 1,000 (about 50 MB each)."""

    __slots__ = ("header", "records", "mark", "_diff", "__weakref__")

    def __init__(self, header: Header, records: tuple):
        self.header, self.records, self.mark = header, records, mark_of(header)
        self._diff: tuple | None = None  # (the newer snapshot, the diff to it)

    def diff(self, new: Snapshot) -> tuple[list[tuple[int, Record]], set[int], tuple]:
        """(changed (position, record), UIDs gone, records added) from here
        to `new`, worked out once for all the sessions at this state."""
        if self._diff is not None and self._diff[0] is new:
            return self._diff[1]
        old, n = self.records, len(self.records)
        if new.records[:n] == old:  # deliveries only: the common case, at C speed
            out = ([], set(), new.records[n:])
        else:
            by_uid = {r.uid: r for r in new.records}
            changed, gone = [], set()
            for i, r in enumerate(old):
                m = by_uid.get(r.uid)
                if m is None:
                    gone.add(r.uid)
                elif (m.flags, m.keywords) != (r.flags, r.keywords):
                    changed.append((i, m))
            last = old[-1].uid if old else 0
            out = (changed, gone, tuple(r for r in new.records if r.uid > last))
        self._diff = (new, out)
        return out


def mark_of(h: Header) -> tuple:
    """What changes whenever the records do (every change bumps a modseq)."""
    return h.uidvalidity, h.uidnext, h.exists, h.highest_modseq


class Snapshots:
    """The latest snapshot of each mailbox some session has selected, and
    of the last few selected (up to KEEP_RECORDS records in all), so that a
    client that reconnects to its INBOX (most do, every few minutes) does
    not have the index read again when nothing changed."""

    KEEP_RECORDS = 250_000  # about 120 MB of records
    _of: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(self, store: Store):
        self.store = store
        self.latest: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self.kept: collections.OrderedDict[str, Snapshot] = collections.OrderedDict()

    def _keep(self, name: str, snap: Snapshot) -> None:
        self.kept.pop(name, None)
        self.kept[name] = snap
        total = sum(len(s.records) for s in self.kept.values())
        while total > self.KEEP_RECORDS and len(self.kept) > 1:
            total -= len(self.kept.popitem(last=False)[1].records)

    @classmethod
    def of(cls, store: Store) -> Snapshots:
        if store not in cls._of:
            cls._of[store] = cls(store)
        return cls._of[store]

    def get(self, name: str, header: Header | None = None) -> Snapshot:
        """The current snapshot: the shared one if the index has not changed
        since (`header`: one just read), else a new read."""
        header = header or self.store.header(name)
        snap = self.latest.get(name)
        if snap is None or snap.mark != mark_of(header):
            idx = self.store.read(name)
            if idx.problems and self.store.settle(name):  # an append a kill cut off
                idx = self.store.read(name)
            if idx.problems:
                raise Refused("SERVERBUG", f"{name} is damaged; the administrator must run "
                                           "reconstruct")
            snap = Snapshot(idx.header, tuple(idx.records))
            self.latest[name] = snap
        self._keep(name, snap)
        return snap


@implementer(imap4.IMailbox, imap4.ISearchableMailbox)
class Mailbox:
    """One mailbox for one user. `session=True`: the mailbox a session
    selected (it holds a view and claims \\Recent when read-write); else a
    target of APPEND, COPY or STATUS, read when asked."""

    def __init__(self, store: Store, user: str, name: str, rights: str, *, rw: bool = False,
                 session: bool = False):
        self._store, self.user, self.name, self.rights = store, user, name, rights
        self.rw = rw and bool(set(rights) & set("switep"))
        self.own_seen = user_of(name) == user  # else \Seen is the user's own (peruser)
        self.listeners: list = []
        self.idling = False
        self.gone: set[int] = set()  # expunged by others, not yet told
        self._reader = None  # a MessageReader, made on first use
        self._flag_memo: dict[tuple, bytes] = {}
        if session and self.rw:
            _header, self.first_recent = store.claim_recent(name)
        else:
            self.first_recent = store.header(name).recent_uid
        self._load()

    # -- the view ------------------------------------------------------------------------
    # self.records is the view: the snapshot's own tuple while the view is
    # exactly that state (shared with the other sessions there), a private
    # list while it differs (expunges not yet told, this session's STORE)

    def _load(self) -> None:
        self.snap = Snapshots.of(self._store).get(self.name)
        self.header: Header = self.snap.header
        self.records: tuple | list = self.snap.records
        self._seen = UidRanges() if self.own_seen else self._store.seen(
            self.user, self.name, self.header.uidvalidity)
        self.mark = self.snap.mark

    def read_header(self) -> Header:
        return self._store.header(self.name)

    def poll(self, header: Header | None = None) -> None:
        """Look for changes made by others (`header`: the index header the
        watcher has just read for every session on this mailbox)."""
        try:
            h = header or self._store.header(self.name)
        except (OSError, StoreError):
            return  # being rebuilt or renamed: looked at again at the next poll
        if mark_of(h) != self.mark:
            self.refresh(h)

    def _private(self) -> list:
        if isinstance(self.records, tuple):
            self.records = list(self.records)
        return self.records

    def refresh(self, header: Header | None = None) -> None:
        """Bring the view up to date: flag changes and new messages told;
        messages gone are held back until they may be told."""
        try:
            new = Snapshots.of(self._store).get(self.name, header)
        except (OSError, StoreError):
            return
        if new is self.snap and self.records is new.records:
            return
        if new.header.uidvalidity != self.header.uidvalidity:
            for listener in self.listeners:  # the mailbox was replaced (RFC 3501 2.3.1.1)
                listener.sendUntaggedResponse(b"BYE mailbox replaced; select it again")
                listener.transport.loseConnection()
            return
        table_changed = new.header.keywords != self.header.keywords
        if self.records is self.snap.records:  # at the old shared state: its diff
            changed_at, gone, added = self.snap.diff(new)
            changed = {i + 1: r for i, r in changed_at}
            if gone:
                view = self._private()
                for i, r in changed_at:
                    view[i] = r
                view.extend(added)
            else:
                self.records = new.records
        else:  # a private view: compared record by record
            changed, gone, added = self._merge(new)
        self.gone |= gone
        self.snap, self.header, self.mark = new, new.header, new.mark
        if not self.gone and isinstance(self.records, list) and \
                len(self.records) == len(new.records):
            self.records = new.records  # caught up: share again
        for listener in self.listeners:
            if table_changed:
                listener.sendUntaggedResponse(b"FLAGS (" + " ".join(self.getFlags()).encode()
                                              + b")", isAsync=True)
            if changed:
                listener.flagsChanged({seq: self.flags_of(r) for seq, r in changed.items()})
            if added:
                listener.newMessages(len(self.records), None)
        if self.idling:
            self.tell_expunges()

    def _merge(self, new: Snapshot) -> tuple[dict[int, Record], set[int], tuple]:
        view = self._private()
        by_uid = {r.uid: r for r in new.records}
        changed, gone = {}, set()
        for i, r in enumerate(view):
            n = by_uid.get(r.uid)
            if n is None:
                gone.add(r.uid)
            elif n is not r:
                view[i] = n
                if (n.flags, n.keywords) != (r.flags, r.keywords):
                    changed[i + 1] = n
        last = view[-1].uid if view else 0
        added = tuple(r for r in new.records if r.uid > last)
        view.extend(added)
        return changed, gone, added

    def tell_expunges(self) -> list[int]:
        """Drop the messages expunged meanwhile from the view, telling the
        session (highest sequence number first, so each stays right)."""
        if not self.gone:
            return []
        seqs = [i for i, r in enumerate(self.records, 1) if r.uid in self.gone]
        seqs.reverse()
        for listener in self.listeners:
            for seq in seqs:
                listener.sendUntaggedResponse(b"%d EXPUNGE" % seq, isAsync=True)
        self.records = [r for r in self.records if r.uid not in self.gone]
        self.gone.clear()
        if len(self.records) == len(self.snap.records):
            self.records = self.snap.records  # the view is the snapshot again: share it
        return seqs

    def flag_bytes(self, rec: Record) -> bytes:
        """`FLAGS (...)` of a record, memoised by what decides it."""
        key = (rec.flags, rec.keywords, rec.uid >= self.first_recent,
               not self.own_seen and rec.uid in self._seen, len(self.header.keywords))
        got = self._flag_memo.get(key)
        if got is None:
            got = self._flag_memo[key] = b"FLAGS (" + " ".join(self.flags_of(rec)).encode() + b")"
        return got

    def flags_of(self, rec: Record) -> list[str]:
        flags = rec.flags if self.own_seen else (
            rec.flags & ~FLAG_SEEN | (FLAG_SEEN if rec.uid in self._seen else 0))
        out = flags_to_names(flags) + keyword_names(self.header, rec.keywords)
        if rec.uid >= self.first_recent:
            out.append(RECENT)
        return out

    def selected(self, messages, uid: bool) -> list[tuple[int, Record]]:
        return list(self.iter_selected(messages, uid))

    def iter_selected(self, messages, uid: bool) -> Iterator[tuple[int, Record]]:
        """(sequence number, record) of a message set, by number or UID:
        each range found by bisection (UIDs ascend), not each record tested.
        An iterator: a list of 100,000 pairs made at once costs a garbage
        collection pass over every record held (0.1 s); pairs made one at a
        time are freed as they go."""
        recs = self.records
        with contextlib.suppress(ValueError):  # set already (a FETCH that set \\Seen first)
            messages.last = (recs[-1].uid if recs else 1) if uid else (len(recs) or 1)
        keys = [r.uid for r in recs] if uid else None
        picked: list[range] = []
        for lo, hi in messages.ranges:
            lo, hi = min(lo, hi), max(lo, hi)
            if uid:
                picked.append(range(bisect.bisect_left(keys, lo), bisect.bisect_right(keys, hi)))
            else:
                picked.append(range(max(lo, 1) - 1, min(hi, len(recs))))
        positions = picked[0] if len(picked) == 1 else sorted({i for r in picked for i in r})
        return ((i + 1, recs[i]) for i in positions)

    # -- IMailbox ------------------------------------------------------------------------
    def getUIDValidity(self):
        return self.header.uidvalidity

    def getUIDNext(self):
        return self.header.uidnext

    def getUID(self, message):
        return self.records[message - 1].uid

    def getMessageCount(self):
        return len(self.records)

    def getRecentCount(self):
        return sum(1 for r in self.records if r.uid >= self.first_recent)

    def getUnseenCount(self):
        return sum(1 for r in self.records if "\\Seen" not in self.flags_of(r))

    def first_unseen(self) -> int | None:
        return next((i for i, r in enumerate(self.records, 1)
                     if "\\Seen" not in self.flags_of(r)), None)

    def isWriteable(self):
        return self.rw

    def getFlags(self):
        return list(FLAG_NAMES.values()) + self.header.keywords

    def permanent_flags(self) -> list[str]:
        """What this user may store here (RFC 4314 4), `\\*`: new keywords."""
        out = [n for n in FLAG_NAMES.values() if _RIGHT_OF_FLAG.get(n.lower(), "w")
               in self.rights]
        if "w" in self.rights:
            out += self.header.keywords + ["\\*"]
        return out if self.rw else []

    def getHierarchicalDelimiter(self):
        return DELIMITER

    def requestStatus(self, names):
        return imap4.statusRequestHelper(self, names)

    def addListener(self, listener):
        self.listeners.append(listener)

    def removeListener(self, listener):
        self.listeners.remove(listener)

    def destroy(self):
        raise imap4.MailboxException("use DELETE")

    def search(self, query, uid):
        """SEARCH: sequence numbers (Twisted turns them into UIDs for UID
        SEARCH). Messages expunged by others meanwhile are left out."""
        test = Compiler(self).compile(query)
        return [seq for seq, rec in enumerate(self.records, 1)
                if rec.uid not in self.gone and test(seq, Message(self, rec))]

    def need(self, right: str, what: str) -> None:
        if right not in self.rights:
            raise NoPermission(f"[NOPERM] you may not {what} in {self.name} "
                               f"(right {right!r})")

    def store(self, messages, flags, mode, uid):  # noqa: A003 - the interface's name
        """STORE: `mode` -1 remove, 0 set, 1 add. \\Seen goes to the user's
        own record on a mailbox they do not own."""
        if not self.rw:
            raise NoPermission("[READ-ONLY] the mailbox is selected read-only")
        names = [text(f) for f in flags if text(f).lower() != RECENT.lower()]
        for n in names:
            self.need(_RIGHT_OF_FLAG.get(n.lower(), "w"), f"store {n}")
        return self._apply(self.selected(messages, uid), names,
                           {-1: FlagMode.REMOVE, 0: FlagMode.SET, 1: FlagMode.ADD}[mode])

    def _apply(self, targets: list[tuple[int, Record]], names: list[str], how: FlagMode
               ) -> dict[int, list[str]]:
        """Flags and keywords `names` set, added or removed on `targets`;
        their flags after, by sequence number."""
        keywords = [n for n in names if n.lower() not in SYSTEM]
        bits = names_to_flags(" ".join(n for n in names if n.lower() in SYSTEM))
        uids = [r.uid for _s, r in targets if r.uid not in self.gone]
        if self.own_seen:
            header, recs = self._store.store_flags(self.name, uids, bits, keywords, how)
        else:
            header, recs = self._store.store_flags(self.name, uids, bits & ~FLAG_SEEN,
                                                  keywords, how, keep=FLAG_SEEN)
            self._store_seen(uids, bits & FLAG_SEEN, how)
        self.header = header
        now = {r.uid: r for r in recs}
        out = {}
        view = self._private() if now else self.records
        for seq, r in targets:
            if r.uid in now:
                view[seq - 1] = now[r.uid]
            out[seq] = self.flags_of(view[seq - 1])
        return out

    def _store_seen(self, uids: list[int], seen: int, how: FlagMode) -> None:
        if seen and how in (FlagMode.ADD, FlagMode.SET):
            self._seen = self._store.set_seen(self.user, self.name, self.header.uidvalidity,
                                             add=uids)
        elif how is FlagMode.SET or (seen and how is FlagMode.REMOVE):
            self._seen = self._store.set_seen(self.user, self.name, self.header.uidvalidity,
                                             remove=uids)

    def mark_seen(self, messages, uid: bool) -> None:
        """FETCH of a body without PEEK sets \\Seen (RFC 3501 6.4.5), where
        the user may; the change is told as an untagged FETCH FLAGS."""
        if not self.rw or "s" not in self.rights:
            return
        targets = [(s, r) for s, r in self.selected(messages, uid)
                   if "\\Seen" not in self.flags_of(r) and r.uid not in self.gone]
        if not targets:
            return
        done = self._apply(targets, ["\\Seen"], FlagMode.ADD)
        for listener in self.listeners:
            listener.flagsChanged(done)

    def expunge(self, uids=None):
        """EXPUNGE (or UID EXPUNGE of `uids`): returns the sequence numbers
        to tell, those of messages others expunged meanwhile included."""
        if not self.rw:
            raise NoPermission("[READ-ONLY] the mailbox is selected read-only")
        self.need("e", "expunge")
        self._store.expunge(self.name, uids)
        listeners, self.listeners = self.listeners, []  # the caller tells them, once
        try:
            self.refresh()
            seqs = self.tell_expunges()
        finally:
            self.listeners = listeners
        return seqs

    def addMessage(self, message, flags=(), date=None):
        """APPEND (or a COPY into this mailbox): returns the new UID."""
        from twisted.internet import defer
        try:
            return defer.succeed(self.append(message.read(), flags, date))
        except imap4.MailboxException as e:
            return defer.fail(e)
        except StoreError as e:
            return defer.fail(refused(e))

    def append(self, data: bytes, flags=(), date=None) -> int:
        self.need("i", "append")
        names = [text(f) for f in flags or ()]
        allowed = [n for n in names if n.lower() != RECENT.lower()
                   and _RIGHT_OF_FLAG.get(n.lower(), "w") in self.rights]
        bits = names_to_flags(" ".join(n for n in allowed if n.lower() in SYSTEM))
        keywords = [n for n in allowed if n.lower() not in SYSTEM]
        when = None
        if date:
            when = int(email.utils.parsedate_to_datetime(text(date)).timestamp())
        uid = self._store.append(self.name, data,
                                 flags=bits if self.own_seen else bits & ~FLAG_SEEN,
                                 internaldate=when)
        if keywords:
            self._store.store_flags(self.name, [uid], 0, keywords, FlagMode.ADD)
        if bits & FLAG_SEEN and not self.own_seen:
            self._store.set_seen(self.user, self.name, self._store.header(self.name)
                                 .uidvalidity, add=[uid])
        return uid

    def read_message(self, uid: int, limit: int = -1) -> bytes:
        if self._reader is None:
            self._reader = self._store.message_reader(self.name)
        return self._reader.read(uid, limit)
