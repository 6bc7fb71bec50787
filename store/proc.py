"""Processes: the one way to run work in a crash-isolated child, whether a
process is alive, and systemd's notification protocol.

`run_isolated` is for work that can kill the process doing it: mapping a
damaged LMDB file can end in SIGBUS (a truncated file) or SIGABRT (an
assertion on a zeroed page), where no exception is ever raised. The work
runs in a forked child and its result comes back pickled through a pipe; a
child killed by a signal is reported as `ChildDied`, so the caller survives
to say what happened. The caller must not have the LMDB environment the
child opens open itself: LMDB handles do not survive a fork.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import StoreError
from .fsutil import libc, write_all

T = TypeVar("T")


class ChildDied(StoreError):
    """The isolated child was killed by a signal (its crash is the verdict)."""

    def __init__(self, signame: str):
        super().__init__(f"the process doing it died of {signame}")
        self.signame = signame


class ChildTimeout(StoreError):
    def __init__(self, seconds: float):
        super().__init__(f"it took over {seconds:.0f} s")
        self.seconds = seconds


class ChildFailed(StoreError):
    """The child raised something that is not a StoreError, or could not report."""


class ChildStopped(StoreError):
    """The caller's `tick` asked for the child to stop, and it was killed."""

    def __init__(self) -> None:
        super().__init__("stopped before it finished")


def run_isolated(fn: Callable[..., T], *args: Any, timeout: float | None = None,
                 tick: Callable[[], bool] | None = None, tick_every: float = 0.2) -> T:
    """fn(*args) run in a forked child; its value returned, a StoreError it
    raised raised again here. A child killed by a signal raises ChildDied,
    one that outlives `timeout` seconds is killed and raises ChildTimeout.
    `tick` is called every `tick_every` seconds while the child works (a
    daemon pings its watchdog there); when it returns True the child is
    killed with SIGKILL and ChildStopped is raised: only for work that a
    kill at any point leaves safe (LMDB transactions, atomic file swaps)."""
    import pickle  # here: ~1 ms of the start-up of commands that never fork

    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            import faulthandler
            faulthandler.disable()  # its death is reported by the parent, in one line
            os.close(rfd)
            out: tuple[str, object]
            try:
                out = ("ok", fn(*args))
            except StoreError as e:
                out = ("raise", e)
            except BaseException as e:  # noqa: BLE001 - reported to the parent as text
                out = ("error", str(e) or type(e).__name__)
            try:
                payload = pickle.dumps(out)
            except Exception as e:  # noqa: BLE001 - an unpicklable result or error
                payload = pickle.dumps(("error", f"result could not be sent: {e}"))
            write_all(wfd, payload)
        except BaseException:  # noqa: BLE001 - the parent sees no result
            code = 1
        finally:
            os._exit(code)
    os.close(wfd)
    chunks = []
    deadline = None if timeout is None else time.monotonic() + timeout
    with os.fdopen(rfd, "rb") as f:
        while True:
            if deadline is not None or tick is not None:
                left = None if deadline is None else deadline - time.monotonic()
                wait = min(w for w in (left, tick_every if tick else None) if w is not None)
                if not select.select([f], [], [], max(0.0, wait))[0]:
                    if left is not None and left <= wait:
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                        raise ChildTimeout(timeout or 0.0)
                    if tick is not None and tick():
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                        raise ChildStopped()
                    continue
            chunk = f.read1(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    _pid, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        raise ChildDied(signal.Signals(os.WTERMSIG(status)).name)
    try:
        kind, value = pickle.loads(b"".join(chunks))
    except Exception:  # noqa: BLE001 - a child that could not report
        raise ChildFailed(f"the process doing it exited {os.waitstatus_to_exitcode(status)} "
                          "without a result") from None
    if kind == "raise":
        raise value
    if kind == "error":
        raise ChildFailed(value)
    return value


PR_SET_PDEATHSIG = 1  # prctl(2)


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have the kernel send `sig` to this process when its parent dies (Linux
    prctl PR_SET_PDEATHSIG): pool workers must not outlive a killed command.
    A no-op where prctl is missing."""
    c = libc()
    if c is None or not hasattr(c, "prctl"):
        return
    parent = os.getppid()
    c.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the call took effect
        os.kill(os.getpid(), sig)


def pid_alive(pid: int) -> bool:
    """Whether a process exists and has not exited (signal 0; EPERM means it
    exists). A zombie has exited: where PID 1 does not reap orphans (a
    container without an init), a killed writer stays one indefinitely."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:  # no /proc: signal 0 is all there is to ask
        return True
    return stat[stat.rfind(b")") + 2:][:1] not in (b"Z", b"X")


def sd_notify(message: str) -> bool:
    """sd_notify(3): a datagram to $NOTIFY_SOCKET. False when not under systemd,
    or when the manager's queue is full: never waits (a manager that stopped
    reading must not stall the daemon; systemd reads at once)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    import socket  # here: its import is ~3 ms of every command's start-up

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.connect(addr)
            s.send(message.encode(), socket.MSG_DONTWAIT)
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """Half of systemd's WatchdogSec for this process, or None without one."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6 / 2


def become_owner(path: str) -> int | None:
    """Run as the owner of `path` from here on, as Cyrus's tools become the
    cyrus user: a command run as root on a store owned by the mail user must
    not leave files the mail user cannot write. Only when this process is
    root and `path` exists and belongs to another user; returns the uid
    switched to, else None. Groups: the owner's own (initgroups) when it
    has a passwd entry, else only the path's group."""
    if os.geteuid() != 0:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    if st.st_uid == 0:
        return None
    import pwd  # here: only root ever needs it

    try:
        os.initgroups(pwd.getpwuid(st.st_uid).pw_name, st.st_gid)
    except KeyError:  # a uid with no passwd entry
        os.setgroups([st.st_gid])
    os.setgid(st.st_gid)
    os.setuid(st.st_uid)
    return st.st_uid
