"""What imsimport reads: an mbox file, a directory tree of mbox files, or a
Maildir (with its folders), each seen as folders of messages with their
metadata. The format is detected from the source itself."""

from __future__ import annotations

import mmap
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..errors import UsageError
from ..index import ALL_FLAGS, MAX_DATE
from ..mailbox import MAX_UID
from . import maildir, mbox
from .verified import Tree

U32 = 0xFFFFFFFF


@dataclass
class SourceMessage:
    read: Callable[[], bytes]  # the message as it is to be stored
    flags: int
    keywords: tuple[str, ...]
    internaldate: int
    uid: int | None
    where: str  # a file, or an mbox file and offset: for reports


@dataclass
class SourceFolder:
    name: tuple[str, ...]  # () is the source's top folder
    where: str
    messages: list[SourceMessage] = field(default_factory=list)
    uidvalidity: int | None = None  # with every message's uid: they may be kept
    uidnext: int | None = None
    notes: list[str] = field(default_factory=list)


MAILDIR, MBOX, MBOX_TREE = "maildir", "mbox", "mbox-tree"
HEAD_MAX = 1 << 16  # where an mbox message's status headers are looked for while scanning


def detect(path: str) -> str:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file or directory") from None
    if stat.S_ISLNK(st.st_mode):
        raise UsageError(f"{path} is a symlink: give the real path")
    if stat.S_ISREG(st.st_mode):
        return MBOX
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{path} is neither an mbox file nor a Maildir directory")
    return MAILDIR if maildir.is_maildir(path) else MBOX_TREE


def folders(path: str, fmt: str) -> Iterator[SourceFolder]:
    """The folders of a source; every file is read later through the scan's
    Tree (verified.py), so that a directory swapped for a symlink after the
    scan is refused, not followed."""
    if fmt == MAILDIR:
        tree = Tree(path)
        for f in maildir.folders(path, tree):
            yield _from_maildir(f, tree)
    elif fmt == MBOX:
        tree = Tree(os.path.dirname(os.path.abspath(path)))
        yield read_mbox(path, (), tree)
        if tree.note_dir(path + ".sbd"):
            yield from _mbox_tree(path + ".sbd", (), tree)  # its folders, as imsexport writes
    else:
        tree = Tree(path)
        yield from _mbox_tree(path, (), tree)


def _from_maildir(f: maildir.MaildirFolder, tree: Tree) -> SourceFolder:
    out = SourceFolder(f.name, f.path, uidvalidity=f.uidvalidity, uidnext=f.uidnext)
    out.messages = [SourceMessage(_file_reader(tree, m.path, m.file_id), m.flags, m.keywords,
                                  m.internaldate, m.uid, m.path) for m in f.messages]
    if _uids_if_whole(out):
        out.messages.sort(key=lambda m: m.uid or 0)  # every one has a UID here
    else:
        out.messages.sort(key=lambda m: (m.internaldate, os.path.basename(m.where)))
    if f.unknown_keywords:
        out.notes.append(f"{f.unknown_keywords} keyword letters not in dovecot-keywords "
                         "were left out")
    return out


def _uids_if_whole(folder: SourceFolder) -> bool:
    """A source's UIDs count only when it has a UIDVALIDITY and gives every
    message a UID, each within what a mailbox can hold; otherwise they are
    all dropped (new ones are given, and the note says why). Every other
    value is checked here too, before anything is written: flags outside
    the system flags are dropped, an INTERNALDATE outside years 1970-9999
    becomes the import's time. Whether the UIDs count."""
    _check_values(folder)
    if folder.uidvalidity is not None and all(m.uid is not None for m in folder.messages):
        return True
    folder.uidvalidity = folder.uidnext = None
    for m in folder.messages:
        m.uid = None
    return False


def _check_values(folder: SourceFolder) -> None:
    if folder.uidvalidity is not None and not 1 <= folder.uidvalidity <= U32:
        folder.notes.append(f"UIDVALIDITY {folder.uidvalidity} is no 32-bit value: new UIDs "
                            "are given")
        folder.uidvalidity = None
    bad = [m for m in folder.messages if m.uid is not None and not 1 <= m.uid <= MAX_UID]
    if bad and folder.uidvalidity is not None:
        folder.notes.append(f"UID {bad[0].uid} of {bad[0].where} (and {len(bad) - 1} more) "
                            f"is outside 1-{MAX_UID}: new UIDs are given")
        folder.uidvalidity = None
    top = max((m.uid or 0 for m in folder.messages), default=0)
    if folder.uidnext is not None and not top < folder.uidnext <= MAX_UID + 1:
        folder.notes.append(f"UIDNEXT {folder.uidnext} is not above the highest UID {top} "
                            f"and at most {MAX_UID + 1}: left out")
        folder.uidnext = None
    now = int(time.time())
    dated = 0
    for m in folder.messages:
        m.flags &= ALL_FLAGS
        if not 0 <= m.internaldate <= MAX_DATE:
            m.internaldate = now
            dated += 1
    if dated:
        folder.notes.append(f"{dated} messages had an arrival date outside years 1970-9999: "
                            "given the import's time")


def _file_reader(tree: Tree, path: str, file_id: tuple[int, int]) -> Callable[[], bytes]:
    def read() -> bytes:
        with os.fdopen(tree.open(path, file_id), "rb") as f:
            return f.read()
    return read


def _mbox_tree(path: str, name: tuple[str, ...], tree: Tree) -> Iterator[SourceFolder]:
    """A directory of mbox files (as mutt's and Thunderbird's): each file a
    folder, each subdirectory a level (Thunderbird's `X.sbd/` is folder X's)."""
    tree.note_dir(path)
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if entry.name.startswith(".") or entry.is_symlink():
            continue
        if entry.is_dir(follow_symlinks=False):
            sub = entry.name[:-4] if entry.name.endswith(".sbd") else entry.name
            yield from _mbox_tree(entry.path, (*name, sub), tree)
        elif entry.is_file(follow_symlinks=False) and not entry.name.endswith(".msf"):
            st = entry.stat(follow_symlinks=False)
            with os.fdopen(tree.open(entry.path, (st.st_dev, st.st_ino)), "rb") as f:
                head = f.read(5)
            if head in (b"From ", b"\xef\xbb\xbfFr") or not head:
                yield read_mbox(entry.path, (*name, entry.name), tree)


IN_MEMORY_MAX = 256 << 20  # an mbox up to this is read into memory; a bigger one is copied


def read_mbox(path: str, name: tuple[str, ...], tree: Tree | None = None) -> SourceFolder:
    """The messages of an mbox file. Never mapped where it lies: a source
    truncated while mapped kills the reader with SIGBUS; it is read into
    memory, or (past IN_MEMORY_MAX) copied to an unlinked temporary file
    (in $TMPDIR) that is mapped, so a big file is never in memory whole. A
    file that shrinks while it is read is a one-line error."""
    folder = SourceFolder(name, path)
    if tree is None:
        tree = Tree(os.path.dirname(os.path.abspath(path)))
    st = os.lstat(path)
    fd = tree.open(path, (st.st_dev, st.st_ino))
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return folder
        raw = _private_copy(fd, size, path)
    finally:
        os.close(fd)
    try:
        parts = list(mbox.split(raw))
    except ValueError as e:
        raise UsageError(f"{path}: {e}") from None
    mtime = int(os.stat(path).st_mtime)
    escaped = 0
    for i, part in enumerate(parts):
        meta = mbox.take_status(raw[part.begin:min(part.end, part.begin + HEAD_MAX)])[1]
        if i == 0 and meta.uidvalidity:
            folder.uidvalidity, folder.uidnext = meta.uidvalidity, meta.uidnext
        escaped += not part.trusted_length
        when = mbox.from_line_date(part.from_line) or mtime
        folder.messages.append(SourceMessage(_mbox_reader(raw, part), meta.flags, meta.keywords,
                                             when, meta.uid, f"{path}:{part.marker_offset}"))
    _uids_if_whole(folder)  # (an mbox keeps its order)
    trusted = len(parts) - escaped
    folder.notes.append(f"{len(parts)} messages: {trusted} split by Content-Length, "
                        f"{escaped} by From lines (>From unescaped)")
    return folder


def _private_copy(fd: int, size: int, path: str) -> bytes | mmap.mmap:
    """The first `size` bytes of `fd`, in memory or in a mapped copy that is
    ours alone."""
    def shrank(got: int) -> UsageError:
        return UsageError(f"{path}: the file shrank from {size} to {got} bytes while it was "
                          "read (something else is writing it): import it again when it is "
                          "left alone")
    if size <= IN_MEMORY_MAX:
        chunks, got = [], 0
        while got < size:
            b = os.read(fd, min(size - got, 1 << 24))
            if not b:
                raise shrank(got)
            chunks.append(b)
            got += len(b)
        return b"".join(chunks)
    import tempfile
    with tempfile.TemporaryFile() as tmp:
        got = 0
        while got < size:
            n = os.sendfile(tmp.fileno(), fd, got, min(size - got, 1 << 30))
            if n == 0:
                raise shrank(got)
            got += n
        return mmap.mmap(tmp.fileno(), size, access=mmap.ACCESS_READ)


def _mbox_reader(raw: bytes | mmap.mmap, part: mbox.MboxMessage) -> Callable[[], bytes]:
    def read() -> bytes:
        return mbox.take_status(part.data(raw))[0]
    return read
