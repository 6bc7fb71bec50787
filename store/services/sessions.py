"""How many sessions a service holds, and the file descriptors they need.

At start a service raises its soft descriptor limit toward what its
configured sessions need (up to the hard limit) and, when that is not
enough, logs Sun's advice (`Recommend ulimit -n N`), as Dovecot warns that
its fd limit is lower than required under maximum load. While it runs, a
connection past the session limit, or one that would leave too few
descriptors for the store's own files, is answered with the protocol's
"try later" (IMAP `BYE [UNAVAILABLE]`, POP3 `-ERR [SYS/TEMP]`, LMTP `421`)
and logged, never closed silently.
"""

from __future__ import annotations

import os
import resource

from .. import logmsg

PER_SESSION = 3  # a session's socket, and the message and index files it reads at once
RESERVE = 32  # descriptors for the store's own files: database, locks, log, listeners
HEADROOM = RESERVE // 2  # refused when fewer than this are left


def open_fds() -> int | None:
    """Descriptors this process has open (None where /proc is not there)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def need_for(sessions: int) -> int:
    return sessions * PER_SESSION + RESERVE


def check_fd_limit(service: str, setting: str, sessions: int) -> int:
    """The soft RLIMIT_NOFILE, raised toward what `sessions` need (never
    past the hard limit); logged with the advice when it stays below."""
    need = need_for(sessions)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft < need:
        logmsg.log(service, logmsg.FD_LIMIT_LOW, service=service, sessions=sessions,
                   setting=setting, limit=soft, need=need)
    return soft


class SessionLimit:
    """The live sessions of one serving process against its limits."""

    def __init__(self, service: str, setting: str, maxsessions: int):
        self.service, self.setting, self.max = service, setting, maxsessions
        self.live = 0
        self.fd_limit = check_fd_limit(service, setting, maxsessions)

    def refusal(self) -> str | None:
        """Why a new connection cannot be served now; None when it can."""
        if self.live >= self.max:
            return f"{self.max} sessions already ({self.setting})"
        n = open_fds()
        if n is not None and n >= self.fd_limit - HEADROOM:
            return f"out of file descriptors ({n} open, ulimit -n {self.fd_limit})"
        return None

    def refused(self, peer: str, reason: str) -> None:
        logmsg.log(self.service, logmsg.CONNECTION_REFUSED, service=self.service, peer=peer,
                   reason=reason, setting=self.setting)
