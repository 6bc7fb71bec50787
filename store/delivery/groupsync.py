"""Group commit for lmtpd: deliveries on one asyncio loop that each need
"everything I wrote is durable" share one filesystem sync.

A delivery asks with `await sync(path)`. A sync that *starts* after the
request covers it (syncfs flushes everything written before it begins).
One sync runs at a time, in a thread of its own; requests made
meanwhile wait together for the next one, which starts as soon as the
running one ends. When none runs, a request's sync starts only after the
callbacks that were ready with it have run: the other sessions whose data
arrived in the same turn of the loop join it (measured at 8 sessions: 8
requests per round, against 2.3 when the sync started at once). So N
deliveries in flight cost about two syncs between them, not two each.
Partitions on different filesystems are synced separately (a syncfs
covers only its own)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..fsutil import sync_filesystem


class GroupSync:
    def __init__(self, flush: Callable[[str], None] = sync_filesystem):
        self._flush = flush
        # one thread: the loop goes on serving while a sync runs, and what it
        # writes meanwhile joins the next round
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="groupsync")
        self._running: dict[int, asyncio.Future] = {}  # per device: the sync under way
        self._next: dict[int, asyncio.Future] = {}  # per device: the one that starts next
        self.rounds = 0  # syncs run (the benchmark reports them)
        self.requests = 0

    async def sync(self, path: str) -> None:
        dev = os.stat(path).st_dev
        self.requests += 1
        nxt = self._next.get(dev)
        if nxt is None:
            nxt = self._next[dev] = asyncio.get_running_loop().create_future()
            if dev not in self._running:
                asyncio.get_running_loop().call_soon(self._start, dev, path)
                self._running[dev] = nxt  # scheduled: later requests join `nxt` meanwhile
        await asyncio.shield(nxt)  # a cancelled waiter must not cancel the others' sync

    def _start(self, dev: int, path: str) -> None:
        fut = self._running[dev] = self._next.pop(dev)
        work = asyncio.get_running_loop().run_in_executor(self._pool, self._flush, path)
        work.add_done_callback(lambda w: self._done(dev, path, fut, w))

    def _done(self, dev: int, path: str, fut: asyncio.Future, work: asyncio.Future) -> None:
        del self._running[dev]
        self.rounds += 1
        failed = work.exception()
        if failed is not None:  # every waiter it covered hears of it
            fut.set_exception(failed)
        else:
            fut.set_result(None)
        if dev in self._next:
            self._start(dev, path)
