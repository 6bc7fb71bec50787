"""Mailbox lifecycle: create, delete, rename (with children, across partitions)."""

from __future__ import annotations

import contextlib
import functools
import os
import time
from typing import TYPE_CHECKING

from .. import index, locks, logmsg, settings
from ..crash import crashpoint
from ..db import FOLDER, QUOTA, FolderEntry, QuotaEntry, Txn
from ..errors import CorruptionError, LimitError, MailboxExistsError, PermissionDeniedError, UsageError
from ..fsutil import TEMP_PREFIX, fsync_dir, open_nofollow, refuse_symlinks, write_file_atomic
from ..layout import (
    DELETING,
    USER_NS,
    canonical,
    child_prefix,
    is_bucket,
    is_descendant,
    is_inbox,
    parent,
    user_of,
)
from .acl import default_acl, lright_add, lright_remove
from .quota import quota_add, quota_root_for, quota_root_mailbox, recount_in, root_mailboxes
from .uidranges import MAX_UID

if TYPE_CHECKING:
    from .store import Store


def new_uidvalidity() -> int:
    return int(time.time()) & 0xFFFFFFFF or 1


UIDVALIDITY_FILE = "uidvalidity"  # in config/: the last UIDVALIDITY create gave


def next_uidvalidity(store: Store) -> int:
    """A UIDVALIDITY create never gave before in this store: the time, or one
    more than the last given when that is not earlier, so two mailboxes made
    in one second differ, and a mailbox deleted and made again within it
    does not come back with its old one (RFC 3501 2.3.1.1). Dovecot keeps
    the same counter in dovecot-uidvalidity. Written without a sync: after a
    crash the clock has moved past what was lost."""
    path = os.path.join(store.layout.config_dir, UIDVALIDITY_FILE)
    fd = locks.take(store.layout.lock_dir, locks.UIDVALIDITY_LOCK, 10.0, "the UIDVALIDITY counter")
    try:
        try:
            with open_nofollow(path, "rb") as f:
                last = int(f.read(32).strip() or 0)
        except (FileNotFoundError, ValueError):
            last = 0
        value = max(new_uidvalidity(), (last + 1) & 0xFFFFFFFF) or 1
        write_file_atomic(path, b"%d\n" % value, durable=False)
        return value
    finally:
        locks.release(fd)


def new_uniqueid() -> str:
    import uuid  # here: its import costs every command's start-up ~3 ms

    return uuid.uuid4().hex


def owned_count(store: Store, user: str) -> int:
    """How many mailboxes `user` has: the INBOX and its folders."""
    return len(store.db.items(FOLDER, f"{USER_NS}/{user}/"))


def check_create(store: Store, name: str, actor: str) -> None:
    """Whether `actor` (a user, not an administrator) may create `name`: in
    their own namespace always, elsewhere with the k right on the parent
    (RFC 4314 4); and never past local.user.maxmailboxes for the owner."""
    owner = user_of(name)
    if owner != actor:
        up = parent(name)
        if up is None or not store.exists(up) or "k" not in store.rights(up, actor):
            raise PermissionDeniedError(f"{actor} may not create {name} "
                                        "(no k right on its parent)")
    limit = store.layout.config.get_int(settings.MAX_MAILBOXES)
    if owner and limit and owned_count(store, owner) >= limit:
        raise LimitError(f"{owner} has {limit} mailboxes, the most local.user.maxmailboxes "
                         "allows")


def create(store: Store, name: str, partition: str = "primary",
           acl: dict[str, str] | None = None, *, actor: str | None = None) -> FolderEntry:
    """Create a mailbox: its directory and empty index, then its folder entry
    (and quota root). `actor`: the user asking (check_create); None for an
    administrator or the delivery agent."""
    name = canonical(name)
    if actor is not None:
        check_create(store, name, actor)
    store.layout.partition_path(partition)  # validates the partition
    if acl is None:
        acl = default_acl(name)
    with store.lock(name):
        mdir = store.layout.make_mailbox_dir(name, partition)
        if delete_pending(mdir):  # a delete of this name was cut off: finish it first
            finish_delete(store, name, mdir)
            mdir = store.layout.make_mailbox_dir(name, partition)
        if store.exists(name):
            raise MailboxExistsError(f"mailbox {name} already exists")
        if os.path.exists(os.path.join(mdir, index.IDX_FILE)) and not _cut_off_create(mdir, name):
            raise MailboxExistsError(f"mailbox {name} has an index on disk but no database "
                                     "entry; run reconstruct -m")
        qroot = quota_root_for(name)
        entry = FolderEntry(partition, new_uniqueid(), next_uidvalidity(store), acl, qroot)
        header = index.Header(name=name, unique_id=bytes.fromhex(entry.uniqueid),
                              uidvalidity=entry.uidvalidity, quotaroot=qroot, acl=acl,
                              last_update=int(time.time()))
        if qroot and name == quota_root_mailbox(qroot):  # the txn below makes the entry
            quota = store.db.record(QuotaEntry, qroot) or QuotaEntry()
            header.carries_limit, header.quota_limit = True, quota.limit_bytes
            header.quota_messages = quota.limit_messages
        index.create_index(mdir, header)
        crashpoint("create:after-index")

        def txn(t: Txn) -> None:
            t.put(FOLDER, name, entry)
            if qroot and t.get(QUOTA, qroot) is None:
                t.put(QUOTA, qroot, QuotaEntry())
            lright_add(t, name, acl)
        store.db.write(txn)
    logmsg.log("mailbox", logmsg.MAILBOX_CREATED, mailbox=name, partition=partition)
    return entry


def _cut_off_create(mdir: str, name: str) -> bool:
    """Whether the index on disk, with no database entry, is what a create
    killed between its two writes leaves: an index that never held a
    message (no client can know it), made again from scratch. One that held
    mail is the spool's knowledge: reconstruct -m brings its entry back."""
    try:
        header = index.read_header(mdir, name)
    except (OSError, CorruptionError):
        return False
    return header.exists == 0 and header.uidnext == 1


def adopt_uids(store: Store, name: str, *, uidvalidity: int | None = None,
               uidnext: int | None = None) -> bool:
    """Make a mailbox continue the one it is a copy of (an import from a
    Dovecot Maildir, a restore), so clients need not resync: take its
    UIDVALIDITY, which only a mailbox that never held a message may
    (returns False, changing nothing, for any other), and raise UIDNEXT to
    its UIDNEXT (a UID is never given twice, not even one the original
    expunged)."""
    name = canonical(name)
    if uidvalidity is not None and not 1 <= uidvalidity <= 0xFFFFFFFF:
        raise UsageError(f"UIDVALIDITY {uidvalidity} is not within 1-{0xFFFFFFFF}")
    if uidnext is not None and not 1 <= uidnext <= MAX_UID + 1:
        raise UsageError(f"UIDNEXT {uidnext} is not within 1-{MAX_UID + 1}")
    with store.lock(name):
        entry = store.entry(name)
        mdir = store.mailbox_dir(name, entry)
        header = index.read_header(mdir, name)
        if uidvalidity is not None and uidvalidity != header.uidvalidity:
            if header.exists or header.uidnext != 1:
                return False
            header.uidvalidity = uidvalidity
            # the index first: the database follows it (reconstruct -m trusts the spool)
            index.write_header(mdir, header)
            entry.uidvalidity = header.uidvalidity
            store.db.write(lambda t: t.put(FOLDER, name, entry))
        if uidnext is not None and uidnext > header.uidnext:
            header.uidnext = uidnext
            index.write_header(mdir, header)
    return True


def delete(store: Store, name: str) -> None:
    """Delete a mailbox, as a journaled operation: a mark (`store.deleted`)
    first, then its index (the spool no longer has it), the database, then
    its files. Killed at any point, the next command that finds the mark
    (reconstruct, create of the same name) finishes the delete: the mail
    never comes back."""
    name = canonical(name)
    with store.lock(name):
        entry = store.entry(name)
        mdir = store.mailbox_dir(name, entry)
        try:
            header = index.read_header(mdir, name)
            used = (header.exists, header.total_bytes)
        except (OSError, CorruptionError):
            used = None
        _mark_deleting(mdir)
        crashpoint("delete:after-mark")
        finish_delete(store, name, mdir, used)
    logmsg.log("mailbox", logmsg.MAILBOX_DELETED, mailbox=name)


def delete_pending(mdir: str) -> bool:
    """Whether a delete of the mailbox in `mdir` has begun (and not finished)."""
    return os.path.exists(os.path.join(mdir, DELETING))


def finish_delete(store: Store, name: str, mdir: str, used: tuple[int, int] | None = None) -> None:
    """The rest of a delete whose mark is written: index files, the folder
    entry (if still there), the files. `used`: the mailbox's (messages,
    bytes) to take off its quota root, or None when unknown (the root is
    recounted). The caller holds the mailbox lock."""
    for f in index.INDEX_FILES:  # store.idx first: the spool no longer has the mailbox
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(mdir, f))
    crashpoint("delete:after-index")

    def txn(t: Txn) -> None:
        entry = t.record(FolderEntry, name)
        if entry is None:
            return
        t.delete(FOLDER, name)
        lright_remove(t, name, entry.acl)
        if used is not None:
            quota_add(t, entry.quotaroot, -used[1], -used[0])
        elif entry.quotaroot:
            recount_in(store, t, entry.quotaroot)
    store.db.write(txn)
    _remove_mailbox_files(mdir)


def _mark_deleting(mdir: str) -> None:
    write_file_atomic(os.path.join(mdir, DELETING), b"")  # durable, directory included


def children(store: Store, name: str) -> list[str]:
    """The names of every mailbox below `name` in the database."""
    prefix = child_prefix(name)
    return [n for n, _ in store.db.items(FOLDER, prefix) if is_descendant(n, name)]


def check_rename(store: Store, old: str, new: str, actor: str) -> None:
    """Whether `actor` (a user, not an administrator) may rename `old` to
    `new`: the x right on the source and the k right on the new parent
    (RFC 4314 4), their own namespace's implicit rights counting; and never
    to another owner (Cyrus's rule: only an administrator moves a folder
    between users), or the rename would hand the folder, and the old owner's
    rights on it, to the renamer."""
    if "x" not in store.rights(old, actor):
        raise PermissionDeniedError(f"{actor} may not rename {old} (no x right)")
    if user_of(new) != user_of(old):
        raise PermissionDeniedError(f"{actor} may not move {old} to another owner ({new})")
    up = parent(new)
    if user_of(new) == actor:
        return
    if up is None or not store.exists(up) or "k" not in store.rights(up, actor):
        raise PermissionDeniedError(f"{actor} may not create {new} (no k right on its parent)")


def rename(store: Store, old: str, new: str, partition: str | None = None, *,
           actor: str | None = None) -> list[tuple[str, str]]:
    """Rename (and/or move to another partition) a mailbox with its children.
    `actor`: the user asking (their rights are checked: check_rename); None
    for an administrator. Returns the (old, new) name pairs moved."""
    old, new = canonical(old), canonical(new)
    if actor is not None:
        check_rename(store, old, new, actor)
    if old == new and partition is None:
        raise UsageError(f"{old}: old and new names are the same")
    if is_inbox(old) != is_inbox(new):
        raise UsageError("an INBOX can only be renamed to another user's INBOX "
                         f"({old} -> {new})")
    if is_descendant(new, old):
        raise UsageError(f"cannot move {old} inside itself ({new})")
    entry = store.entry(old)
    src_part = entry.partition
    dst_part = partition or src_part
    store.layout.partition_path(dst_part)
    moved = [old] + children(store, old)
    pairs = [(n, new + n[len(old):] if not is_inbox(old)
              else f"{USER_NS}/{user_of(new)}/" + n.split("/", 2)[2]) for n in moved]
    # the quota roots it touches are recounted: every mailbox they hold is
    # locked too, so that no delivery's usage is counted twice or missed
    roots = ({e.quotaroot for o, _n in pairs if (e := store.db.record(FolderEntry, o))}
             | {quota_root_for(n) for _o, n in pairs}) - {"", None}
    sharers = [m for r in roots if r
               for m, _e in store.db.read(functools.partial(root_mailboxes, root=r))]
    with store.lock(*[n for pair in pairs for n in pair], *sharers):
        for _o, n in pairs:
            if (n != _o) and store.exists(n):
                raise MailboxExistsError(f"mailbox {n} already exists")
        for o, _n in pairs:  # refuse before moving anything if an index is damaged
            store.read_clean(o, store.layout.mailbox_dir(o, src_part))
        src = store.layout.mailbox_dir(old, src_part).rstrip("/")
        dst = store.layout.mailbox_dir(new, dst_part).rstrip("/")
        par = parent(new)
        dst_parent = (store.layout.make_mailbox_dir(par, dst_part) if par
                      else os.path.dirname(dst))
        if par is None:
            os.makedirs(dst_parent, exist_ok=True)
            refuse_symlinks(store.layout.partition_path(dst_part), dst_parent)
        if os.path.lexists(dst) and src != dst:
            raise MailboxExistsError(f"{dst} already exists on disk; run reconstruct -m")
        journal = _write_journal(store, old, new, pairs, src_part, dst_part)
        crashpoint("rename:after-journal")
        if src != dst:
            if dst_part == src_part:
                os.rename(src, dst)
                fsync_dir(os.path.dirname(src))
            else:
                _copy_tree_durable(src, dst)
            fsync_dir(dst_parent)
        crashpoint("rename:after-move")
        _complete_rename(store, pairs, src_part, dst_part)
        if src != dst and dst_part != src_part:
            _remove_tree(src)
        os.unlink(journal)
    logmsg.log("mailbox", logmsg.MAILBOX_RENAMED, old=old, new=new, partition=dst_part)
    return pairs


def _complete_rename(store: Store, pairs: list[tuple[str, str]], src_part: str,
                     dst_part: str) -> None:
    """What follows the move of the directories: each index header names its
    new mailbox (with its quota root, ACL and limit copy), then the folder
    entries move in one transaction and the quota roots are recounted.
    Idempotent, so that a rename cut off after its move can be finished
    (finish_renames). The caller holds the locks."""
    entries = {}
    for o, n in pairs:
        e = store.db.record(FolderEntry, o) or store.db.record(FolderEntry, n)
        if e is None:
            continue
        e.partition = dst_part
        if quota_root_for(n) != quota_root_for(o):
            e.quotaroot = quota_root_for(n)
        old_user, new_user = user_of(o), user_of(n)
        if old_user and new_user and old_user != new_user and old_user in e.acl:
            e.acl[new_user] = e.acl.pop(old_user)
        entries[o] = e
    headers = {}
    for o, n in pairs:
        if o not in entries:
            continue
        e = entries[o]
        mdir = store.layout.mailbox_dir(n, dst_part)
        idx = store.read_clean(n, mdir)
        idx.header.name, idx.header.quotaroot, idx.header.acl = n, e.quotaroot, e.acl
        # a root's mailbox moved to be another root's (a user renamed) takes
        # its limit along; moved anywhere else it no longer keeps one
        if idx.header.carries_limit and (not e.quotaroot
                                         or n != quota_root_mailbox(e.quotaroot)):
            idx.header.carries_limit, idx.header.quota_limit = False, None
            idx.header.quota_messages = None
        headers[o] = idx.header
        index.write_index(mdir, idx.header, idx.records)

    def txn(t: Txn) -> None:
        roots = set()
        for o, n in pairs:
            if o not in entries:
                continue
            old_e = t.record(FolderEntry, o)
            if old_e is not None:
                lright_remove(t, o, old_e.acl)
                t.delete(FOLDER, o)
                roots.add(old_e.quotaroot)
            t.put(FOLDER, n, entries[o])
            lright_add(t, n, entries[o].acl)
            roots.add(entries[o].quotaroot)
            h = headers[o]
            if h.carries_limit:
                q = t.record(QuotaEntry, h.quotaroot) or QuotaEntry()
                q.limit_bytes, q.limit_messages = h.quota_limit, h.quota_messages
                t.put(QUOTA, h.quotaroot, q)
        for r in roots - {""}:
            if t.get(QUOTA, r) is None:
                t.put(QUOTA, r, QuotaEntry())
            recount_in(store, t, r)
    store.db.write(txn)


# ---- the rename journal: config/rename-<sha1 of the old name>.json ------------
JOURNAL_PREFIX = "rename-"


def _journal_path(store: Store, old: str) -> str:
    import hashlib

    h = hashlib.sha1(old.encode()).hexdigest()[:20]
    return os.path.join(store.layout.config_dir, f"{JOURNAL_PREFIX}{h}.json")


def _write_journal(store: Store, old: str, new: str, pairs, src_part: str, dst_part: str) -> str:
    """Record the rename durably before anything moves."""
    import json

    path = _journal_path(store, old)
    write_file_atomic(path, json.dumps({"old": old, "new": new, "pairs": pairs,
                                        "src_partition": src_part,
                                        "dst_partition": dst_part}).encode())
    return path


def finish_renames(store: Store) -> list[tuple[str, str]]:
    """Finish (or, when nothing had moved yet, forget) every rename a kill
    cut off, as its journal describes it. Returns the (old, new) renames
    finished. Called by reconstruct and by stored when they start."""
    import json

    done: list[tuple[str, str]] = []
    try:
        names = sorted(n for n in os.listdir(store.layout.config_dir)
                       if n.startswith(JOURNAL_PREFIX) and n.endswith(".json"))
    except FileNotFoundError:
        return done
    for fname in names:
        path = os.path.join(store.layout.config_dir, fname)
        try:
            with open(path, encoding="utf-8") as f:
                j = json.load(f)
            pairs = [tuple(p) for p in j["pairs"]]
            old, new, sp, dp = j["old"], j["new"], j["src_partition"], j["dst_partition"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not one of ours, or cut off while written: nothing had moved
        with store.lock(*[n for pair in pairs for n in pair]):
            if not os.path.exists(path):  # the rename was under way, and has finished
                continue
            src = store.layout.mailbox_dir(old, sp).rstrip("/")
            dst = store.layout.mailbox_dir(new, dp).rstrip("/")
            # the move is one rename(2), or a copy renamed into place whole
            moved = src == dst or os.path.isdir(dst)
            if moved:
                _complete_rename(store, pairs, sp, dp)
                if sp != dp and os.path.isdir(src):
                    _remove_tree(src)
                done.append((old, new))
            elif sp != dp:  # a copy cut off: its temp directory goes
                import shutil

                shutil.rmtree(os.path.join(os.path.dirname(dst),
                                           f"{TEMP_PREFIX}{os.path.basename(dst)}"),
                              ignore_errors=True)
            os.unlink(path)
        logmsg.log("mailbox", logmsg.RENAME_FINISHED if moved else logmsg.RENAME_FORGOTTEN,
                   old=old, new=new)
    return done


def _remove_mailbox_files(mdir: str) -> None:
    """Remove a deleted mailbox's own files (buckets, index) but not its
    child mailboxes' directories."""
    import shutil

    try:
        entries = list(os.scandir(mdir))
    except FileNotFoundError:
        return
    for e in entries:
        if e.is_dir(follow_symlinks=False) and is_bucket(e.name):
            shutil.rmtree(e.path)
        elif not e.is_dir(follow_symlinks=False) and (e.name in index.INDEX_FILES
                                                       or e.name.startswith(TEMP_PREFIX)):
            os.unlink(e.path)
    with contextlib.suppress(FileNotFoundError):  # last: until now the delete is unfinished
        os.unlink(os.path.join(mdir, DELETING))
    with contextlib.suppress(OSError):
        os.rmdir(mdir)


def _copy_tree_durable(src: str, dst: str) -> None:
    """Copy a mailbox tree to another partition: into a temp directory,
    fsync every file, then rename into place."""
    import shutil

    tmp = os.path.join(os.path.dirname(dst), f"{TEMP_PREFIX}{os.path.basename(dst)}")
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp, symlinks=True)
    for dirpath, _dirs, files in os.walk(tmp):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)
    os.rename(tmp, dst)


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(OSError):
        fsync_dir(os.path.dirname(path))
