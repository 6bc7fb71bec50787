"""The store's services, in start order: the one list start-msg, stop-msg
and the watcher go by. A new service is one more entry here."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

from ..daemon import state
from ..layout import Layout


def _connects(family: int, address) -> bool:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(address)
        except OSError:
            return False
    return True


def _stored_ready(layout: Layout) -> bool:
    st = state.running(layout)
    return st is not None and st["state"] == state.READY


def _lmtpd_ready(layout: Layout) -> bool:
    path = layout.config.get("local.lmtp.socket")
    return _connects(socket.AF_UNIX, path if os.path.isabs(path)
                     else os.path.join(layout.root, path))


def _tcp_ready(port_setting: str) -> Callable[[Layout], bool]:
    def ready(layout: Layout) -> bool:
        port = layout.config.get_int(port_setting) or layout.config.get_int(
            port_setting.replace(".port", ".sslport"))
        return _connects(socket.AF_INET, (layout.config.get("service.listenaddr"), port))
    return ready


@dataclass(frozen=True)
class Service:
    name: str  # start-msg's name for it
    program: str  # the command (and module store.cli.<program>)
    enable: str  # the setting that enables it
    ready: Callable[[Layout], bool]  # whether it serves

    @property
    def label(self) -> str:
        return f"{self.name} server"

    def argv(self, root: str) -> list[str]:
        """The command line, with this interpreter (its console script may
        not be on PATH: a venv not activated)."""
        return [sys.executable, "-c", f"from store.cli.{self.program} import main; main()",
                "--store-root", root]


SERVICES = (
    Service("store", "stored", "store.enable", _stored_ready),
    Service("lmtp", "lmtpd", "lmtp.enable", _lmtpd_ready),
    Service("imap", "imapd", "imap.enable", _tcp_ready("service.imap.port")),
    Service("pop", "popd", "pop.enable", _tcp_ready("service.pop.port")),
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
    return [s for s in services if layout.config.get_int(s.enable)]
