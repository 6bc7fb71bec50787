"""The in-place upgrade of older index files to the current format."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import index
from ..db import FolderEntry
from ..errors import StoreError

if TYPE_CHECKING:
    from .store import Store


@dataclass
class Upgrade:
    upgraded: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (mailbox, why)


def upgrade_indexes(store: Store, stop=None) -> Upgrade:
    """Rewrite, in place and under each mailbox's lock, every store.idx of
    an older version (index.upgrade_header). A mailbox that fails (damaged,
    locked) is named and skipped; readers take either version meanwhile.
    `stop()` true ends the pass early."""
    out = Upgrade()
    for name in [n for n, _e in store.db.records(FolderEntry)]:  # no read txn held meanwhile
        if stop is not None and stop():
            break
        try:
            with store.lock(name):
                if index.upgrade_header(store.mailbox_dir(name), name):
                    out.upgraded.append(name)
        except (OSError, StoreError) as e:
            out.failed.append((name, str(e)))
    return out
