"""Which mailboxes a reconstruct run visits: from the spool and the database."""

from __future__ import annotations

import os
from typing import NamedTuple

from ..db import FolderEntry
from ..errors import NoSuchMailboxError
from ..layout import canonical, walk_spool
from ..mailbox import Store


class Task(NamedTuple):
    """One mailbox to visit, with what the database says of it."""

    name: str
    mdir: str
    partition: str
    entry: FolderEntry | None  # the folder entry, when the database has one that verifies


def select_mailboxes(store: Store, names: list[str], *, recursive: bool = False,
                     partition: str | None = None) -> tuple[list[Task], list[tuple[str, str]]]:
    """Every mailbox of the spool and the database (no names), or the named
    ones (with `recursive`, and everything below them), in name order; and
    the named mailboxes left out because they are on another partition than
    `partition` (Sun: with -p, listed mailboxes are rebuilt "only if they are
    in" it), each with the partition it is on."""
    every = store.layout.config.partitions()
    parts = every
    if partition:
        store.layout.partition_path(partition)
        parts = {partition: every[partition]}
    elsewhere: list[tuple[str, str]] = []
    db = dict(store.db.good_records(FolderEntry))
    found: dict[str, Task] = {}

    def add(name: str, mdir: str, part: str) -> None:
        found.setdefault(name, Task(name, mdir, part, db.get(name)))

    if not names:
        for part, ppath in parts.items():
            for name, mdir in walk_spool(ppath, deleting=True):
                add(name, mdir, part)
        for name, listed in db.items():
            if listed.partition in parts and name not in found:
                add(name, store.layout.mailbox_dir(name, listed.partition), listed.partition)
    def places(name: str, e: FolderEntry | None, among: dict[str, str]) -> list[str]:
        """The partitions of `among` a named mailbox is on: its entry's, else its directory's."""
        return ([e.partition] if e and e.partition in among
                else [p for p in among if os.path.isdir(store.layout.mailbox_dir(name, p))])

    for raw in names:
        name = canonical(raw)
        e = db.get(name)
        here = places(name, e, parts)
        if not here:
            other = places(name, e, every)
            if partition and other:
                elsewhere.append((name, other[0]))
                continue
            raise NoSuchMailboxError(f"mailbox {name} is neither in the database nor in the spool")
        part = here[0]
        mdir = store.layout.mailbox_dir(name, part)
        if recursive:
            for n, d in walk_spool(parts[part], mdir, deleting=True):
                add(n, d, part)
            for n, ce in db.items():
                if n.startswith(name.removesuffix("INBOX") if name.endswith("/INBOX")
                                else name + "/") and ce.partition == part:
                    add(n, store.layout.mailbox_dir(n, part), part)
        add(name, mdir, part)
    return sorted(found.values()), elsewhere
