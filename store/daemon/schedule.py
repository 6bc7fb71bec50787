"""When each housekeeping job of stored is next due."""

from __future__ import annotations

import os
import time
from enum import StrEnum

from .. import settings, snapshots
from ..layout import Layout
from .state import expire_record_path

RESYNC_RETRY = 60  # seconds before a failed resync is tried again


class Job(StrEnum):
    """stored's housekeeping jobs; each runs as Daemon.job_<value>."""

    CHECKPOINT = "checkpoint"  # local.store.checkpointinterval
    CLEANUP = "cleanup"  # local.store.cleanupinterval: stale LMDB readers
    PERUSER = "peruser"  # local.store.peruserinterval
    SNAPSHOT = "snapshot"  # local.store.snapshotinterval, from the newest on disk
    EXPIRE = "expire"  # once a day at local.store.expirestart: erase expunged files
    RESYNC = "resync"  # once, after a recovery from a snapshot
    UPGRADE = "upgrade"  # once, after a format change of the indexes



class Schedule:
    """When each housekeeping job is next due. Pure: it reads the clock it
    is given and the snapshot times on disk, so it can be tested with a
    frozen clock."""

    def __init__(self, layout: Layout, now: float):
        self.layout = layout
        self.reload(now)

    def reload(self, now: float) -> None:
        c = self.layout.config
        self.intervals = {Job.CHECKPOINT: c.get_int(settings.CHECKPOINT_INTERVAL),
                          Job.CLEANUP: c.get_int(settings.CLEANUP_INTERVAL),
                          Job.PERUSER: c.get_int(settings.PERUSER_INTERVAL)}
        self.due: dict[Job, float] = {k: now + v for k, v in self.intervals.items()}
        self.due[Job.SNAPSHOT] = self.snapshot_due(now)
        self.due[Job.EXPIRE] = self.expire_due(now)

    def snapshot_due(self, now: float) -> float:
        """Counted from the newest snapshot on disk: a restart does not reset
        the clock, and an overdue snapshot is taken soon after startup."""
        interval = self.layout.config.get_int(settings.SNAPSHOT_INTERVAL) * 60
        newest = snapshots.newest_time(self.layout)
        return now if newest is None else max(now, newest + interval)

    def expire_due(self, now: float) -> float:
        hour = self.layout.config.get_int(settings.EXPIRE_START)
        lt = time.localtime(now)
        today = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, hour, 0, 0, 0, 0, -1))
        last = self._last_expire()
        if today <= now and (last is None or last < today):
            return now
        if today > now:
            return today
        return time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday + 1, hour, 0, 0, 0, 0, -1))

    def _next_expire_hour(self, now: float) -> float:
        """The first start of the erase hour strictly after `now`."""
        hour = self.layout.config.get_int(settings.EXPIRE_START)
        lt = time.localtime(now)
        today = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, hour, 0, 0, 0, 0, -1))
        if today > now:
            return today
        return time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday + 1, hour, 0, 0, 0, 0, -1))

    def _last_expire(self) -> float | None:
        try:
            return os.path.getmtime(expire_record_path(self.layout))
        except OSError:
            return None

    def pop_due(self, now: float) -> list[Job]:
        """The jobs due at `now`, the earliest first; a due resync before all
        (a restored database is brought up to date before anything else)."""
        return [k for k, t in sorted(self.due.items(), key=lambda kv: (kv[0] is not Job.RESYNC, kv[1]))
                if t <= now]

    def done(self, job: Job, now: float) -> None:
        """Set when `job` is next due, after it ran at `now`."""
        if job in self.intervals:
            self.due[job] = now + self.intervals[job]
        elif job is Job.SNAPSHOT:
            self.due[job] = self.snapshot_due(now)
            if self.due[job] <= now:  # the snapshot failed: try again in an interval
                self.due[job] = now + self.layout.config.get_int(settings.SNAPSHOT_INTERVAL) * 60
        elif job is Job.EXPIRE:
            self.due[job] = self.expire_due(now + 1)
        elif job in (Job.RESYNC, Job.UPGRADE):  # once: after a recovery, after a format change
            del self.due[job]

    def failed(self, job: Job, now: float) -> None:
        """A job that failed at `now` is due again at its next interval (the
        erase of expunged files: at its hour tomorrow; the resync: in a minute)."""
        if job is Job.EXPIRE:
            self.due[job] = self._next_expire_hour(now)
        elif job in (Job.RESYNC, Job.UPGRADE):
            self.due[job] = now + RESYNC_RETRY
        else:
            self.done(job, now)

    def next_due(self) -> float:
        """When the next job is due."""
        return min(self.due.values())
