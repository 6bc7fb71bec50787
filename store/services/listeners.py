"""Listening sockets of the store's own services (lmtpd, policyd): a UNIX
socket that never has a moment with a wider mode, and a loopback port."""

from __future__ import annotations

import contextlib
import os
import socket
import stat

from ..errors import StoreError

LISTEN_BACKLOG = 128


def unix_listener(path: str, program: str) -> socket.socket:
    """A listening UNIX socket at `path`, mode 0660. A socket left by a
    dead `program` is replaced; anything else there is refused."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise StoreError(f"{path} exists and is not a socket; {program} will not replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody listens there: a leftover
        else:
            raise StoreError(f"another {program} already listens on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = f"{path}.{os.getpid()}.new"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    sock.bind(tmp)
    os.chmod(tmp, 0o660)  # the mode before the name: no moment with a wider one
    os.rename(tmp, path)
    sock.listen(LISTEN_BACKLOG)
    return sock


def tcp_listener(port: int) -> socket.socket:
    sock = socket.create_server(("127.0.0.1", port), backlog=LISTEN_BACKLOG)
    sock.set_inheritable(False)
    return sock
