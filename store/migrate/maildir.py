"""Maildir read and write (issue 15): imsimport's reader, imsexport's writer.

A Maildir is a directory with `cur/` and `new/` (and `tmp/`, never read).
A message's file name is `<unique>:2,<info>`: the info letters D F P R S T
are Draft, Flagged, Passed, Replied, Seen, Trashed; Dovecot's a-z are the
keywords listed in the folder's `dovecot-keywords` (`<n> <name>` lines, n=0
for `a`). Folders come in two layouts, both read: Maildir++ (`.Sent`,
`.Lists.dev`: subfolder names joined by dots, IMAP modified UTF-7) beside
`cur/` of the top folder, and the fs layout (a subdirectory that is itself
a Maildir, as notmuch's and Dovecot's `LAYOUT=fs`). Dovecot's
`dovecot-uidlist` gives each file's UID and the folder's UIDVALIDITY.

INTERNALDATE: Dovecot keeps it as the file's mtime, a copy made without
keeping times has the copy's time there, and the name's leading number is
the time of delivery (or of the APPEND: later than the date an APPEND
gave). So the mtime, unless the name's time is more than a minute earlier
(a copy that did not keep times); not merely the earlier of the two: a
delivery that began in one second and set the mtime in the next has the
later one in Dovecot (found on a loaded machine)."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

from .. import index
from .verified import Tree

# the info letters of system flags; P (Passed, i.e. forwarded, as mutt and
# Courier set it) has no IMAP flag: it is read as the keyword $Forwarded
# (Thunderbird's name), which imsexport writes as a keyword letter
INFO_FLAGS = {"D": index.FLAG_DRAFT, "F": index.FLAG_FLAGGED, "R": index.FLAG_ANSWERED,
              "S": index.FLAG_SEEN, "T": index.FLAG_DELETED}
FORWARDED = "$Forwarded"
KEYWORDS_FILE = "dovecot-keywords"
UIDLIST_FILE = "dovecot-uidlist"
MAX_DOVECOT_KEYWORDS = 26  # the letters a-z
_LEADING_TIME = re.compile(r"^([0-9]{9,11})\.")


@dataclass
class MaildirMessage:
    path: str
    flags: int
    keywords: tuple[str, ...]
    internaldate: int
    uid: int | None = None
    file_id: tuple[int, int] = (0, 0)  # (device, inode) as the scan saw it


@dataclass
class MaildirFolder:
    path: str
    name: tuple[str, ...]  # () for the top folder
    messages: list[MaildirMessage] = field(default_factory=list)
    uidvalidity: int | None = None
    uidnext: int | None = None
    unknown_keywords: int = 0  # letters with no name in dovecot-keywords


def is_maildir(path: str) -> bool:
    return any(_real_dir(os.path.join(path, d)) for d in ("cur", "new"))


def _real_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def folders(top: str, tree: Tree) -> Iterator[MaildirFolder]:
    """Every folder of the Maildir at `top`, the top first, then its
    Maildir++ folders and fs-layout subfolders. Symlinks are not followed;
    every directory listed is noted in `tree` (read through it only)."""
    yield read_folder(top, (), tree)
    entries = sorted(os.listdir(top))
    for d in entries:
        path = os.path.join(top, d)
        if d.startswith(".") and d not in (".", "..") and _real_dir(path) and is_maildir(path):
            yield read_folder(path, tuple(decode_name(p) for p in d[1:].split(".")), tree)
    yield from _fs_folders(top, (), tree)


def _fs_folders(path: str, name: tuple[str, ...], tree: Tree) -> Iterator[MaildirFolder]:
    for d in sorted(os.listdir(path)):
        sub = os.path.join(path, d)
        if d in ("cur", "new", "tmp") or d.startswith(".") or not tree.note_dir(sub):
            continue
        if is_maildir(sub):
            yield read_folder(sub, (*name, d), tree)
        yield from _fs_folders(sub, (*name, d), tree)


def decode_name(part: str) -> str:
    """A Maildir++ name component: IMAP's modified UTF-7 (RFC 3501 5.1.3),
    with Dovecot's listescape `\\2e` for a dot (the separator) and `\\5c`
    for a backslash."""
    if "\\" in part:
        part = re.sub(r"\\(2e|5c)", lambda m: "." if m.group(1) == "2e" else "\\", part)
    if "&" not in part:
        return part
    import base64

    def one(m: re.Match) -> str:
        if m.group(1) == "":
            return "&"
        b64 = m.group(1).replace(",", "/")
        try:
            return base64.b64decode(b64 + "=" * (-len(b64) % 4)).decode("utf-16-be")
        except ValueError:  # not modified UTF-7 after all: the name as it is
            return m.group(0)
    return re.sub(r"&([A-Za-z0-9+,]*)-", one, part)


def encode_name(part: str) -> str:
    """The inverse of decode_name, for imsexport's Maildir++ names."""
    import base64

    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            b64 = base64.b64encode("".join(run).encode("utf-16-be")).decode().rstrip("=")
            out.append("&" + b64.replace("/", ",") + "-")
            run.clear()
    escapes = {"&": "&-", ".": "\\2e", "\\": "\\5c"}
    for c in part:
        if 0x20 <= ord(c) <= 0x7E:
            flush()
            out.append(escapes.get(c, c))
        else:
            run.append(c)
    flush()
    return "".join(out)


def read_keywords(path: str) -> dict[str, str]:
    """dovecot-keywords: letter -> keyword name."""
    out = {}
    try:
        with open(os.path.join(path, KEYWORDS_FILE), encoding="utf-8", errors="replace") as f:
            for line in f:
                n, _, kw = line.strip().partition(" ")
                if n.isdigit() and int(n) < MAX_DOVECOT_KEYWORDS and kw:
                    out[chr(ord("a") + int(n))] = kw
    except FileNotFoundError:
        pass
    return out


def read_uidlist(path: str) -> tuple[int | None, int | None, dict[str, int]]:
    """dovecot-uidlist: (UIDVALIDITY, next UID, base file name -> UID).
    Version 1 (`1 <uidvalidity> <nextuid>`, then `<uid> <name>`) and
    version 3 (`3 V<uidvalidity> N<nextuid> ...`, then `<uid> [ext...]
    :<name>`). A file it cannot read gives nothing: new UIDs are given."""
    try:
        with open(os.path.join(path, UIDLIST_FILE), encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None, None, {}
    if not lines:
        return None, None, {}
    head = lines[0].split()
    uidvalidity = uidnext = None
    if head and head[0] == "1" and len(head) >= 3 and head[1].isdigit() and head[2].isdigit():
        uidvalidity, uidnext = int(head[1]), int(head[2])
    elif head and head[0] in ("2", "3"):
        for tok in head[1:]:
            if tok[:1] == "V" and tok[1:].isdigit():
                uidvalidity = int(tok[1:])
            elif tok[:1] == "N" and tok[1:].isdigit():
                uidnext = int(tok[1:])
    else:
        return None, None, {}
    uids = {}
    for line in lines[1:]:
        uid, _, rest = line.partition(" ")
        if not uid.isdigit():
            continue
        if rest.startswith(":"):
            fname = rest[1:]
        elif " :" in rest:  # version 3's extension fields come first
            fname = rest.split(" :", 1)[1]
        else:
            fname = rest
        uids[fname.partition(":")[0]] = int(uid)
    return uidvalidity, uidnext, uids


def parse_info(fname: str, keywords: dict[str, str]) -> tuple[int, tuple[str, ...], int]:
    """(flags, keywords, letters not in dovecot-keywords) from a file name's `:2,` info."""
    _base, sep, info = fname.partition(":2,")
    flags, kws, unknown = 0, [], 0
    if not sep:
        return 0, (), 0
    for c in info:
        if c in INFO_FLAGS:
            flags |= INFO_FLAGS[c]
        elif c == "P":
            kws.append(FORWARDED)
        elif "a" <= c <= "z":
            if c in keywords:
                kws.append(keywords[c])
            else:
                unknown += 1
    return flags, tuple(kws), unknown


SAME_DELIVERY = 60  # seconds between a file's name time and its mtime within one delivery


def internaldate(fname: str, st: os.stat_result) -> int:
    mtime = int(st.st_mtime)
    m = _LEADING_TIME.match(fname)
    named = int(m.group(1)) if m else mtime
    return named if named < mtime - SAME_DELIVERY else mtime


def read_folder(path: str, name: tuple[str, ...], tree: Tree) -> MaildirFolder:
    folder = MaildirFolder(path, name)
    keywords = read_keywords(path)
    folder.uidvalidity, folder.uidnext, uids = read_uidlist(path)
    tree.note_dir(path)
    for sub in ("new", "cur"):
        d = os.path.join(path, sub)
        if not tree.note_dir(d):
            continue
        for fname in os.listdir(d):
            if fname.startswith("."):
                continue
            fpath = os.path.join(d, fname)
            try:
                st = os.lstat(fpath)
            except FileNotFoundError:  # a live Maildir: moved to cur/ or renamed meanwhile
                continue
            if not stat.S_ISREG(st.st_mode):
                continue  # symlinks and the rest: never followed
            flags, kws, unknown = parse_info(fname, keywords)
            folder.unknown_keywords += unknown
            folder.messages.append(MaildirMessage(fpath, flags, kws, internaldate(fname, st),
                                                  uids.get(fname.partition(":")[0]),
                                                  (st.st_dev, st.st_ino)))
    return folder


# -- writing (imsexport) --------------------------------------------------------------

def info_letters(flags: int, keywords: list[str], letters: dict[str, str]) -> str:
    """The `:2,` info for a message: flag letters and keyword letters, in
    ASCII order as Maildir requires. $Forwarded is a keyword letter like
    any other (Dovecot does not read P as it)."""
    out = [c for c, bit in INFO_FLAGS.items() if flags & bit]
    out += [letters[k] for k in keywords if k in letters]
    return "".join(sorted(out))


def keyword_letters(keywords: list[str]) -> dict[str, str]:
    """keyword -> letter for the first 26 keywords."""
    return {k: chr(ord("a") + i) for i, k in enumerate(keywords[:MAX_DOVECOT_KEYWORDS])}
