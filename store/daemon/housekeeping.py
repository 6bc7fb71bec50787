"""stored's housekeeping work that is not on the schedule's clock alone:
stale reader slots, temp files of cut-off writes, and `stored -r`."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from .. import settings, snapshots
from ..fsutil import TEMP_PREFIX, temp_owner
from ..layout import Layout
from ..mailbox import Store
from ..proc import pid_alive

TEMP_MIN_AGE = 600  # seconds: a temp file without a writer's pid may be this young and live
TEMP_MAX_AGE = 86400  # seconds: a live pid this old is taken to be a reused one


def _abandoned(name: str, mtime: float, now: float) -> bool:
    """Whether a temp file's writer is gone: the pid in its name is not a
    live process (or the file is a day old: that pid was reused); a name
    without a pid is abandoned after TEMP_MIN_AGE."""
    owner = temp_owner(name)
    if owner is None:
        return now - mtime > TEMP_MIN_AGE
    return not pid_alive(owner) or now - mtime > TEMP_MAX_AGE


def remove_temp_files(layout: Layout, now: float) -> list[str]:
    """Temp files of writes cut off by a crash (index and settings rewrites,
    message deliveries never acknowledged, database installs) whose writer
    is gone (_abandoned); snapshot directories of dead writers."""
    removed = []
    # every directory of each partition, not only the mailboxes: a create
    # cut off before its index was in place leaves its temp files in a
    # directory that is no mailbox yet
    places = [layout.config_dir, layout.mboxlist_dir, *layout.config.partitions().values()]
    while places:
        d = places.pop()
        with contextlib.suppress(OSError):
            for e in os.scandir(d):
                if e.is_dir(follow_symlinks=False):
                    if d not in (layout.config_dir, layout.mboxlist_dir):
                        places.append(e.path)
                elif e.name.startswith(TEMP_PREFIX) and e.is_file(follow_symlinks=False) \
                        and _abandoned(e.name, e.stat(follow_symlinks=False).st_mtime, now):
                    os.unlink(e.path)
                    removed.append(e.path)
    snapshots.prune(layout, layout.config.get_int(settings.SNAPSHOT_DIRS))
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
