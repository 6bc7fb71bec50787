"""The store's services, in start order: the one list start-msg, stop-msg
and the watcher go by. A new service is one more entry here."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

from .. import settings
from ..daemon import state
from ..layout import Layout


def connects(family: int, address) -> bool:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(address)
        except OSError:
            return False
    return True


def _lmtp_address(layout: Layout) -> tuple[int, str]:
    return socket.AF_UNIX, layout.config.resolve_path(settings.LMTP_SOCKET)


def _policy_address(layout: Layout) -> tuple[int, str]:
    return socket.AF_UNIX, layout.config.resolve_path(settings.POLICY_SOCKET)


def _tcp_address(service: str) -> Callable[[Layout], tuple[int, tuple[str, int]]]:
    """service.<service>.port, else its sslport, on service.listenaddr."""
    def address(layout: Layout) -> tuple[int, tuple[str, int]]:
        c = layout.config
        plain, tls = settings.PORTS[service]
        port = c.get_int(plain) or c.get_int(tls)
        return socket.AF_INET, (c.get(settings.LISTEN_ADDRESS), port)
    return address


@dataclass(frozen=True)
class Service:
    name: str  # start-msg's name for it
    program: str  # the command (and module store.cli.<program>)
    enable: settings.Setting  # the setting that enables it
    # (socket family, address) it serves on; None: stored, which serves no socket
    address: Callable[[Layout], tuple] | None

    def ready(self, layout: Layout) -> bool:
        """Whether it serves: stored ready, a service accepting connections."""
        if self.address is None:
            return state.is_ready(layout)
        return connects(*self.address(layout))

    def where(self, layout: Layout) -> str:
        """The address it listens on, as an administrator reads it."""
        if self.address is None:
            return "-"
        family, addr = self.address(layout)[:2]
        return addr if isinstance(addr, str) else f"{addr[0]}:{addr[1]}"

    @property
    def label(self) -> str:
        return f"{self.name} server"

    def argv(self, root: str) -> list[str]:
        """The command line, with this interpreter (its console script may
        not be on PATH: a venv not activated)."""
        return [sys.executable, "-c", f"from store.cli.{self.program} import main; main()",
                "--store-root", root]


SERVICES = (
    Service("store", "stored", settings.STORE_ENABLE, None),
    Service("lmtp", "lmtpd", settings.LMTP_ENABLE, _lmtp_address),
    Service("imap", "imapd", settings.IMAP_ENABLE, _tcp_address("imap")),
    Service("pop", "popd", settings.POP_ENABLE, _tcp_address("pop")),
    Service("policy", "policyd", settings.POLICY_ENABLE, _policy_address),
)
STORE = SERVICES[0]  # the others wait for it, and go down with it


def by_name(names: list[str] | None) -> list[Service]:
    """The services named (all when none), in start order; an unknown name
    is a ValueError naming the known ones."""
    if not names:
        return list(SERVICES)
    known = {s.name: s for s in SERVICES}
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"unknown service {bad[0]!r} (known: {' '.join(known)})")
    return [s for s in SERVICES if s.name in names]


def enabled(layout: Layout, services: list[Service]) -> list[Service]:
    return [s for s in services if layout.config.get_bool(s.enable)]
