"""ACLs (RFC 4314 letters) and their reverse index, lright."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .. import index
from ..config import is_utf8
from ..db import FOLDER, LRIGHT, LrightEntry, Txn
from ..errors import UsageError
from ..layout import canonical, user_of

if TYPE_CHECKING:
    from .store import Store

RIGHTS_RE = re.compile(r"^[a-z]*$")
ALL_RIGHTS = "lrswipkxtecda"
ANYONE = "anyone"  # RFC 4314's identifier for every user
# a user's rights on their own mailboxes whatever the ACL says, so that no
# SETACL locks them out (Cyrus's implicit_owner_rights)
OWNER_RIGHTS = "lkxa"
# RFC 4314 2.1.1: the obsolete c and d stand for the rights that replaced them
_OBSOLETE = {"c": "k", "d": "xte"}


def rights(acl: dict[str, str], user: str, name: str) -> str:
    """What `user` may do on mailbox `name` with ACL `acl`: their own
    entry, anyone's, and the owner's implicit rights, in ALL_RIGHTS order."""
    got = set(acl.get(user, "")) | set(acl.get(ANYONE, ""))
    if user_of(name) == user:
        got |= set(OWNER_RIGHTS)
    for old, new in _OBSOLETE.items():
        if old in got:
            got |= set(new)
    return "".join(c for c in ALL_RIGHTS if c in got)


def default_acl(name: str) -> dict[str, str]:
    """A new mailbox's ACL: all rights for its user, none for anyone else."""
    user = user_of(name)
    return {user: ALL_RIGHTS} if user else {}


def shared_with(store: Store, user: str) -> list[str]:
    """The mailboxes whose ACL names `user` or anyone (lright), the user's
    own aside: what other users and shared folders they may see."""
    out: set[str] = set()
    for ident in (user, ANYONE):
        e = store.db.record(LrightEntry, ident)
        if e is not None:
            out.update(n for n in e.mailboxes if user_of(n) != user)
    return sorted(out)


def lright_add(t: Txn, name: str, acl: dict[str, str]) -> None:
    for ident in acl:
        e = t.record(LrightEntry, ident) or LrightEntry()
        if name not in e.mailboxes:
            e.mailboxes = sorted(e.mailboxes + [name])
            t.put(LRIGHT, ident, e)


def lright_remove(t: Txn, name: str, acl: dict[str, str]) -> None:
    for ident in acl:
        e = t.record(LrightEntry, ident)
        if e and name in e.mailboxes:
            e.mailboxes = [m for m in e.mailboxes if m != name]
            if e.mailboxes:
                t.put(LRIGHT, ident, e)
            else:
                t.delete(LRIGHT, ident)


def set_acl(store: Store, name: str, identifier: str, rights: str) -> dict[str, str]:
    """Set an identifier's rights (empty rights remove it). Keeps lright
    and the index header's redundant copy in step."""
    name = canonical(name)
    if not identifier or any(c in identifier for c in "\t\n\r\x00/") \
            or not identifier.isprintable() or not is_utf8(identifier):
        raise UsageError(f"invalid ACL identifier {identifier!r}")
    if not RIGHTS_RE.match(rights) or set(rights) - set(ALL_RIGHTS):
        raise UsageError(f"invalid rights {rights!r} (letters of {ALL_RIGHTS})")
    with store.lock(name):
        entry = store.entry(name)
        old = dict(entry.acl)
        acl = dict(entry.acl)
        if rights:
            acl[identifier] = "".join(c for c in ALL_RIGHTS if c in rights)
        else:
            acl.pop(identifier, None)
        mdir = store.mailbox_dir(name, entry)
        idx = store.read_clean(name, mdir)
        idx.header.acl = acl
        index.write_index(mdir, idx.header, idx.records)
        entry.acl = acl

        def txn(t: Txn) -> None:
            lright_remove(t, name, old)
            t.put(FOLDER, name, entry)
            lright_add(t, name, acl)
        store.db.write(txn)
        return acl
