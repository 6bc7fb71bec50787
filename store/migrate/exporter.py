"""imsexport's engine: mailboxes (with their folders) to Maildir or mboxrd.

Maildir: the top mailbox in DEST, each folder below it as a Maildir++
folder (`.Sent`, `.Lists.dev`, as Dovecot lays them out); every message in
`cur/` as `<INTERNALDATE>.M<uid>P<pid>.<host>,S=<size>:2,<info>` with its
mtime set to its INTERNALDATE, keywords in `dovecot-keywords` (the first
26: Maildir has letters a-z only) and UIDs in `dovecot-uidlist`, so
imsimport, Dovecot and Courier keep flags, keywords, dates and UIDs.

mboxrd: the top mailbox in the file DEST, its folders in `DEST.sbd/` (a
file per folder, `X.sbd/` for the folders below X: Thunderbird's layout,
which imsimport reads back). Each message: a `From ` line with its sender
(Return-Path) and INTERNALDATE, the status headers of its flags and
keywords (mbox.status_headers), its bytes with `>*From ` lines escaped,
and one line end before the next `From ` line.

Each mailbox is read from its index as it was when its export began: a
message expunged and erased meanwhile is left out (and counted)."""

from __future__ import annotations

import os
import re
import socket
import tempfile
import time
from dataclasses import dataclass, field

from .. import index
from ..errors import UsageError
from ..layout import canonical, child_prefix
from ..mailbox import Store
from . import maildir, mbox, per_second

MAILDIR, MBOX = "maildir", "mbox"
_RETURN_PATH = re.compile(rb"^return-path:[ \t]*<?([^<>\s]*)>?", re.I | re.M)


@dataclass
class ExportedMailbox:
    mailbox: str
    dest: str
    messages: int = 0
    bytes: int = 0
    vanished: int = 0  # expunged and erased while the export ran
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ExportResult:
    mailbox: str
    dest: str
    format: str
    mailboxes: list[ExportedMailbox] = field(default_factory=list)
    seconds: float = 0.0

    def as_json(self) -> dict:
        n = sum(m.messages for m in self.mailboxes)
        return {"mailbox": self.mailbox, "dest": self.dest, "format": self.format,
                "seconds": round(self.seconds, 3), "messages": n,
                "bytes": sum(m.bytes for m in self.mailboxes),
                "messages_per_second": per_second(n, self.seconds),
                "mailboxes": [m.as_json() for m in self.mailboxes]}


def folder_of(top: str, name: str) -> tuple[str, ...]:
    """`name`'s folder path below `top` (() for top itself)."""
    if name == top:
        return ()
    return tuple(name[len(child_prefix(top)):].split("/"))


def export(store: Store, mailbox: str, dest: str, fmt: str, *, recursive: bool = True,
           progress=None) -> ExportResult:
    top = canonical(mailbox)
    store.entry(top)  # NoSuchMailbox before anything is written
    names = [top] + (sorted(store.children(top)) if recursive else [])
    _check_dest(dest, fmt)
    result = ExportResult(top, dest, fmt)
    start = time.monotonic()
    for name in names:
        rel = folder_of(top, name)
        if fmt == MAILDIR:
            where = os.path.join(dest, "." + ".".join(maildir.encode_name(p) for p in rel)) \
                if rel else dest
            result.mailboxes.append(_to_maildir(store, name, where, progress))
        else:
            where = dest + "".join(f".sbd/{p}" for p in rel) if rel else dest
            result.mailboxes.append(_to_mbox(store, name, where, progress))
    result.seconds = time.monotonic() - start
    return result


def _check_dest(dest: str, fmt: str) -> None:
    if os.path.lexists(dest) and not (fmt == MAILDIR and os.path.isdir(dest)
                                      and not os.path.islink(dest) and not os.listdir(dest)):
        raise UsageError(f"{dest} exists: imsexport writes only a new "
                         + ("directory (or an empty one)" if fmt == MAILDIR else "file"))
    if fmt == MBOX and os.path.lexists(dest + ".sbd"):
        raise UsageError(f"{dest}.sbd exists: imsexport writes only new files")


def _messages(store: Store, name: str, idx: index.Index, out: ExportedMailbox):
    """(record, bytes, keyword names) of each message of `idx`, in UID order."""
    reader = store.message_reader(name)
    for rec, data in reader.each(idx.records):
        yield rec, data, index.keyword_names(idx.header, rec.keywords)
    out.vanished += reader.gone


def _to_maildir(store: Store, name: str, where: str, progress) -> ExportedMailbox:
    out = ExportedMailbox(name, where)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(where, sub), exist_ok=True)
    idx = store.read_settled(name)
    header = idx.header
    letters = maildir.keyword_letters(header.keywords)
    if len(header.keywords) > len(letters):
        out.notes.append("keywords past the 26th have no Maildir letter and were left out")
    host, pid = socket.gethostname().replace("/", "\\057").replace(":", "\\072"), os.getpid()
    uidlist = []
    for rec, data, kws in _messages(store, name, idx, out):
        base = f"{rec.internaldate}.M{rec.uid}P{pid}.{host},S={len(data)}"
        tmp = os.path.join(where, "tmp", base)
        with open(tmp, "xb") as f:
            f.write(data)
        os.utime(tmp, (rec.internaldate, rec.internaldate))
        os.rename(tmp, os.path.join(where, "cur",
                                    f"{base}:2,{maildir.info_letters(rec.flags, kws, letters)}"))
        uidlist.append(f"{rec.uid} :{base}\n")
        out.messages += 1
        out.bytes += len(data)
        if progress:
            progress(1)
    with open(os.path.join(where, maildir.KEYWORDS_FILE), "w", encoding="utf-8") as f:
        f.writelines(f"{ord(c) - ord('a')} {k}\n" for k, c in letters.items())
    with open(os.path.join(where, maildir.UIDLIST_FILE), "w", encoding="utf-8") as f:
        f.write(f"3 V{header.uidvalidity} N{header.uidnext}\n")
        f.writelines(uidlist)
    return out


def _to_mbox(store: Store, name: str, where: str, progress) -> ExportedMailbox:
    out = ExportedMailbox(name, where)
    directory = os.path.dirname(os.path.abspath(where))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".imsexport-", dir=directory)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as f:
            sep = b""
            for rec, data, kws in _messages(store, name, store.read_settled(name), out):
                m = _RETURN_PATH.search(data, 0, rec.header_size or len(data))
                sender = m.group(1).decode("ascii", "replace") if m and m.group(1) else ""
                f.write(sep + mbox.entry(data, sender, rec.internaldate, rec.flags, kws))
                sep = mbox.separator(data)
                out.messages += 1
                out.bytes += len(data)
                if progress:
                    progress(1)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, where)
    except BaseException:
        os.unlink(tmp)
        raise
    return out
