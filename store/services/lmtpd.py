"""lmtpd: mail in from the MTA over LMTP (RFC 2033), on aiosmtpd.

The protocol runs on one asyncio loop; each delivery runs in a worker
thread (file I/O and locks block), and the threads share their syncs
(delivery.groupsync): a 250 reply is sent only once the message file and
its index record are durable, yet concurrent sessions cost one sync round
between them, not one each.

Deliveries are deferred (451 4.3.0) while stored is not ready: it may be
checking or recovering the database. When stored comes back as a new
process (it may have put a recovered database in place), lmtpd reopens
the database once the deliveries under way have finished."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiosmtpd.lmtp import LMTP

from .. import logmsg
from ..daemon import state
from ..delivery.address import AddressError
from ..delivery.agent import Agent, Policy, Target
from ..delivery.groupsync import GroupSync
from ..delivery.outcome import NotReadyError
from ..errors import StoreError
from ..mailbox import Store
from ..proc import sd_notify, watchdog_interval

WORKERS = 32
READY_POLL = 0.5  # seconds between two looks at stored's state


class _LMTP(LMTP):
    # real mail has lines longer than RFC 5322's 998; Dovecot and Cyrus take them
    line_length_limit = 1 << 20

    async def push(self, status):
        # aiosmtpd answers DATA over the size limit with one reply; LMTP owes
        # one per accepted recipient (RFC 2033 4.2), with an enhanced code
        if isinstance(status, str) and status.startswith("552 Error: Too much mail data"):
            n = max(1, len(self.envelope.rcpt_tos)) if self.envelope else 1
            status = "\r\n".join(["552 5.3.4 message exceeds the maximum size"] * n)
        await super().push(status)


@dataclass
class Stats:
    delivered: int = 0
    sessions: int = 0
    inflight: int = 0
    errors: list[str] = field(default_factory=list)


class Service:
    """The handler aiosmtpd calls, and the store it delivers into."""

    def __init__(self, root: str):
        self.store = Store.open(root)
        self.layout = self.store.layout
        self.policy = Policy.from_config(self.layout.config)
        self.sync = GroupSync()
        self.agent = Agent(self.store, self.policy, via="lmtp", syncer=self.sync.sync)
        self.pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="deliver")
        self.stats = Stats()
        self.ready = False
        self.stored_pid: int | None = None
        self._reopen = False

    # -- readiness -----------------------------------------------------------------------
    def poll_stored(self) -> bool:
        """Whether stored is ready; a new stored process means the database
        may have been replaced: reopen it once nothing uses it."""
        st = state.running(self.layout)
        ready = st is not None and st["state"] == state.READY
        if ready and self.stored_pid is not None and st["pid"] != self.stored_pid:
            self._reopen = True
        if ready:
            self.stored_pid = st["pid"]
        if self._reopen and self.stats.inflight == 0:
            self.store.close()
            self._reopen = False
        if ready and not self._reopen:
            try:  # opened here, in the loop's thread: the workers share one handle
                self.store.db  # noqa: B018
            except StoreError:
                ready = False
        was, self.ready = self.ready, ready and not self._reopen
        if was and not self.ready:
            logmsg.log("lmtpd", logmsg.LMTPD_WAITING, root=self.layout.root)
        return self.ready

    def _not_ready(self) -> NotReadyError:
        return NotReadyError("the message store is not ready (stored is not running or is "
                             "checking the database); try again later")

    # -- the aiosmtpd hooks ----------------------------------------------------------------
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        sender = envelope.mail_from or ""
        if not self.ready:
            return self.agent.refuse(self._not_ready(), sender, address).reply()
        try:
            target = await self._run(self.agent.resolve, address)
        except (AddressError, StoreError, OSError) as e:
            return self.agent.refuse(e, sender, address).reply()
        envelope.rcpt_tos.append(address)
        envelope.targets = [*getattr(envelope, "targets", []), target]
        return f"250 2.1.5 <{address}> OK"

    async def handle_DATA(self, server, session, envelope):
        targets: list[Target] = getattr(envelope, "targets", [])
        sender = envelope.mail_from or ""
        if not self.ready:
            return "\r\n".join(self.agent.refuse(self._not_ready(), sender, t.rcpt.address)
                               .reply() for t in targets)
        data = envelope.original_content.replace(b"\r\n", b"\n")
        outcomes = await self._run(self.agent.deliver, data, sender, targets)
        self.stats.delivered += sum(o.ok for o in outcomes)
        return "\r\n".join(o.reply() for o in outcomes)

    async def _run(self, fn, *args):
        """fn(*args) in a worker thread, counted (in the loop's thread, so
        that poll_stored never closes the database under a worker)."""
        self.stats.inflight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        finally:
            self.stats.inflight -= 1

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.agent.close()
        self.store.close()


def _unix_listener(path: str) -> socket.socket:
    """A listening UNIX socket at `path`, mode 0660. A socket left by a
    dead lmtpd is replaced; anything else there is refused."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise StoreError(f"{path} exists and is not a socket; lmtpd will not replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody listens there: a leftover
        else:
            raise StoreError(f"another lmtpd already listens on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = f"{path}.{os.getpid()}.new"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    sock.bind(tmp)
    os.chmod(tmp, 0o660)  # the mode before the name: no moment with a wider one
    os.rename(tmp, path)
    sock.listen(128)
    return sock


async def serve(root: str, socket_path: str, port: int, *, wait: bool = True,
                stop_after: float | None = None) -> Stats:
    """Run lmtpd until SIGTERM/SIGINT. With wait, READY is signalled only
    once stored is ready (deliveries would be deferred until then anyway)."""
    svc = Service(root)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    why = ["stopped"]
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: (why.__setitem__(0, signal.Signals(s).name),
                                                    stop.set()))

    def factory():
        svc.stats.sessions += 1
        return _LMTP(svc, data_size_limit=svc.policy.max_size, enable_SMTPUTF8=True,
                     hostname=socket.gethostname(), ident="msgstore lmtpd")

    servers = [await loop.create_unix_server(factory, sock=_unix_listener(socket_path))]
    where = [socket_path]
    if port:
        servers.append(await loop.create_server(factory, "127.0.0.1", port))
        where.append(f"127.0.0.1:{port}")
    try:
        if not svc.poll_stored():
            logmsg.log("lmtpd", logmsg.LMTPD_WAITING, root=root)
            while wait and not svc.poll_stored() and not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), READY_POLL)
        if not stop.is_set():
            logmsg.log("lmtpd", logmsg.LMTPD_READY, where=", ".join(where))
            sd_notify("READY=1")
        dog = watchdog_interval()
        deadline = None if stop_after is None else time.monotonic() + stop_after
        last_dog = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), READY_POLL)
            svc.poll_stored()
            if dog and time.monotonic() - last_dog >= dog:
                sd_notify("WATCHDOG=1")
                last_dog = time.monotonic()
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        sd_notify("STOPPING=1")
        for s in servers:
            s.close()
        for s in servers:
            await s.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        await loop.run_in_executor(None, svc.close)
        logmsg.log("lmtpd", logmsg.LMTPD_STOPPED, why=why[0], delivered=svc.stats.delivered)
    return svc.stats
