"""Session telemetry (Sun Messaging Server, Administration Guide 20.14.1):
when `<root>/telemetry/<service>/<user>/` exists, each session of that user
on that service (imap, pop) is captured in a new file there, from the
login on:

    LOGIN joe 2026/12/03 11:26:46
    >0.017>1 OK LOGIN succeeded
    <0.046<3 select "INBOX"
    >0.236>* 1 EXISTS
    * OK [UIDVALIDITY 1046219200] UIDs valid

`>seconds>` starts each run of server output and `<seconds<` each client
line, with the time since the previous one. Line ends are written as LF.
A password in a client line (LOGIN, PASS, an AUTHENTICATE response) is
written as ***. Removing the directory stops the capture of new sessions.
Files are made 0600, never through a symlink."""

from __future__ import annotations

import itertools
import os
import re
import time

from .. import logmsg
from ..errors import StoreError
from ..fsutil import is_real_dir, refuse_symlinks
from ..layout import Layout
from ..logsetup import escape

_COUNTER = itertools.count(1)
# a client line whose arguments after the command are secret
_SECRET = re.compile(rb"^(\S+ (?:LOGIN \S+|AUTHENTICATE \S+)|PASS|APOP \S+) .*$", re.I)


class Recorder:
    """One session's telemetry file."""

    def __init__(self, fd: int):
        self.f = os.fdopen(fd, "wb", buffering=0)
        self.last = time.monotonic()
        self.side = ""
        self.secret_next = False  # the line after AUTHENTICATE's challenge is a password

    @classmethod
    def start(cls, layout: Layout, service: str, user: str) -> Recorder | None:
        """The recorder of a new session, if telemetry is on for the user."""
        d = layout.telemetry_dir(service, user)
        if not os.path.lexists(d):
            return None
        try:
            refuse_symlinks(layout.root, d)
            if not is_real_dir(d):
                return None
            name = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{next(_COUNTER)}"
            fd = os.open(os.path.join(d, name),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600)
        except (OSError, StoreError) as e:
            logmsg.log(f"{service}d", logmsg.TELEMETRY_FAILED, user=user, error=e)
            return None
        rec = cls(fd)
        rec._write(f"LOGIN {escape(user)} {time.strftime('%Y/%m/%d %H:%M:%S')}\n".encode())
        return rec

    def _stamp(self, side: str) -> bytes:
        now = time.monotonic()
        out = f"{side}{now - self.last:.3f}{side}".encode()
        self.last, self.side = now, side
        return out

    def server(self, data: bytes) -> None:
        data = data.replace(b"\r\n", b"\n")
        self._write((self._stamp(">") if self.side != ">" else b"") + data)

    def client(self, line: bytes) -> None:
        line = line.rstrip(b"\r\n")
        if self.secret_next:
            line, self.secret_next = b"***", False
        else:
            m = _SECRET.match(line)
            if m:
                line = m.group(1) + b" ***"
        self._write(self._stamp("<") + line + b"\n")

    def _write(self, data: bytes) -> None:
        try:
            self.f.write(data)
        except OSError:  # a full disk ends the capture, not the session
            self.close()

    def close(self) -> None:
        if not self.f.closed:
            self.f.close()


class RecordingTransport:
    """A session's transport that copies what is written to it to a
    Recorder (FETCH bodies are written by producers, not through the
    protocol's sendLine: only the transport sees all of it)."""

    def __init__(self, transport, recorder: Recorder):
        self._transport, self._recorder = transport, recorder

    def write(self, data: bytes) -> None:
        self._recorder.server(data)
        self._transport.write(data)

    def writeSequence(self, seq) -> None:
        for data in seq:
            self.write(data)

    def __getattr__(self, name):
        return getattr(self._transport, name)


def attach(protocol, layout: Layout, service: str, user: str) -> Recorder | None:
    """Start capturing `protocol`'s session if telemetry is on for `user`."""
    rec = Recorder.start(layout, service, user)
    if rec is not None:
        protocol.transport = RecordingTransport(protocol.transport, rec)
    return rec
