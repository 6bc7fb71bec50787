"""Expiry (Sun's imexpire): the messages the rules choose are expunged into
store.exp like any expunge (UIDs never reused, sessions told at their next
command, quota usage lowered), filed into a folder (an administrator's
move, whole on a kill), or only reported. stored erases the expunged files
at its erase hour, as it does every expunged message's.

A kill mid-run loses nothing and expires nothing twice: each mailbox's
expunge is one swap of its index, a fileinto is journalled (moving.py),
and a re-run chooses from what is left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import index, logmsg
from ..errors import MailboxExistsError, NoSuchMailboxError, StoreError
from ..layout import USER_NS, canonical
from . import moving
from .expirerules import DAY, Rule, RuleSet, header_matches
from .messages import expunge_locked

if TYPE_CHECKING:
    from .store import MailboxInfo, Store

HEADER_LIMIT = 1 << 16  # bytes of a message read to match header criteria


@dataclass
class Expired:
    """What expiry did (or, in a dry run, would do) in one mailbox."""

    mailbox: str
    uidvalidity: int
    discarded: list[int] = field(default_factory=list)
    filed: dict[str, list[int]] = field(default_factory=dict)  # target -> source UIDs
    reported: list[int] = field(default_factory=list)
    error: str | None = None

    def count(self) -> int:
        return len(self.discarded) + sum(len(u) for u in self.filed.values()) + len(self.reported)

    def as_json(self) -> dict:
        return {"mailbox": self.mailbox, "uidvalidity": self.uidvalidity,
                "discarded": self.discarded, "filed": self.filed, "reported": self.reported,
                **({"error": self.error} if self.error else {})}


def _selected(rule: Rule, records: list[index.Record],
              fields_of: Callable[[index.Record], dict[str, list[str]]], now: int) -> set[int]:
    """The UIDs one rule expires (records in UID order: oldest first)."""
    def flags_ok(r: index.Record) -> bool:
        return ((rule.seen != "and" or bool(r.flags & index.FLAG_SEEN))
                and (rule.deleted != "and" or bool(r.flags & index.FLAG_DELETED)))
    out: set[int] = set()
    if rule.seen == "or":
        out |= {r.uid for r in records if r.flags & index.FLAG_SEEN}
    if rule.deleted == "or":
        out |= {r.uid for r in records if r.flags & index.FLAG_DELETED}
    eligible = [r for r in records if flags_ok(r)]
    if not (rule.messagedays or rule.messagecount or rule.foldersize or rule.messagesize
            or rule.headers) and "and" in (rule.seen, rule.deleted):
        out |= {r.uid for r in eligible}  # `seen: and` alone: every seen message
    if rule.messagedays:
        cutoff = now - rule.messagedays * DAY
        out |= {r.uid for r in eligible if r.internaldate <= cutoff}
    if rule.messagesize:
        cutoff = now - rule.messagesizedays * DAY
        out |= {r.uid for r in eligible if r.size > rule.messagesize and r.internaldate <= cutoff}
    if rule.headers:
        for r in eligible:
            if r.uid not in out:
                fields = fields_of(r)
                if any(header_matches(pattern, value) for name, pattern in rule.headers
                       for value in fields.get(name, ())):
                    out.add(r.uid)
    if rule.messagecount or rule.foldersize:
        left = [r for r in records if r.uid not in out]
        n, total = len(left), sum(r.size for r in left)
        for r in left:
            if ((not rule.messagecount or n <= rule.messagecount)
                    and (not rule.foldersize or total <= rule.foldersize)):
                break
            if flags_ok(r):
                out.add(r.uid)
                n, total = n - 1, total - r.size
    return out


def choose(rules: list[Rule], records: list[index.Record],
           fields_of: Callable[[index.Record], dict[str, list[str]]], now: int) -> dict[int, Rule]:
    """UID -> the rule whose action it takes (the last applying rule that expires it)."""
    cache: dict[int, dict[str, list[str]]] = {}

    def cached(r: index.Record) -> dict[str, list[str]]:
        if r.uid not in cache:
            cache[r.uid] = fields_of(r)
        return cache[r.uid]
    out: dict[int, Rule] = {}
    for rule in rules:
        for uid in _selected(rule, records, cached, now):
            out[uid] = rule
    return out


def header_fields(data: bytes) -> dict[str, list[str]]:
    """Field name (lower case) -> its values, RFC 2047 words decoded."""
    from email import policy  # here: only a rule with header criteria pays for the parser
    from email.parser import BytesHeaderParser
    try:
        items = [(k, str(v)) for k, v in
                 BytesHeaderParser(policy=policy.default).parsebytes(data).items()]
    except Exception:  # noqa: BLE001 - a header the parser chokes on is matched raw
        items = [(k, str(v)) for k, v in
                 BytesHeaderParser(policy=policy.compat32).parsebytes(data).items()]
    out: dict[str, list[str]] = {}
    for k, v in items:
        out.setdefault(k.lower(), []).append(v)
    return out


def target_of(rule: Rule, mailbox: str) -> str:
    """The folder a fileinto rule files a mailbox's messages into: `user/...`
    as written, else a folder of the mailbox's owner."""
    if rule.fileinto.startswith(USER_NS + "/"):
        return canonical(rule.fileinto)
    parts = mailbox.split("/")
    if parts[0] != USER_NS:
        raise StoreError(f"{rule.origin}: fileinto:{rule.fileinto} names no owner's folder for "
                         f"the shared mailbox {mailbox} (write user/<id>/{rule.fileinto})")
    return canonical(f"{USER_NS}/{parts[1]}/{rule.fileinto}")


def expire_mailbox(store: Store, info: MailboxInfo, rules: list[Rule], now: int, *,
                   dry_run: bool = False) -> Expired:
    name = info.name
    out = Expired(name, info.uidvalidity)
    if not dry_run:  # a fileinto or an administrator's move cut off by a kill
        moving.finish_pending(store, name)
    if not rules:
        return out
    reader = store.message_reader(name)

    def fields_of(r: index.Record) -> dict[str, list[str]]:
        try:
            return header_fields(reader.read(r.uid, min(r.header_size or HEADER_LIMIT, HEADER_LIMIT)))
        except FileNotFoundError:
            return {}

    def sort(chosen: dict[int, Rule]) -> dict[str, list[int]]:
        by: dict[str, list[int]] = {}
        for uid, rule in sorted(chosen.items()):
            if rule.action == "discard":
                out.discarded.append(uid)
            elif rule.action == "report":
                out.reported.append(uid)
            else:
                target = target_of(rule, name)
                if target != name:  # filing a folder's messages into itself changes nothing
                    by.setdefault(target, []).append(uid)
        return by

    if dry_run:
        out.filed = sort(choose(rules, store.read(name).records, fields_of, now))
        return out
    with store.lock(name):
        idx = store.read_clean(name, store.mailbox_dir(name))
        filed = sort(choose(rules, idx.records, fields_of, now))
        gone = set(out.discarded)
        if gone:
            out.discarded = expunge_locked(store, name, lambda r: r.uid in gone)
    for target, uids in filed.items():
        if not store.exists(target):
            try:
                store.create(target, info.partition)
            except MailboxExistsError:
                pass
        try:
            moved = moving.move(store, name, target, uids)
        except NoSuchMailboxError as e:
            out.error = str(e)
            continue
        out.filed[target] = sorted(moved)
    if out.count():
        logmsg.log("mailbox", logmsg.MAILBOX_EXPIRED, mailbox=name, discarded=len(out.discarded),
                   filed=sum(len(u) for u in out.filed.values()), reported=len(out.reported))
    return out


def run(store: Store, now: int, *, user: str | None = None, partition: str | None = None,
        dry_run: bool = False, progress: Callable[[int, int], None] | None = None,
        stop: Callable[[], bool] | None = None) -> list[Expired]:
    """Expire every mailbox (or a user's, or a partition's) by the store's
    rules. A mailbox that fails is reported in its result and the others go
    on; a bad rule file raises RuleError before anything changes."""
    rules = RuleSet.load(store.layout.config_dir, store.layout.config)
    mailboxes = store.list(f"{USER_NS}/{user}/*" if user else None)
    if partition:
        mailboxes = [i for i in mailboxes if i.partition == partition]
    # every rule that applies, local files included, read before the first change
    plan = [(info, rules.for_mailbox(info.name, store.layout.partition_path(info.partition),
                                     store.layout.mailbox_dir(info.name, info.partition)))
            for info in mailboxes]
    results = []
    for n, (info, applying) in enumerate(plan, 1):
        if stop is not None and stop():
            break
        try:
            res = expire_mailbox(store, info, applying, now, dry_run=dry_run)
        except (OSError, StoreError) as e:
            res = Expired(info.name, info.uidvalidity, error=str(e))
            logmsg.log("mailbox", logmsg.EXPIRE_FAILED, mailbox=info.name, error=e)
        if res.count() or res.error:
            results.append(res)
        if progress is not None:
            progress(n, len(mailboxes))
    return results
