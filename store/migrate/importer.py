"""imsimport's engine: a source's folders into mailboxes.

Idempotent and so resumable: a message the mailbox already holds (under
its UID when UIDs are kept, else the same GUID, i.e. SHA-256 of its bytes,
and INTERNALDATE: present.py) is skipped, and messages go in
batches each made durable before the next, so a run killed at any point is
finished by running it again. UIDs and UIDVALIDITY of a source that has
them (dovecot-uidlist, X-IMAPbase) are kept when the mailbox has never
held a message, or already has that UIDVALIDITY (a resumed import)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import index, logmsg
from ..crash import crashpoint
from ..errors import InvalidNameError, OverQuotaError
from ..layout import canonical
from ..mailbox import FlagMode, Incoming, Store
from ..message import guid
from . import per_second
from .present import Present
from .sources import SourceFolder, detect, folders

BATCH_MESSAGES = 500
BATCH_BYTES = 32 << 20


@dataclass
class FolderResult:
    source: str
    mailbox: str
    found: int = 0
    imported: int = 0
    skipped: int = 0  # already there (same GUID and INTERNALDATE)
    vanished: int = 0  # gone from the source between its listing and its reading
    bytes: int = 0
    created: bool = False
    uids_kept: bool = False
    corrected: int = 0  # already there, its flags or keywords set back to the source's
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ImportResult:
    source: str
    format: str
    dry_run: bool
    folders: list[FolderResult] = field(default_factory=list)
    seconds: float = 0.0

    def totals(self) -> dict:
        t = {k: sum(getattr(f, k) for f in self.folders)
             for k in ("found", "imported", "skipped", "bytes")}
        t["messages_per_second"] = per_second(t["imported"], self.seconds)
        return t

    def as_json(self) -> dict:
        return {"source": self.source, "format": self.format, "dry_run": self.dry_run,
                "seconds": round(self.seconds, 3), "totals": self.totals(),
                "folders": [f.as_json() for f in self.folders]}


Progress = Callable[[int, int], None]  # (messages done, bytes of them)


def target_name(mailbox: str, folder: tuple[str, ...]) -> str:
    """Where a source folder goes: the top into MAILBOX, `Lists/dev` into
    MAILBOX/Lists/dev (a user's INBOX's children are the user's folders)."""
    return canonical("/".join((canonical(mailbox), *folder)))


def scan(source: str) -> tuple[str, list[SourceFolder]]:
    """The source's format and its folders (with every message's metadata)."""
    fmt = detect(source)
    return fmt, list(folders(source, fmt))


def run(store: Store, source: str, mailbox: str, *, dry_run: bool = False,
        check_quota: bool = True, scanned: tuple[str, list[SourceFolder]] | None = None,
        progress: Progress | None = None) -> ImportResult:
    fmt, found = scanned or scan(source)
    result = ImportResult(source, fmt, dry_run)
    start = time.monotonic()
    try:
        for folder in found:
            try:
                name = target_name(mailbox, folder.name)
            except InvalidNameError as e:  # one folder's odd name does not stop the rest
                result.folders.append(FolderResult(folder.where, "-", found=len(folder.messages),
                                                   notes=[f"left out: {e}"]))
                continue
            result.folders.append(_import_folder(store, folder, name, dry_run, check_quota,
                                                 progress))
    finally:
        result.seconds = time.monotonic() - start
    t = result.totals()
    if not dry_run and result.folders:
        logmsg.log("migrate", logmsg.IMPORT_DONE, imported=t["imported"], skipped=t["skipped"],
                   source=source, mailboxes=len(result.folders), mailbox=canonical(mailbox))
    return result


def _import_folder(store: Store, folder: SourceFolder, name: str, dry_run: bool,
                   check_quota: bool, progress: Progress | None) -> FolderResult:
    res = FolderResult(folder.where, name, found=len(folder.messages), notes=list(folder.notes))
    exists = store.exists(name)
    if not exists:
        res.created = True
        if not dry_run:
            store.create(name)
    present = Present([])
    keep = False
    table: list[str] = []
    if exists:
        idx = store.read_settled(name)
        present = Present(idx.records)
        table = idx.header.keywords
        keep = folder.uidvalidity is not None and idx.header.uidvalidity == folder.uidvalidity
    if folder.uidvalidity is not None and not keep:
        keep = not exists if dry_run else store.adopt_uids(name, uidvalidity=folder.uidvalidity)
    res.uids_kept = keep
    batch: list[Incoming] = []
    size = 0
    bad = _keywords_left_out(folder, table, res)
    # (flags, keywords) -> UIDs of messages already there whose flags are not the source's:
    # a killed import's files adopted by reconstruct -r come without their flags
    fixes: dict[tuple[int, tuple[str, ...]], list[int]] = {}

    def flush() -> None:
        nonlocal size
        if batch and not dry_run:
            try:
                store.append_incoming(name, batch, check_quota=check_quota)
            except OverQuotaError as e:
                raise OverQuotaError(f"{e}; {res.imported - len(batch)} messages of "
                                     f"{folder.where} were imported before it (run again "
                                     "with --ignore-quota to import past the limit)",
                                     since=e.since) from None
        if progress and batch:
            progress(len(batch), size)
        batch.clear()
        size = 0
    for m in folder.messages:
        try:
            data = m.read()
        except FileNotFoundError:  # a live Maildir renames a file when its flags change
            res.vanished += 1
            continue
        kws = tuple(k for k in m.keywords if k.lower() not in bad) if bad else m.keywords
        there = present.match(m.uid if keep else None, guid(data), m.internaldate)
        if there is not None:
            res.skipped += 1
            # under the source's UID with no flags and no keywords at all: as reconstruct adopts
            # a file a killed import left. Anything else may be the user's own change since
            # the first run (the guide's "run it again at the switch"), which stays.
            if (keep and there.uid == m.uid and there.flags == 0 and there.keywords == 0
                    and (m.flags or kws)):
                fixes.setdefault((m.flags, tuple(kws)), []).append(there.uid)
            if progress:
                progress(1, 0)
            continue
        batch.append(Incoming(data, m.flags, kws, m.internaldate, m.uid if keep else None))
        size += len(data)
        res.imported += 1
        res.bytes += len(data)
        if len(batch) >= BATCH_MESSAGES or size >= BATCH_BYTES:
            flush()
    flush()
    for (flags, kws), uids in fixes.items():
        res.corrected += len(uids)
        if not dry_run:
            store.store_flags(name, uids, flags, list(kws), FlagMode.SET)
    if res.corrected:
        res.notes.append(f"{res.corrected} messages already there under the source's UID had "
                         "no flags (a killed import's files that reconstruct adopted): "
                         + ("they would get" if dry_run else "given") + " the source's flags "
                         "and keywords")
    if res.vanished:
        res.notes.append(f"{res.vanished} messages left the source while it was read "
                         "(a live Maildir): run the import again to take them")
    crashpoint("import:before-uidnext")
    if keep and folder.uidnext and not dry_run:
        store.adopt_uids(name, uidnext=folder.uidnext)
    return res


def _keywords_left_out(folder: SourceFolder, table: list[str], res: FolderResult) -> set[str]:
    """The keywords (lower-cased) no message can take: not IMAP atoms, or
    past the mailbox's index.MAX_KEYWORDS (the first used are kept)."""
    bad = {k.lower() for m in folder.messages for k in m.keywords if not index.valid_keyword(k)}
    if bad:
        res.notes.append(f"keywords that are not IMAP atoms were left out: {' '.join(sorted(bad))}")
    have = {k.lower() for k in table}
    new = list(dict.fromkeys(k.lower() for m in folder.messages for k in m.keywords
                             if k.lower() not in have and k.lower() not in bad))
    over = new[max(index.MAX_KEYWORDS - len(have), 0):]
    if over:
        res.notes.append(f"a mailbox holds {index.MAX_KEYWORDS} keywords: "
                         f"{len(over)} more were left out ({' '.join(over[:5])}...)")
    return bad | set(over)
