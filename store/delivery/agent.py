"""Local delivery: one message for its recipients, each answered with an
Outcome, one log line each. Used by lmtpd (many threads, group commit) and
by `deliver` (one process per message, fsync per message).

For every recipient the message gets `Return-Path:` and `Delivered-To:`
in front, as Dovecot and Cyrus add them. Recipients that map to the same
mailbox get one copy. Nothing is half-stored after a refusal: the store
writes a message file, then its index record, and refuses before either
(quota, lock, a missing mailbox)."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

from .. import logmsg, settings
from ..config import Config
from ..db import FolderEntry, QuotaEntry
from ..db.duplicates import Duplicates
from ..errors import EmptyMessageError, LockedError, NoSuchMailboxError, StoreError
from ..fsutil import open_nofollow
from ..layout import is_inbox
from ..mailbox import Store, quota_root_mailbox
from ..mailbox.messages import BATCH, EACH, SHARED, run_steps
from ..mailbox.quota import check_room, claim_warning, warning_due
from ..message import parse_header
from . import address
from .address import AddressError, AddressRules, Recipient
from .outcome import Outcome, admitted, delivered, refused, too_big


@dataclass(frozen=True)
class Target:
    """A recipient and the mailbox its mail goes to."""

    rcpt: Recipient
    mailbox: str


@dataclass(frozen=True)
class Policy:
    """The settings a delivery follows (read once per process or reload)."""

    rules: AddressRules
    grace_hours: int
    warn_percent: int
    lock_wait: int
    max_size: int
    duplicate_window: int

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        return cls(AddressRules.from_config(config), config.get_int(settings.QUOTA_GRACE_PERIOD),
                   config.get_int(settings.QUOTA_WARN), config.get_int(settings.LMTP_LOCKWAIT),
                   config.get_int(settings.LMTP_MAX_MESSAGE_SIZE),
                   config.get_int(settings.LMTP_DUPLICATE_WINDOW))


class Agent:
    """`recovering`: whether stored's spool resync after a snapshot restore is
    pending (daemon.state.resync_pending, given by the caller: the layers
    point down). While it is, the database may not yet list users created
    after the snapshot."""

    def __init__(self, store: Store, policy: Policy, *, via: str,
                 recovering: Callable[[], bool] = lambda: False):
        self.store = store
        self.policy = policy
        self.via = via
        self.recovering = recovering
        self._dups: Duplicates | None = None

    def close(self) -> None:
        if self._dups is not None:
            self._dups.close()
            self._dups = None

    @property
    def dups(self) -> Duplicates:
        if self._dups is None:
            self._dups = Duplicates(self.store.layout.duplicates_dir)
        return self._dups

    # -- recipients ----------------------------------------------------------------
    def resolve(self, addr: str, folder: str | None = None, *, create: bool = True) -> Target:
        """The mailbox for `addr` (and `folder`, as deliver -m gives it), or
        AddressError. With a detail (`joe+lists@`), its folder when it exists
        and anyone may post there (ACL right p), as Cyrus does; else INBOX.
        create=False: a user local.lmtp.autocreate would create is not
        created (yet) but answered with the INBOX it will have."""
        rcpt = address.parse(addr, self.policy.rules)
        inbox = address.inbox_of(rcpt)
        if not self.store.exists(inbox):
            if self._on_disk(inbox) and self.recovering():
                # a user made after the snapshot the database came back from: the resync
                # will list them; bouncing now would return their mail for good
                raise AddressError(f"<{rcpt.address}>: the mailbox list is being recovered; "
                                   "try again later", reason="recovering")
            if not self.policy.rules.autocreate:
                raise AddressError(f"<{rcpt.address}>: no such user here", reason="unknown-user")
            if not create:
                return Target(rcpt, inbox)
            try:
                self.store.create(inbox)
            except Exception:  # created meanwhile by another delivery: fine; else say so
                if not self.store.exists(inbox):
                    raise
        if folder is not None:
            box = address.folder_of(rcpt, folder)
            if box and self.store.exists(box):
                return Target(rcpt, box)
        elif rcpt.detail:
            box = self._detail_folder(rcpt)
            if box and not is_inbox(box) and self._anyone_may_post(box):
                return Target(rcpt, box)
        return Target(rcpt, inbox)

    def _on_disk(self, name: str) -> bool:
        layout = self.store.layout
        return any(os.path.isdir(layout.mailbox_dir(name, p)) for p in layout.config.partitions())

    def _detail_folder(self, rcpt: Recipient) -> str | None:
        """The folder a detail names: spelled exactly, else the one folder of
        the user whose name matches it without regard to case (an MTA may
        have folded the address to lower case; Cyrus's fuzzy match)."""
        box = address.folder_of(rcpt, rcpt.detail or "")
        if box is None or self.store.exists(box):
            return box
        want = box.lower()
        found = [n for n, _ in self.store.db.records(FolderEntry, prefix=f"user/{rcpt.user}/")
                 if n.lower() == want]
        return found[0] if len(found) == 1 else None

    def _anyone_may_post(self, box: str) -> bool:
        e = self.store.db.record(FolderEntry, box)
        return e is not None and "p" in e.acl.get("anyone", "")

    def admit(self, addr: str, size: int, sender: str = "") -> Outcome:
        """Whether a message of `size` bytes (0: not said) for `addr` would
        be taken now, asked before the MTA queues it (policyd): a known
        recipient whose quota root has room. A refusal is logged and, over
        quota, starts the grace period as a refused delivery does."""
        try:
            t = self.resolve(addr, create=False)
            if self.store.exists(t.mailbox):
                qroot = self.store.entry(t.mailbox).quotaroot
                if qroot:
                    check_room(self.store, qroot, t.mailbox, max(size, 1))
        except (AddressError, StoreError, OSError) as e:
            return self.refuse(e, sender, addr)
        return admitted(addr, t.mailbox)

    # -- delivery --------------------------------------------------------------------
    def deliver(self, data: bytes, sender: str, targets: list[Target], *,
                internaldate: int | None = None) -> list[Outcome]:
        """Store `data` for each target, each message durable before the
        next (fsyncs of its own: `deliver`, one process per message). One
        Outcome per target, in order."""
        refused_outright = self.unfit(data, sender, targets)
        if refused_outright:
            return refused_outright
        done: dict[str, Outcome] = {}
        for t in targets:
            if t.mailbox not in done:
                done[t.mailbox] = run_steps(self.steps(data, sender, t, internaldate,
                                                       durability=EACH))
                warning = self.quota_warning(done[t.mailbox])
                if warning:
                    run_steps(warning[1]())
        return [done[t.mailbox] for t in targets]

    def unfit(self, data: bytes, sender: str, targets: list[Target]) -> list[Outcome] | None:
        """The refusals, logged, of a message no mailbox takes: empty (as the
        store refuses one, EmptyMessageError) or over local.lmtp.maxmessagesize;
        None if it fits."""
        if not data:
            out = refused(EmptyMessageError("empty message"), grace_hours=0, now=0)
        elif len(data) > self.policy.max_size:
            out = too_big(len(data), self.policy.max_size)
        else:
            return None
        for t in targets:
            self._log(out, sender, t.rcpt.address)
        return [out] * len(targets)

    def refuse(self, exc: BaseException, sender: str, rcpt: str) -> Outcome:
        """The outcome of an error, logged."""
        out = refused(exc, grace_hours=self.policy.grace_hours, now=int(time.time()))
        if out.reason == "internal":
            logmsg.log_internal("delivery", self.via, exc)
        self._log(out, sender, rcpt)
        return out

    def steps(self, data: bytes, sender: str, t: Target, internaldate: int | None = None, *,
              durability: str = SHARED, lock_timeout: float | None = None
              ) -> Generator[str, None, Outcome]:
        """One delivery as steps (mailbox.append_steps): with SHARED
        durability it yields where the caller must sync. Returns its Outcome,
        logged. With lock_timeout 0 a held mailbox lock raises LockedError
        (the caller waits without blocking others, and tries again)."""
        msgid = None
        try:
            if self.policy.duplicate_window:
                msgid = parse_header(data).fields.get("message-id")
                if msgid and self.dups.seen(msgid, t.mailbox, self.policy.duplicate_window):
                    logmsg.log("delivery", logmsg.DUPLICATE_SUPPRESSED, rcpt=t.rcpt.address,
                               mailbox=t.mailbox, msgid=msgid.decode("latin-1").strip())
                    return delivered(t.mailbox, 0, duplicate=True)
            msg = trace_headers(sender, t.rcpt.address) + data
            wait = self.policy.lock_wait if lock_timeout is None else lock_timeout
            if durability == SHARED:
                uids = yield from self.store.append_steps(t.mailbox, [msg],
                                                          internaldate=internaldate,
                                                          lock_timeout=wait)
            else:
                uids = self.store.append_many(t.mailbox, [msg], internaldate=internaldate,
                                              batch=durability == BATCH, lock_timeout=wait)
        except Exception as e:  # LockedError's own text names the holder and the wait
            if isinstance(e, LockedError) and lock_timeout == 0:
                raise  # the caller waits without blocking others, and tries again
            return self.refuse(e, sender, t.rcpt.address)
        out = delivered(t.mailbox, uids[0])
        logmsg.log("delivery", logmsg.DELIVERED, sender=sender, rcpt=t.rcpt.address,
                   mailbox=t.mailbox, uid=uids[0], size=len(msg), via=self.via)
        if msgid:
            self.dups.note(msgid, t.mailbox, self.policy.duplicate_window)
        return out

    def quota_warning(self, out: Outcome
                      ) -> tuple[str, Callable[..., Generator[str, None, bool]]] | None:
        """After a delivery: when it took its quota root past store.quotawarn
        (first time since usage was below), the root's INBOX and a function
        making the steps that deliver the warning there (called again for a
        retry, with lock_timeout= as steps() takes it); else None. Claimed in
        the database, so concurrent deliveries send one."""
        if not self.policy.warn_percent or not out.ok or out.uid == 0 or out.mailbox is None:
            return None
        try:
            root = self.store.entry(out.mailbox).quotaroot
            if not root:
                return None
            if not warning_due(self.store.db.record(QuotaEntry, root), self.policy.warn_percent):
                return None  # nothing to claim: no write transaction for most deliveries
            q = self.store.db.write(lambda t: claim_warning(t, root, self.policy.warn_percent),
                                    durable=False)
        except Exception as e:  # the message itself is delivered; the warning is a courtesy
            logmsg.log("delivery", logmsg.QUOTA_WARNING_FAILED, mailbox=out.mailbox, error=e)
            return None
        if q is None:
            return None
        return quota_root_mailbox(root), functools.partial(self.warning_steps, root, q)

    def warning_steps(self, root: str, q, *, lock_timeout: float | None = None
                      ) -> Generator[str, None, bool]:
        """The steps that deliver the quota warning of a root claimed for it
        (claim_warning): after a delivery, or from imquotacheck --warn.
        Returns whether it went in (a failure is logged)."""
        inbox = quota_root_mailbox(root)
        percent = q.used_bytes * 100 // q.limit_bytes
        wait = self.policy.lock_wait if lock_timeout is None else lock_timeout
        try:
            yield from self.store.append_steps(
                inbox, [warning_message(root, q.used_bytes, q.limit_bytes, percent,
                                        self.store.layout.config_dir)],
                # the store's own message: it goes in even where the delivery left no room
                lock_timeout=wait, check_quota=False)
        except (NoSuchMailboxError, AddressError):
            return False
        except Exception as e:
            if isinstance(e, LockedError) and lock_timeout == 0:
                raise  # as in steps(): the caller waits and tries again
            self.warning_failed(inbox, e)
            return False
        logmsg.log("delivery", logmsg.QUOTA_WARNING_SENT, mailbox=inbox, root=root,
                   used=q.used_bytes, limit=q.limit_bytes, percent=percent)
        return True

    def warning_failed(self, inbox: str, error: BaseException) -> None:
        logmsg.log("delivery", logmsg.QUOTA_WARNING_FAILED, mailbox=inbox, error=error)

    def _log(self, out: Outcome, sender: str, rcpt: str) -> None:
        msg = logmsg.DELIVERY_DEFERRED if out.temporary else logmsg.DELIVERY_REFUSED
        logmsg.log("delivery", msg, sender=sender, rcpt=rcpt, reply=out.reply(),
                   reason=out.reason)


def trace_headers(sender: str, rcpt: str) -> bytes:
    """Return-Path (the null sender as `<>`, however the MTA spelled it: aiosmtpd
    hands LMTP's `<>` on with its brackets) and Delivered-To."""
    sender = sender.strip()
    if sender.startswith("<") and sender.endswith(">"):
        sender = sender[1:-1]
    return f"Return-Path: <{sender}>\nDelivered-To: {rcpt}\n".encode("utf-8", "surrogateescape")


WARNING_TEMPLATE = "quotawarn.msg"  # <root>/config/: the administrator's own warning text
_DEFAULT_WARNING = ("From: Mail Store <postmaster>\nTo: {root}\nDate: {date}\n"
                    "Subject: Your mailbox is {percent}% full\n"
                    "Content-Type: text/plain; charset=us-ascii\n\n"
                    "Your mail uses {used} of the {limit} bytes you may keep ({percent}%).\n"
                    "When it is full, new mail is held back and, after a while, returned to its\n"
                    "senders. Delete or move messages you no longer need.\n")


def warning_message(root: str, used: int, limit: int, percent: int,
                    config_dir: str | None = None) -> bytes:
    """The quota warning: `config/quotawarn.msg` when there is one (a whole
    message, headers and body, UTF-8, with {root} {used} {limit} {percent}
    {date} filled in), else the built-in text. A template that cannot be
    read or filled is logged and the built-in text goes instead: the user is
    warned either way."""
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    values = {"root": root, "used": used, "limit": limit, "percent": percent, "date": date}
    template = _DEFAULT_WARNING
    if config_dir is not None:
        path = os.path.join(config_dir, WARNING_TEMPLATE)
        try:
            with open_nofollow(path) as f:
                text = f.read().decode("utf-8")
            text.format(**values)
            template = text
        except FileNotFoundError:
            pass
        except (OSError, StoreError, UnicodeDecodeError, KeyError, IndexError, ValueError) as e:
            logmsg.log("delivery", logmsg.QUOTA_TEMPLATE_BAD, path=path, error=e)
    return template.format(**values).replace("\r\n", "\n").encode("utf-8")

