"""Store utilities registering with the watcher while they run (seed 001:
the watcher "also monitors all processes that access the message store in
such a way that they could hold outstanding message store locks").

A utility connects to the watcher's socket and says `utility <pid>
<program>`; it says `done <status>` before it exits. A connection that
closes without it is an abnormal exit (kill -9, a crash): the watcher logs
it and has stored clean up at once (`stored -r`: stale reader slots, the
dead writer's temp files). Our locks are flocks and die with their holder,
so no service needs restarting, and none is. The watcher's absence, or a
socket the utility may not open (deliver run as the MTA's user), never
holds a utility up: it runs unregistered."""

from __future__ import annotations

import contextlib
import os
import socket

UTILITIES = ("deliver", "mboxutil", "reconstruct", "imdbverify")
CONNECT_TIMEOUT = 0.2  # seconds: a busy or hung watcher must not slow a delivery down

_registered: socket.socket | None = None


def register(root: str, program: str) -> None:
    global _registered
    if program not in UTILITIES or _registered is not None:
        return
    from .watcher import SOCKET
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(CONNECT_TIMEOUT)
    try:
        s.connect(os.path.join(root, SOCKET))
        s.sendall(f"utility {os.getpid()} {program}\n".encode())
    except OSError:
        s.close()
        return
    _registered = s


def done(status: int) -> None:
    global _registered
    s, _registered = _registered, None
    if s is not None:
        with contextlib.suppress(OSError):
            s.sendall(f"done {status}\n".encode())
        s.close()
