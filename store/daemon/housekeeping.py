"""stored's housekeeping work that is not on the schedule's clock alone:
stale reader slots, temp files of cut-off writes, and `stored -r`."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from .. import snapshots
from ..fsutil import TEMP_PREFIX
from ..layout import Layout, is_bucket, walk_spool
from ..mailbox import Store

TEMP_MIN_AGE = 600  # seconds: younger temp files may belong to a running writer


def remove_temp_files(layout: Layout, now: float) -> list[str]:
    """Temp files of writes cut off by a crash, older than TEMP_MIN_AGE:
    index and settings rewrites, message deliveries never acknowledged,
    snapshot directories."""
    removed = []
    places = [layout.config_dir, layout.mboxlist_dir]
    for ppath in layout.config.partitions().values():
        for _name, mdir in walk_spool(ppath):
            places.append(mdir)
            with contextlib.suppress(OSError):
                places += [e.path for e in os.scandir(mdir)
                           if e.is_dir(follow_symlinks=False) and is_bucket(e.name)]
    for d in places:
        with contextlib.suppress(OSError):
            for e in os.scandir(d):
                if e.name.startswith(TEMP_PREFIX) and e.is_file(follow_symlinks=False) \
                        and now - e.stat().st_mtime > TEMP_MIN_AGE:
                    os.unlink(e.path)
                    removed.append(e.path)
    snapshots.prune(layout, layout.config.get_int("local.store.snapshotdirs"))
    return removed


@dataclass
class Cleanup:
    readers_cleared: int
    temp_files_removed: list[str]


def cleanup(layout: Layout, now: float) -> Cleanup:
    """`stored -r`: stale reader slots, old temp files, one database sync.
    The caller holds stored's lock or stored is running (then both do it)."""
    with Store(layout) as store:
        cleared = store.db.clear_stale_readers()
        removed = remove_temp_files(layout, now)
        store.db.sync()
    return Cleanup(cleared, removed)
