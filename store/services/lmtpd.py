"""lmtpd: mail in from the MTA over LMTP (RFC 2033), on aiosmtpd.

Each worker process runs the protocol and the deliveries on one asyncio
loop (Service: a delivery's steps run on the loop, their syncs are shared
through delivery.groupsync): a 250 reply is sent only once the message
file and its index record are durable, yet concurrent sessions cost one
sync round between them, not one each. With several workers a supervising
process accepts and hands each connection to the next worker.

Deliveries are deferred (451 4.3.0) while stored is not ready: it may be
checking or recovering the database. When stored comes back as a new
process (it may have put a recovered database in place), lmtpd reopens
the database once the deliveries under way have finished."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import signal
import socket
import time
from dataclasses import dataclass

from aiosmtpd.lmtp import LMTP

from .. import logmsg, settings
from ..daemon import state
from ..delivery.address import AddressError
from ..delivery.agent import Agent, Policy, Target
from ..delivery.groupsync import GroupSync
from ..delivery.outcome import NotReadyError
from ..errors import LockedError, StoreError
from ..mailbox import Store
from ..proc import sd_notify, watchdog_interval
from .listeners import tcp_listener, unix_listener
from .sessions import SessionLimit

READY_POLL = 0.5  # seconds between two looks at stored's state
LOCK_POLL = 0.05  # seconds between two tries of a mailbox lock another process holds


class _LMTP(LMTP):
    """aiosmtpd's LMTP with a DATA phase of our own: aiosmtpd reads the
    message a line at a time through a state machine, which costs more than
    the delivery (client and server in one process with a handler that
    stores nothing: 523 messages/s with aiosmtpd's DATA, 1,922 with this
    one, 13 KB messages). This one finds the end with one readuntil,
    answers once per accepted recipient also when the message is too big
    (RFC 2033 4.2; aiosmtpd answers once), and never reads past the
    terminating dot (a pipelining client's next command stays unread)."""

    # the reader's limit: how much a command line may hold (RFC 5321 4.5.3.1: 512 octets, more
    # with extensions; aiosmtpd's 1001 is the text line's). Raised to the largest message only
    # while DATA reads, so that no connection makes its worker buffer a message's worth of
    # command line.
    line_length_limit = 1001

    def __init__(self, handler, *, max_size: int, **kw):
        super().__init__(handler, data_size_limit=max_size, **kw)
        self.max_size = max_size

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        limit = self.event_handler.limit
        reason = limit.refusal()
        self._counted = reason is None
        if reason is not None:  # told to come back, and logged: never closed silently
            peer = transport.get_extra_info("peername")
            limit.refused(str(peer) if peer else "the local socket", reason)
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(b"421 4.3.2 " + reason.encode() + b"; try again later\r\n")
            transport.close()
            return
        limit.live += 1
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if not getattr(self, "_counted", False):
            return
        self.event_handler.limit.live -= 1
        super().connection_lost(error)

    def _getaddr(self, arg: str):
        """`<dot-atom@domain>` read with one regular expression; anything else
        (quoted local parts, source routes, `<>`) by aiosmtpd's RFC 5322
        parser, which costs ~0.1 ms a command (measured: bench_lmtp --cpu)."""
        m = _PLAIN_ADDRESS.fullmatch(arg)
        if m is None or (self.local_part_limit
                         and len(m.group(1).rpartition("@")[0]) > self.local_part_limit):
            return super()._getaddr(arg)
        return m.group(1), m.group(2).lstrip()

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        envelope = self.envelope
        if envelope is None or not envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self._reader._limit = self.max_size + 4096  # type: ignore[attr-defined]
        try:
            content = await read_dot_terminated(self._reader, self.max_size)
        finally:
            self._reader._limit = self.line_length_limit  # type: ignore[attr-defined]
        if content is None:
            status = "\r\n".join(["552 5.3.4 message exceeds the maximum size of "
                                   f"{self.max_size} bytes"] * len(envelope.rcpt_tos))
        elif content.count(b"\n") != content.count(b"\r\n"):
            # a bare LF is how SMTP smuggling hides a second message in one (Postfix's
            # smtpd_forbid_bare_newline refuses it too); an MTA always sends CRLF
            status = "\r\n".join(["554 5.6.0 message refused: a line ends in a bare LF "
                                   "(RFC 5321 2.3.8: CRLF only)"] * len(envelope.rcpt_tos))
        else:
            envelope.content = envelope.original_content = content
            status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"\s*<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(.*)",
                            re.S)
_END = b"\r\n.\r\n"  # the line holding only ".": after a CRLF only, never after a bare LF


async def read_dot_terminated(reader: asyncio.StreamReader, limit: int) -> bytes | None:
    """The message up to the line holding only ".", dot-stuffing undone
    (RFC 5321 4.5.2); None when it exceeds `limit` bytes (then read to its
    end and dropped, so that the session can go on). One readuntil for the
    whole message; only its first bytes are looked at one by one, until no
    part of the end marker can straddle what was read and what was not. The
    DATA command's CRLF counts as the start of the first line (an empty
    message is ".\r\n" alone)."""
    try:
        head = bytearray(b"\r\n" + await reader.readexactly(3))
        while not head.endswith(_END) and any(head.endswith(_END[:k]) for k in (4, 3, 2, 1)):
            head += await reader.readexactly(1)
        if head.endswith(_END):
            body, too_big = bytes(head), len(head) > limit + 5
        else:
            body, too_big = await _read_rest(reader, head, limit)
    except asyncio.IncompleteReadError:
        raise ConnectionResetError("connection closed during DATA") from None
    if too_big:
        return None
    body = body[:-3]  # ".\r\n": the CRLF before it ends the last line
    return body.replace(b"\r\n.", b"\r\n")[2:]


async def _read_rest(reader: asyncio.StreamReader, head: bytearray, limit: int
                     ) -> tuple[bytes, bool]:
    """The rest up to the end marker, or (b"", True) when it exceeds the
    reader's limit: then dropped up to the marker. An overrun keeps the
    last bytes that could start a marker in the buffer, so none is missed."""
    try:
        body = bytes(head) + await reader.readuntil(_END)
        return body, len(body) > limit + 5
    except asyncio.LimitOverrunError as e:
        await reader.readexactly(e.consumed)
    while True:
        try:
            await reader.readuntil(_END)
            return b"", True
        except asyncio.LimitOverrunError as e:
            await reader.readexactly(e.consumed)


@dataclass
class Stats:
    delivered: int = 0
    inflight: int = 0


class Service:
    """The handler aiosmtpd calls, and the store it delivers into. Every
    delivery runs on the loop's thread (file writes are short); only the
    shared syncs run in a worker thread. A mailbox is delivered to by one
    coroutine at a time (an asyncio lock per mailbox); a lock held by
    another process is polled without blocking the loop."""

    def __init__(self, root: str):
        self.store = Store.open(root)
        self.layout = self.store.layout
        self.policy = Policy.from_config(self.layout.config)
        self.sync = GroupSync()
        self.agent = Agent(self.store, self.policy, via="lmtp",
                           recovering=functools.partial(state.resync_pending, self.store.layout))
        self.stats = Stats()
        self.limit = SessionLimit("lmtpd", settings.LMTP_MAX_SESSIONS.name,
                                  self.layout.config.get_int(settings.LMTP_MAX_SESSIONS))
        self.ready = False
        self.stored_pid: int | None = None
        self._reopen = False
        self._locks: dict[str, asyncio.Lock] = {}

    # -- readiness -----------------------------------------------------------------------
    def poll_stored(self) -> bool:
        """Whether stored is ready; a new stored process means the database
        may have been replaced: reopen it once nothing uses it."""
        st = state.running(self.layout)
        ready = st is not None and st["state"] == state.READY
        if st is not None and ready:
            if self.stored_pid is not None and st["pid"] != self.stored_pid:
                self._reopen = True
            self.stored_pid = st["pid"]
        if self._reopen and self.stats.inflight == 0:
            self.store.close()
            self._reopen = False
        if ready and not self._reopen:
            try:
                self.store.db  # noqa: B018 - opened now: a damaged one keeps us not ready
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
            target = self.agent.resolve(address)
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
        outcomes = self.agent.unfit(data, sender, targets)
        if outcomes is None:
            # once begun, a delivery runs to its end even if the client goes away: its
            # mailbox lock is held across the syncs, and a message file without its
            # index record would come back as a second copy at the MTA's retry
            work = asyncio.ensure_future(self._deliver(data, sender, targets))
            outcomes = await asyncio.shield(work)
        self.stats.delivered += sum(o.ok for o in outcomes)
        return "\r\n".join(o.reply() for o in outcomes)

    async def _deliver(self, data: bytes, sender: str, targets: list[Target]) -> list:
        self.stats.inflight += 1
        try:
            boxes = list(dict.fromkeys(t.mailbox for t in targets))
            first = {t.mailbox: t for t in reversed(targets)}
            done = await asyncio.gather(*(self._deliver_one(data, sender, first[b])
                                          for b in boxes))
            by_box = dict(zip(boxes, done, strict=True))
            return [by_box[t.mailbox] for t in targets]
        finally:
            self.stats.inflight -= 1

    async def _deliver_one(self, data: bytes, sender: str, t: Target):
        out = await self._run_locked(
            t.mailbox, lambda: self.agent.steps(data, sender, t, lock_timeout=0),
            lambda e: self.agent.refuse(e, sender, t.rcpt.address))
        warning = self.agent.quota_warning(out)
        if warning is not None:
            inbox, make_steps = warning
            await self._run_locked(inbox, lambda: make_steps(lock_timeout=0),
                                   lambda e: self.agent.warning_failed(inbox, e))
        return out

    async def _run_locked(self, mailbox: str, make_steps, on_timeout):
        """Drive steps (made afresh for each try) under this process's lock of
        `mailbox`, awaiting the shared syncs they ask for; while another
        process holds the mailbox lock, try again every LOCK_POLL s for up to
        lockwait, then return on_timeout(the LockedError)."""
        lock = self._locks.setdefault(mailbox, asyncio.Lock())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.lock_wait
        try:
            async with lock:
                while True:
                    steps = make_steps()
                    try:
                        path = next(steps)
                        while True:
                            await self.sync.sync(path)
                            path = steps.send(None)
                    except StopIteration as e:
                        return e.value
                    except LockedError as e:
                        if loop.time() >= deadline:
                            return on_timeout(LockedError(
                                f"{e}; waited {self.policy.lock_wait} s"))
                        await asyncio.sleep(LOCK_POLL)
                    finally:
                        steps.close()  # a step that failed: its mailbox lock is let go
        finally:
            if not lock.locked() and self._locks.get(mailbox) is lock:
                del self._locks[mailbox]

    def close(self) -> None:
        self.agent.close()
        self.store.close()


def run(root: str, socket_path: str, port: int, *, workers: int = 1, wait: bool = True) -> None:
    """lmtpd until SIGTERM/SIGINT: `workers` processes accept on the same
    sockets (each its own event loop, store handle and group commit: a
    Python process uses one core). This process signals READY (systemd)
    once stored is ready, pings the watchdog, and starts a worker again if
    one dies."""
    socks = [unix_listener(socket_path, "lmtpd")] + ([tcp_listener(port)] if port else [])
    where = ", ".join([socket_path] + ([f"127.0.0.1:{port}"] if port else []))
    try:
        if workers <= 1:
            asyncio.run(_worker(root, socks, where, wait=wait, supervised=False))
        else:
            _supervise(root, socks, where, workers, wait=wait)
    finally:
        for sock in socks:
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)


def _supervise(root: str, socks: list[socket.socket], where: str, workers: int, *,
               wait: bool) -> None:
    """Accept here and hand each connection to the next worker in turn
    (SCM_RIGHTS over a socket pair): workers sharing the listening socket
    took a burst of connections unevenly (7 of 8 to one of two, measured),
    and LMTP sessions are long (Postfix caches them)."""
    import selectors

    from ..layout import Layout
    layout = Layout.open(root)
    stopping: list[str] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda n, _f: stopping.append(signal.Signals(n).name))
    channels: dict[int, socket.socket] = {}  # worker pid -> our end of its socket pair

    def spawn() -> None:
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                ours.close()
                for s in [*socks, *channels.values()]:
                    s.close()
                _worker_process(root, theirs, where, wait)
                code = 0
            finally:
                os._exit(code)
        theirs.close()
        channels[pid] = ours

    for _ in range(workers):
        spawn()
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    turn = 0
    ready = False
    dog = watchdog_interval()
    last_dog = time.monotonic()
    while not stopping:
        for key, _ in sel.select(READY_POLL / 5):
            try:
                conn, _addr = key.fileobj.accept()  # type: ignore[union-attr]  # our listeners
            except (BlockingIOError, InterruptedError):
                continue
            with conn:
                for _ in range(len(channels)):  # the next worker that takes it
                    pid = list(channels)[turn % len(channels)]
                    turn += 1
                    try:
                        socket.send_fds(channels[pid], [b"c"], [conn.fileno()])
                        break
                    except OSError:
                        continue
        while channels:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            channels.pop(pid).close()
            if not stopping:
                logmsg.log("lmtpd", logmsg.LMTPD_WORKER_DIED, pid=pid,
                           status=os.waitstatus_to_exitcode(status))
                spawn()
        if not ready and (not wait or state.is_ready(layout)):
            ready = True
            logmsg.log("lmtpd", logmsg.LMTPD_READY, where=f"{where} ({workers} workers)")
            sd_notify("READY=1")
        if dog and time.monotonic() - last_dog >= dog:
            sd_notify("WATCHDOG=1")
            last_dog = time.monotonic()
    sd_notify("STOPPING=1")
    sel.close()
    for pid in channels:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in channels:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    logmsg.log("lmtpd", logmsg.LMTPD_SUPERVISOR_STOPPED, why=stopping[0], workers=workers)


def _worker_process(root: str, channel: socket.socket, where: str, wait: bool) -> None:
    from ..proc import die_with_parent
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    die_with_parent()
    asyncio.run(_worker(root, [], where, wait=wait, supervised=True, channel=channel))


async def _worker(root: str, socks: list[socket.socket], where: str, *, wait: bool,
                  supervised: bool, channel: socket.socket | None = None) -> Stats:
    """One serving process: on the listening sockets, or on the connections
    the supervisor passes over `channel`. Unsupervised it also signals
    READY and pings the watchdog itself."""
    svc = Service(root)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    why = ["stopped"]

    def on_signal(sig: int) -> None:
        why[0] = signal.Signals(sig).name
        stop.set()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)

    hostname = socket.gethostname()

    def factory():
        return _LMTP(svc, max_size=svc.policy.max_size, enable_SMTPUTF8=True,
                     hostname=hostname, ident="msgstore lmtpd")

    servers = [await loop.create_unix_server(factory, sock=socks[0])] if socks else []
    servers += [await loop.create_server(factory, sock=s) for s in socks[1:]]
    if channel is not None:
        def take() -> None:
            try:
                _msg, fds, _flags, _addr = socket.recv_fds(channel, 16, 16)
            except BlockingIOError:
                return
            if not fds and not _msg:  # the supervisor is gone
                loop.remove_reader(channel.fileno())
                stop.set()
            for fd in fds:
                conn = socket.socket(fileno=fd)
                loop.create_task(loop.connect_accepted_socket(factory, conn))
        channel.setblocking(False)
        loop.add_reader(channel.fileno(), take)
    try:
        if not svc.poll_stored():
            if not supervised:
                logmsg.log("lmtpd", logmsg.LMTPD_WAITING, root=root)
            while wait and not svc.poll_stored() and not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), READY_POLL)
        if not stop.is_set() and not supervised:
            logmsg.log("lmtpd", logmsg.LMTPD_READY, where=where)
            sd_notify("READY=1")
        dog = None if supervised else watchdog_interval()
        last_dog = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), READY_POLL)
            svc.poll_stored()
            if dog and time.monotonic() - last_dog >= dog:
                sd_notify("WATCHDOG=1")
                last_dog = time.monotonic()
    finally:
        if not supervised:
            sd_notify("STOPPING=1")
        for srv in servers:
            srv.close()
        for srv in servers:
            await srv.wait_closed()
        while svc.stats.inflight:  # deliveries under way finish (they reply 250 or not)
            await asyncio.sleep(0.01)
        svc.close()
        logmsg.log("lmtpd", logmsg.LMTPD_STOPPED, why=why[0], delivered=svc.stats.delivered,
                   rounds=svc.sync.rounds, requests=svc.sync.requests)
    return svc.stats
