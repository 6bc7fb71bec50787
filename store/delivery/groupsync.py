"""Group commit: threads that each need "everything I wrote is durable"
share one filesystem sync.

A thread asks with `sync(path)`. A sync that *starts* after the request
covers it (syncfs flushes everything written before it begins). One
thread at a time runs the sync of a filesystem; those that asked
meanwhile wait and are covered together by the next one, so N concurrent
deliveries cost about two syncs, not N. Partitions on different
filesystems are synced separately (a syncfs covers only its own)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from ..fsutil import sync_filesystem

_KEPT_FAILURES = 16


class _Device:
    def __init__(self) -> None:
        self.requested = 0  # tickets handed out
        self.completed = 0  # every ticket up to this one has had its sync run
        self.running = False
        self.failures: list[tuple[int, int, BaseException]] = []  # tickets (from, to]: error


class GroupSync:
    def __init__(self, flush: Callable[[str], None] = sync_filesystem):
        self._flush = flush
        self._cv = threading.Condition()
        self._devices: dict[int, _Device] = {}
        self.rounds = 0  # syncs run (the benchmark reports it)
        self.requests = 0

    def sync(self, path: str) -> None:
        dev_id = os.stat(path).st_dev
        with self._cv:
            dev = self._devices.setdefault(dev_id, _Device())
            dev.requested += 1
            self.requests += 1
            ticket = dev.requested
            while dev.completed < ticket:
                if dev.running:
                    self._cv.wait()
                    continue
                self._lead(dev, path)
            for start, end, error in dev.failures:
                if start < ticket <= end:
                    raise error

    def _lead(self, dev: _Device, path: str) -> None:
        """Run one sync for every ticket handed out so far (called and
        returning with the condition's lock held)."""
        dev.running = True
        start, target = dev.completed, dev.requested
        self._cv.release()
        error = None
        try:
            self._flush(path)
        except Exception as e:  # every waiter it covered hears of it
            error = e
        finally:
            self._cv.acquire()
            dev.running = False
            self.rounds += 1
            if error is not None:
                dev.failures = [*dev.failures[-_KEPT_FAILURES + 1:], (start, target, error)]
            dev.completed = target
            self._cv.notify_all()
