"""Which mailboxes a reconstruct run visits: from the spool and the database."""

from __future__ import annotations

import os
from typing import NamedTuple

from ..db import FOLDER, FolderEntry
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
                     partition: str | None = None) -> list[Task]:
    """Every mailbox of the spool and the database (no names), or the named
    ones (with `recursive`, and everything below them), in name order."""
    parts = store.layout.config.partitions()
    if partition:
        store.layout.partition_path(partition)
        parts = {partition: parts[partition]}
    db = dict(store.db.good_records(FOLDER))
    found: dict[str, Task] = {}

    def add(name: str, mdir: str, part: str) -> None:
        found.setdefault(name, Task(name, mdir, part, db.get(name)))

    if not names:
        for part, ppath in parts.items():
            for name, mdir in walk_spool(ppath, deleting=True):
                add(name, mdir, part)
        for name, e in db.items():
            if e.partition in parts and name not in found:
                add(name, store.layout.mailbox_dir(name, e.partition), e.partition)
    for raw in names:
        name = canonical(raw)
        e = db.get(name)
        places = ([e.partition] if e and e.partition in parts
                  else [p for p in parts if os.path.isdir(store.layout.mailbox_dir(name, p))])
        if not places:
            raise NoSuchMailboxError(f"mailbox {name} is neither in the database nor in the spool")
        part = places[0]
        mdir = store.layout.mailbox_dir(name, part)
        if recursive:
            for n, d in walk_spool(parts[part], mdir, deleting=True):
                add(n, d, part)
            for n, ce in db.items():
                if n.startswith(name.removesuffix("INBOX") if name.endswith("/INBOX")
                                else name + "/") and ce.partition == part:
                    add(n, store.layout.mailbox_dir(n, part), part)
        add(name, mdir, part)
    return sorted(found.values())
