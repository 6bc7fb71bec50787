"""Starting and stopping services in order, with the seeds' output
(`Starting store server .... 9356`, `Checking store server status ..... ready`,
`Stopping imap server 9420 .... done`). Used by start-msg/stop-msg and by
the watcher.

Each service started is recorded in `<root>/run/<program>.pid`; its
standard error goes to `<root>/log/<program>.stderr` (a crash's traceback
is there; the default log has the rest)."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import time
from collections.abc import Callable

from ..fsutil import write_file_atomic
from ..layout import Layout
from ..proc import pid_alive
from .registry import STORE, Service

Out = Callable[[str], None]
READY_TIMEOUT = 300.0  # seconds stored may take to check and recover (docs/operations.md)
START_TIMEOUT = 30.0  # seconds the other services may take to listen
STOP_TIMEOUT = 30.0  # seconds after SIGTERM before SIGKILL


def pid_path(layout: Layout, svc: Service) -> str:
    return os.path.join(layout.root, "run", f"{svc.program}.pid")


def running_pid(layout: Layout, svc: Service) -> int | None:
    """The pid of the service started last, if it still runs."""
    try:
        with open(pid_path(layout, svc), "rb") as f:
            pid = int(f.read(32).strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def spawn(layout: Layout, argv: list[str], program: str) -> subprocess.Popen:
    """A process in a session of its own (a terminal's ^C or hang-up does
    not reach it), its standard error in log/<program>.stderr."""
    with open(os.path.join(layout.log_dir, f"{program}.stderr"), "ab") as err:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True, cwd=layout.root)


def launch(layout: Layout, svc: Service) -> subprocess.Popen:
    os.makedirs(os.path.join(layout.root, "run"), exist_ok=True)
    p = spawn(layout, svc.argv(layout.root), svc.program)
    write_file_atomic(pid_path(layout, svc), f"{p.pid}\n".encode(), durable=False)
    return p


def wait_for(cond: Callable[[], bool], timeout: float, tick: Callable[[], None] | None = None
          ) -> bool:
    end = time.monotonic() + timeout
    next_tick = time.monotonic() + 1
    while time.monotonic() < end:
        if cond():
            return True
        if tick and time.monotonic() >= next_tick:
            tick()
            next_tick += 1
        time.sleep(0.05)
    return cond()


def start(layout: Layout, services: list[Service], out: Out,
          started: Callable[[Service, subprocess.Popen], None] | None = None,
          ready_timeout: float = READY_TIMEOUT) -> bool:
    """Start `services` (in their order) that are not running. stored is
    waited for until ready; if it does not become ready, nothing after it
    starts. Returns whether all started."""
    for svc in services:
        pid = running_pid(layout, svc)
        if pid is not None:
            out(f"{svc.label} is already running ({pid})")
            continue
        if svc.address is not None and svc.ready(layout):
            # something else answers there: our service would die at its bind, and the
            # check below would take the other server's answer for ours
            out(f"{svc.label} did not start: {svc.where(layout)} is taken by another process")
            return False
        p = launch(layout, svc)
        out(f"Starting {svc.label} .... {p.pid}")
        if started:
            started(svc, p)

        def up(svc=svc, p=p) -> bool:
            return p.poll() is not None or svc.ready(layout)
        if svc is STORE:
            dots: list[str] = []
            ok = wait_for(up, ready_timeout, functools.partial(dots.append, "."))
            ok = ok and p.poll() is None
            out(f"Checking store server status {'.' * (5 + len(dots))} "
                f"{'ready' if ok else 'not ready'}")
        else:
            ok = wait_for(up, START_TIMEOUT) and p.poll() is None
            if not ok:
                out(f"{svc.label} did not start (exit status {p.poll()}; see "
                    f"log/{svc.program}.stderr and log/default)")
        if not ok:
            return False
    return True


def stop(layout: Layout, services: list[Service], out: Out,
         stopping: Callable[[Service], None] | None = None) -> None:
    """Stop `services` in reverse order: SIGTERM, then SIGKILL after
    STOP_TIMEOUT."""
    for svc in reversed(services):
        pid = running_pid(layout, svc)
        if pid is None:  # one disabled and stopped is news only when asked for by name
            if len(services) == 1 or layout.config.get_bool(svc.enable):
                out(f"{svc.label} is not running")
            continue
        if stopping:
            stopping(svc)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGCONT)  # a stopped (SIGSTOP) one takes its SIGTERM now
        if wait_for(functools.partial(_gone, pid), STOP_TIMEOUT):
            out(f"Stopping {svc.label} {pid} .... done")
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            out(f"Stopping {svc.label} {pid} .... killed after {STOP_TIMEOUT:.0f} s")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pid_path(layout, svc))


def _gone(pid: int) -> bool:
    return not pid_alive(pid)
