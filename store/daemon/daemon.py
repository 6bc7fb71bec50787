"""The store daemon's engine: one instance per store, startup integrity
check and recovery, readiness, and the housekeeping schedule.

The CLI (`store/cli/stored.py`) owns signals and output; this module logs,
returns values and raises typed errors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from .. import index, logmsg, settings, snapshots
from ..config import Config
from ..db import lmdbfiles
from ..errors import ProgrammingError, SettingError, StoreError
from ..layout import Layout
from ..mailbox import Store, expire
from ..mailbox.expirerules import RuleError
from ..mailbox.lifecycle import finish_renames
from ..mailbox.upgrade import upgrade_indexes
from ..proc import ChildStopped, die_with_parent, run_isolated, sd_notify, watchdog_interval
from . import state
from .recovery import Recovery, check_and_recover, rebuild_from_spool, resync_from_spool
from .schedule import Job, Schedule

log = logging.getLogger("store.stored")


class StopRequested(StoreError):
    """SIGTERM came while stored was still starting; what it cut off is
    finished by the next start."""

    exit_code = 0

T = TypeVar("T")


class Daemon:
    """One running stored: start (check, recover, ready), the job loop, shutdown."""

    def __init__(self, root: str, *, clock: Callable[[], float] = time.time,
                 status: Callable[[str], None] = lambda s: None):
        self.layout = Layout.open(root)
        self.clock = clock
        self.status = status
        self.lock: int | None = None  # the descriptor holding stored.lock
        self._store: Store | None = None  # both set by start()
        self._schedule: Schedule | None = None
        self.last_db_size = 0
        self._beating = threading.Event()  # set: the heartbeat thread stops
        self._stop: threading.Event | None = None  # run()'s: set by SIGTERM
        self._wd_interval = watchdog_interval()
        self._last_wd = 0.0
        self._heart: threading.Thread | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise ProgrammingError("stored's store used before start()")
        return self._store

    @property
    def schedule(self) -> Schedule:
        if self._schedule is None:
            raise ProgrammingError("stored's schedule used before start()")
        return self._schedule

    def acquire(self) -> None:
        """Take stored.lock: a second instance stops here, touching nothing."""
        if self.lock is None:
            self.lock = state.acquire_daemon_lock(self.layout)

    def start(self, stop: threading.Event | None = None) -> Recovery:
        """Check (and recover) the database, then become ready. `stop` (set
        by SIGTERM) stops a rebuild from the spool under way: StopRequested,
        and the next start finishes it."""
        t0 = time.monotonic()
        self._stop = stop
        self.acquire()
        state.write_state(self.layout, state.INIT)
        sd_notify("STATUS=checking the mailbox database")
        try:
            rec = check_and_recover(self.layout, self.clock(), self._status, self._rebuild)
            if not rec.recovered and state.rebuild_cut_off(self.layout):
                logmsg.log("stored", logmsg.STORED_REBUILD_UNFINISHED)
                rec.resync = rebuild_from_spool(self.layout, self._status, self._rebuild)
        except ChildStopped:
            raise StopRequested("stopped during the rebuild of the database from the spool; "
                                "the next start finishes it") from None
        self._store = Store(self.layout)
        finish_renames(self.store)  # before READY: no mailbox listed under neither name
        cleared = self.store.db.clear_stale_readers()
        if cleared:
            log.info("cleared %d stale reader slots", cleared)
        self.last_db_size = lmdbfiles.data_size(self.layout.mboxlist_dir)
        self._schedule = Schedule(self.layout, self.clock())
        if rec.recovered and rec.resync is None:  # restored from a snapshot
            state.mark_resync_pending(self.layout, rec.snapshot or "")  # before READY: a kill keeps it
        if state.resync_pending(self.layout):
            if not rec.recovered:
                logmsg.log("stored", logmsg.STORED_RESYNC_PENDING)
            self.schedule.due[Job.RESYNC] = self.clock()  # first thing after readiness
        if state.upgraded_version(self.layout) < index.IDX_VERSION:
            self.schedule.due[Job.UPGRADE] = self.clock()  # after readiness: v1 reads meanwhile
        state.write_state(self.layout, state.READY)
        self._heart = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        self._heart.start()
        sd_notify("READY=1\nSTATUS=ready")
        logmsg.log("stored", logmsg.STORED_READY, pid=os.getpid(), seconds=time.monotonic() - t0)
        return rec

    def _heartbeat(self) -> None:
        """A stopped or hung process stops renewing it (stored -t then says so);
        a long job in the main loop does not."""
        while not self._beating.wait(state.HEARTBEAT_INTERVAL):
            state.beat(self.layout)

    def _status(self, text: str) -> None:
        sd_notify(f"STATUS={text}")
        self.status(text)

    def reload(self) -> bool:
        """Reread the settings; a file that fails validation is logged and the
        running settings are kept. Returns whether they were reloaded."""
        try:
            config = Config.load(self.layout.root)
        except (SettingError, OSError) as e:
            logmsg.log("stored", logmsg.STORED_RELOAD_FAILED, error=e)
            return False
        self.layout.config = config
        self.schedule.reload(self.clock())
        log.info("settings reloaded")
        return True

    def run_job(self, job: Job | str, now: float) -> bool:
        """Run one job; a failure is logged and the job is due again at its
        next interval. Returns whether it succeeded."""
        job = Job(job)  # a name ("expire") too; a typo is a ValueError, not a job never run
        try:
            getattr(self, f"job_{job.value}")(now)
        except Exception as e:  # noqa: BLE001 - one failed job must not stop the daemon
            if not isinstance(e, StoreError | OSError):  # a bug: its traceback is the report
                logmsg.log_internal("stored", f"stored {job.value}", e)
            logmsg.log("stored", logmsg.STORED_JOB_FAILED, job=job, error=e)
            self.schedule.failed(job, self.clock())
            return False
        self.schedule.done(job, self.clock())
        return True

    def tick(self) -> list[Job]:
        """Run the jobs due now (the schedule puts a due resync first; no
        snapshot is taken while one is pending); returns their names."""
        now = self.clock()
        jobs = self.schedule.pop_due(now)
        ran: list[Job] = []
        for job in jobs:
            if job is Job.SNAPSHOT and state.resync_pending(self.layout):
                continue  # stays due: taken once the resync has completed
            self.run_job(job, now)
            ran.append(job)
        return ran

    def _ping_watchdog(self) -> None:
        if self._wd_interval and time.monotonic() - self._last_wd >= self._wd_interval:
            sd_notify("WATCHDOG=1")
            self._last_wd = time.monotonic()

    def _isolated(self, fn: Callable[..., T], *args: object) -> T:
        """A long job in a forked child (its own database handle): this
        process pings the watchdog meanwhile, and a SIGTERM kills the child
        at once, whatever the store's size. Every write of these jobs is an
        LMDB transaction or an atomic file swap, so a kill at any point
        leaves the store as a kill -9 of `reconstruct -m` would: whole."""
        if self._store is not None:
            self._store.close()  # no LMDB handle crosses a fork; reopened at the next use
        return run_isolated(fn, *args, tick=self._child_tick)

    def _rebuild(self) -> list[str]:
        """The rebuild from the spool before READY, in a child SIGTERM can kill."""
        return self._isolated(_resync_in_child, self.layout.root)

    def _child_tick(self) -> bool:
        self._ping_watchdog()
        return self._stop is not None and self._stop.is_set()

    def job_resync(self, now: float) -> None:
        try:
            self._isolated(_resync_in_child, self.layout.root)
        except ChildStopped:  # the marker stays: the next start runs it again
            log.info("spool resync stopped by a shutdown; it runs again at the next start")
            return
        state.clear_resync_pending(self.layout)

    def job_upgrade(self, now: float) -> None:
        """Bring older index files to the current format, in place."""
        up = upgrade_indexes(self.store, stop=lambda: self._stop is not None and self._stop.is_set())
        for name, why in up.failed:
            logmsg.log("stored", logmsg.UPGRADE_SKIPPED, mailbox=name, error=why)
        if up.upgraded:
            logmsg.log("stored", logmsg.INDEXES_UPGRADED, count=len(up.upgraded),
                       version=index.IDX_VERSION)
        if up.failed or (self._stop is not None and self._stop.is_set()):
            raise StoreError(f"{len(up.failed)} mailboxes not upgraded; tried again later")
        state.mark_upgraded(self.layout, index.IDX_VERSION)

    def job_checkpoint(self, now: float) -> None:
        self.store.db.sync()
        state.touch(state.stamp_path(self.layout, "checkpoint"), now)

    def job_cleanup(self, now: float) -> None:
        cleared = self.store.db.clear_stale_readers()
        size = lmdbfiles.data_size(self.layout.mboxlist_dir)
        if cleared or size != self.last_db_size:
            log.info("cleanup: %d stale reader slots cleared; database %d bytes (%+d)",
                     cleared, size, size - self.last_db_size)
        self.last_db_size = size
        state.touch(state.stamp_path(self.layout, "cleanup"), now)

    def job_peruser(self, now: float) -> None:
        # per-user flags are committed through the database as they change;
        # the write-out makes them durable on disk
        self.store.db.sync()
        state.touch(state.stamp_path(self.layout, "peruser"), now)

    def job_snapshot(self, now: float) -> None:
        try:
            self._isolated(_snapshot_in_child, self.layout.root, now)
        except ChildStopped:  # its temp directory goes at the next prune (a dead writer's)
            log.info("snapshot stopped by a shutdown; it is taken again after the restart")

    def job_expire(self, now: float) -> None:
        """Expire messages by the expiry rules (imexpire), then erase expunged
        message files, each mailbox on its own: one that fails is logged and
        skipped, the others are erased. Bad rules are logged and expire
        nothing; the erase still runs."""
        stopping = lambda: self._stop is not None and self._stop.is_set()  # noqa: E731
        try:
            expired = expire.run(self.store, int(now), stop=stopping,
                                 progress=lambda _n, _total: self._ping_watchdog())
            log.info("expire: %d messages expired in %d mailboxes",
                     sum(r.count() for r in expired), len(expired))
        except RuleError as e:
            logmsg.log("stored", logmsg.EXPIRE_RULES_BAD, error=e)
        # from the later of the job's time and now: what this run expired was expunged
        # after `now`, and with store.cleanupage 0 goes at once, as before
        before = (max(int(now), int(self.clock()))
                  - self.layout.config.get_int(settings.CLEANUP_AGE) * 3600)
        total = 0
        for info in self.store.list():
            if self._stop is not None and self._stop.is_set():
                break  # the record stays old: the erase runs again after the restart
            self._ping_watchdog()
            try:
                total += self.store.erase_expunged(info.name, before)
            except (OSError, StoreError) as e:
                logmsg.log("stored", logmsg.EXPIRE_SKIPPED, mailbox=info.name, error=e)
        else:
            state.touch(state.expire_record_path(self.layout), now)
        log.info("expire: %d expunged message files erased", total)

    def run(self, stop: threading.Event, reload: threading.Event, *, max_sleep: float = 0.5) -> None:
        """The job loop until `stop` is set; `reload` rereads the settings.
        Long jobs run in a child that `stop` kills (_isolated)."""
        self._stop = stop
        while not stop.is_set():
            if reload.is_set():
                reload.clear()
                self.reload()
            self.tick()
            self._ping_watchdog()
            wait = min(max_sleep, max(0.0, self.schedule.next_due() - self.clock()))
            stop.wait(wait)

    def shutdown(self) -> None:
        """Sync and close the database, remove the state file, release the lock."""
        sd_notify("STOPPING=1")
        self._beating.set()
        if self._heart is not None:
            self._heart.join(5)
        if self._store is not None:
            with contextlib.suppress(Exception):
                self._store.db.sync()
            self._store.close()
        state.clear_state(self.layout)
        if self.lock is not None:
            state.release_daemon_lock(self.lock)
            self.lock = None
        logmsg.log("stored", logmsg.STORED_STOPPED, pid=os.getpid())


def _resync_in_child(root: str) -> list[str]:
    die_with_parent(signal.SIGKILL)  # a killed stored must not leave it running
    layout = Layout.open(root)
    with Store(layout) as store:
        return resync_from_spool(layout, store)


def _snapshot_in_child(root: str, now: float) -> None:
    die_with_parent(signal.SIGKILL)
    layout = Layout.open(root)
    with Store(layout) as store:
        snapshots.take(layout, store.db, now=now)
