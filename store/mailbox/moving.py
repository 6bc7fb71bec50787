"""An administrator's move of messages between mailboxes (`mboxutil --move`,
imexpire's `fileinto`), whole on a kill.

Before anything moves, a journal in the source mailbox's directory names
the messages (UID and GUID) and the target with its UIDNEXT then. The
copies go in with their flags, keywords and dates, then the originals are
expunged (into store.exp, like any expunge), then the journal goes. A move
cut off anywhere is finished by the next move out of that mailbox (or the
same command run again): a message the target already holds (same GUID,
at or above that UIDNEXT) is not copied twice, one still in the source is
expunged once. So after a kill each message ends up in exactly one place.

  store.move (UTF-8 JSON, one object; this module owns it):
    {"version": 1, "target": "<mailbox>", "uidnext": <target's UIDNEXT
     before the copies>, "messages": [[<source uid>, "<guid hex>"], ...]}
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .. import index, locks, logmsg
from ..crash import crashpoint
from ..errors import CorruptionError, NoSuchMailboxError, UsageError
from ..fsutil import fsync_dir, open_nofollow, write_file_atomic
from ..layout import canonical
from .messages import Incoming, append_incoming, expunge_locked
from .uidranges import MAX_UID, UidRanges

if TYPE_CHECKING:
    from .store import Store

JOURNAL = "store.move"
JOURNAL_VERSION = 1
COPY_BATCH = 500  # messages read into memory and appended at a time


class Journal:
    def __init__(self, target: str, uidnext: int, messages: list[tuple[int, bytes]]):
        self.target = target
        self.uidnext = uidnext
        self.messages = messages

    def dump(self) -> bytes:
        return json.dumps({"version": JOURNAL_VERSION, "target": self.target,
                           "uidnext": self.uidnext,
                           "messages": [[u, g.hex()] for u, g in self.messages]}).encode()


def _read_journal(mdir: str, mailbox: str) -> Journal | None:
    path = os.path.join(mdir, JOURNAL)
    try:
        with open_nofollow(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    try:
        d = json.loads(raw)
        if d.get("version") != JOURNAL_VERSION:
            raise ValueError(f"version {d.get('version')!r}")
        target = canonical(d["target"])
        uidnext = int(d["uidnext"])
        msgs = [(int(u), bytes.fromhex(g)) for u, g in d["messages"]]
    except (ValueError, KeyError, TypeError, UsageError) as e:
        raise CorruptionError(f"unreadable move journal ({e}); the messages it names are still "
                              "in the source: remove the file and run the move again",
                              kind="move-journal", mailbox=mailbox, path=path) from None
    return Journal(target, uidnext, msgs)


def _drop_journal(mdir: str) -> None:
    os.unlink(os.path.join(mdir, JOURNAL))
    fsync_dir(mdir)


def move(store: Store, source: str, target: str, uids: Iterable[int] | UidRanges
         ) -> dict[int, int]:
    """Move the messages `uids` of `source` into `target`, past its quota if
    need be (an administrator's act; usage still counts). A move of
    `source` cut off earlier is finished first. Returns source UID ->
    target UID for each message moved (UIDs the source does not hold are
    passed over)."""
    source, target = canonical(source), canonical(target)
    if source == target:
        raise UsageError(f"{source}: a mailbox cannot be moved into itself")
    store.entry(target)  # NoSuchMailboxError before anything is written
    fd = locks.take(store.layout.lock_dir, locks.MOVE_LOCK, locks.MAILBOX_TIMEOUT,
                    "the administrators' move")
    try:
        with store.lock(source):
            mdir = store.mailbox_dir(source)
            finish_pending_locked(store, source, mdir)
            want = uids if isinstance(uids, UidRanges) else set(uids)
            recs = [r for r in store.read_clean(source, mdir).records if r.uid in want]
            if not recs:
                return {}
            journal = Journal(target, store.header(target).uidnext,
                              [(r.uid, r.guid) for r in recs])
            write_file_atomic(os.path.join(mdir, JOURNAL), journal.dump())
            crashpoint("move:after-journal")
            return _finish(store, source, mdir, journal)
    finally:
        locks.release(fd)


def parse_uid_set(text: str) -> UidRanges:
    """An IMAP UID set (`1,4:7,20:*`; `*` is the highest UID there can be)."""
    ranges = []
    for part in text.split(","):
        lo, colon, hi = part.strip().partition(":")
        try:
            a = MAX_UID if lo == "*" else int(lo)
            b = a if not colon else MAX_UID if hi == "*" else int(hi)
        except ValueError:
            raise UsageError(f"{text!r} is not a UID set (such as 1,4:7,20:*)") from None
        if not (0 < a <= MAX_UID and 0 < b <= MAX_UID):
            raise UsageError(f"{text!r}: UIDs are 1 to {MAX_UID}")
        ranges.append([min(a, b), max(a, b)])
    return UidRanges(ranges)


def finish_pending(store: Store, source: str) -> dict[int, int]:
    """Finish a move out of `source` that was cut off (nothing when none was)."""
    source = canonical(source)
    mdir = store.mailbox_dir(source)
    if not os.path.lexists(os.path.join(mdir, JOURNAL)):
        return {}
    fd = locks.take(store.layout.lock_dir, locks.MOVE_LOCK, locks.MAILBOX_TIMEOUT,
                    "the administrators' move")
    try:
        with store.lock(source):
            return finish_pending_locked(store, source, mdir)
    finally:
        locks.release(fd)


def finish_pending_locked(store: Store, source: str, mdir: str) -> dict[int, int]:
    journal = _read_journal(mdir, source)
    if journal is None:
        return {}
    done = _finish(store, source, mdir, journal)
    logmsg.log("mailbox", logmsg.MOVE_FINISHED, count=len(done), source=source,
               target=journal.target)
    return done


def _finish(store: Store, source: str, mdir: str, journal: Journal) -> dict[int, int]:
    """Copy what the target lacks, expunge the originals, drop the journal."""
    idx = store.read_clean(source, mdir)
    present = {r.uid: r for r in idx.records}
    todo = [(u, g) for u, g in journal.messages if u in present]
    try:
        there: dict[bytes, list[int]] = {}
        for r in store.read(journal.target).records:
            if r.uid >= journal.uidnext:
                there.setdefault(r.guid, []).append(r.uid)
    except NoSuchMailboxError:  # deleted or renamed since the cut: the messages stay here
        logmsg.log("mailbox", logmsg.MOVE_TARGET_GONE, source=source, target=journal.target,
                   count=len(todo))
        _drop_journal(mdir)
        return {}
    placed: dict[int, int] = {}
    copy = []
    for uid, guid in todo:
        if there.get(guid):
            placed[uid] = there[guid].pop(0)
        else:
            copy.append(present[uid])
    reader = store.message_reader(source)
    for start in range(0, len(copy), COPY_BATCH):
        batch = copy[start:start + COPY_BATCH]
        items = [Incoming(reader.read(r.uid), r.flags & index.ALL_FLAGS,
                          tuple(index.keyword_names(idx.header, r.keywords)), r.internaldate)
                 for r in batch]
        new = append_incoming(store, journal.target, items, check_quota=False)
        placed.update(zip((r.uid for r in batch), new, strict=True))
        crashpoint("move:after-copy")
    expunge_locked(store, source, lambda r: r.uid in placed)
    crashpoint("move:after-expunge")
    _drop_journal(mdir)
    return placed
