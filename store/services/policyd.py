"""policyd: quota and recipient checks before the MTA queues a message
(seed 004: "quota enforcement before messages are enqueued in the MTA").

Postfix asks at RCPT time over its policy delegation protocol
(`check_policy_service`, the protocol Dovecot's quota-status speaks):
`name=value` lines ending with an empty line; the answer is one
`action=...` line and an empty line, on a connection Postfix keeps. An
unknown recipient is answered `550 5.1.1`, a quota root without room for
the message (`size`, from MAIL FROM's SIZE=, or one byte) `452 4.2.2`
during store.quotagraceperiod and `552 5.2.2` after, exactly as lmtpd would
answer the delivery; anything else `DUNNO` (Postfix goes on with its other
restrictions, and lmtpd decides at delivery). While stored is not ready,
or on any error of our own, the answer is `DUNNO` too: the policy service
never stops mail the store would take. The replies say nothing of the
user's usage (the detail goes to the log, as lmtpd logs a refusal).

The checks read the database (and, over quota, record when the grace
period began): they run in one worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor

from .. import logmsg
from ..daemon import state
from ..delivery.agent import Agent, Policy
from ..layout import Layout
from ..mailbox import Store
from ..proc import sd_notify
from .listeners import tcp_listener, unix_listener

log = logging.getLogger("store.policyd")
MAX_REQUEST = 65536  # bytes of one request (Postfix sends well under 2 KB)
# what the SMTP client is told, by the refusal's reason: no mailbox names, no usage figures
TEXTS = {"unknown-user": "User unknown", "not-local": "User unknown",
         "over-quota": "Mailbox is full; try again later", "over-quota-expired": "Mailbox is full",
         "recovering": "Try again later"}


class PolicyService:
    def __init__(self, root: str):
        self.layout = Layout.open(root)
        self.store: Store | None = None
        self.agent: Agent | None = None
        self.stored_pid: int | None = None
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="policyd")
        self.answered = 0

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        if self.agent is not None:
            self.agent.close()
        if self.store is not None:
            self.store.close()

    def _agent(self) -> Agent | None:
        """The agent over a store and settings opened since stored last
        started (a new stored may have put a restored database in place);
        None while it is not ready."""
        st = state.running(self.layout)
        if st is None or st["state"] != state.READY:
            return None
        if self.agent is None or st["pid"] != self.stored_pid:
            if self.agent is not None and self.store is not None:
                self.agent.close()
                self.store.close()
            self.layout = Layout.open(self.layout.root)  # settings changed since, too
            self.store = Store.open(self.layout.root)
            self.agent = Agent(self.store, Policy.from_config(self.layout.config), via="policy",
                               recovering=functools.partial(state.resync_pending, self.layout))
            self.stored_pid = st["pid"]
        return self.agent

    def answer(self, attrs: dict[str, str]) -> str:
        """The action for one request (in the worker thread)."""
        rcpt = attrs.get("recipient", "")
        if (attrs.get("request") != "smtpd_access_policy" or not rcpt
                or attrs.get("protocol_state", "RCPT").upper() != "RCPT"):
            return "DUNNO"
        try:
            agent = self._agent()
            if agent is None:
                return "DUNNO"
            raw = attrs.get("size", "")
            size = int(raw) if raw.isdigit() and len(raw) < 19 else 0
            out = agent.admit(rcpt, size, attrs.get("sender", ""))
        except Exception as e:  # noqa: BLE001 - never stop mail for a fault of our own
            logmsg.log_internal("policyd", "policyd", e)
            return "DUNNO"
        if out.ok or out.reason not in TEXTS:
            return "DUNNO"
        return f"{out.code} {out.enhanced} {TEXTS[out.reason]}"


async def _session(svc: PolicyService, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            attrs: dict[str, str] = {}
            size = 0
            while True:
                line = await reader.readline()
                if not line:
                    return
                size += len(line)
                if size > MAX_REQUEST:
                    return
                line = line.rstrip(b"\r\n")
                if not line:
                    break
                name, eq, value = line.partition(b"=")
                if eq:
                    attrs[name.decode("ascii", "replace")] = value.decode("utf-8", "replace")
            action = await loop.run_in_executor(svc.executor, svc.answer, attrs)
            svc.answered += 1
            writer.write(f"action={action}\n\n".encode())
            await writer.drain()
    except (ConnectionError, ValueError, asyncio.LimitOverrunError):
        return  # a line past the reader's limit, or the client gone
    finally:
        writer.close()


async def _serve(root: str, socket_path: str, port: int) -> None:
    svc = PolicyService(root)
    socks = [unix_listener(socket_path, "policyd")] + ([tcp_listener(port)] if port else [])
    where = ", ".join([socket_path] + ([f"127.0.0.1:{port}"] if port else []))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    handler = functools.partial(_session, svc)
    servers = [await asyncio.start_unix_server(handler, sock=socks[0], limit=MAX_REQUEST)]
    servers += [await asyncio.start_server(handler, sock=s, limit=MAX_REQUEST)
                for s in socks[1:]]
    logmsg.log("policyd", logmsg.SERVICE_READY, service="policyd", where=where)
    sd_notify("READY=1")
    try:
        await stop.wait()
    finally:
        for s in servers:
            s.close()
        svc.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        logmsg.log("policyd", logmsg.SERVICE_STOPPED, service="policyd", where=where)


def run(root: str, socket_path: str, port: int) -> None:
    """policyd in the foreground until SIGTERM."""
    asyncio.run(_serve(root, socket_path, port))
