"""The watcher (seed 000): starts the services on request (start-msg),
stops them (stop-msg), and watches the ones it started. A service that
exits without being asked to is logged (`Watched 'imapd' process 13428
exited abnormally`); with local.autorestart every store service enabled at
start is restarted in order: the others stopped, stored started and waited
for, then the rest (the seeds: "if imapd fails, at the least, stored and
imapd are restarted"). A service is restarted at most
local.autorestart.count times within local.autorestart.timeout (Sun 6.3's
"up to two times within a 10 minute period", the default; 1 is Oracle
Messaging Server 8's rule); failing once more in that period, it is left
stopped, and the log says what to do.

Requests come over the UNIX socket `<root>/run/watcher` (Sun used TCP port
49994; a socket file keeps it to this machine and to the store's owner),
one line each: `start [SERVICE...]`, `stop [SERVICE...]` (all: the watcher
exits too), `status`; the answer is the seeds' progress lines, then `OK`
or `FAILED`. The watcher log `<root>/log/watcher` has every start and stop
in the seeds' format."""

from __future__ import annotations

import os
import signal
import socketserver
import subprocess
import sys
import threading
import time

from .. import cron, logmsg, settings
from ..config import Config, config_path
from ..errors import SettingError
from ..layout import Layout
from ..proc import pid_alive
from . import control
from .registry import SERVICES, STORE, Service, by_name, enabled

POLL = 0.2  # seconds between looks at the children


class _LoopbackServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True  # a watcher restarted at once gets its port back
    daemon_threads = True


class Adopted:
    """A service a watcher before this one started (found by its pid file):
    watched like a child, though only its parent can know its exit status."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not pid_alive(self.pid):
            self.returncode = -1  # gone; how, its parent knew
        return self.returncode
SOCKET = "run/watcher"


def socket_path(layout: Layout) -> str:
    return os.path.join(layout.root, SOCKET)


class Watcher:
    def __init__(self, layout: Layout):
        self.layout = layout
        self.children: dict[str, subprocess.Popen | Adopted] = {}
        self.expected: set[subprocess.Popen | Adopted] = set()  # being stopped on purpose
        self.watched: list[Service] = []  # started through the watcher: restarted together
        self.restarted_at: dict[str, list[float]] = {}  # service -> its restarts' times
        self.given_up: set[str] = set()
        self.lock = threading.RLock()  # one start, stop or restart at a time
        self.done = threading.Event()
        self._probe: subprocess.Popen | None = None
        self._settings_stamp: tuple[int, int, int] | None = None
        self._hup = threading.Event()
        self._log = open(os.path.join(layout.log_dir, "watcher"), "a", buffering=1,  # noqa: SIM115
                         encoding="utf-8")
        self.settings()

    def wlog(self, line: str) -> None:
        """A line of log/watcher; the file is opened again when logrotate
        moved it (as the default log's handler does: no signal needed)."""
        path = os.path.join(self.layout.log_dir, "watcher")
        try:
            moved = os.stat(path).st_ino != os.fstat(self._log.fileno()).st_ino
        except OSError:
            moved = True
        if moved:
            self._log.close()
            self._log = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        self._log.write(line + "\n")

    def settings(self) -> Config:
        """The settings as store.conf holds them now: read again when the file
        changed (configutil while the watcher runs) or on SIGHUP. A file made
        invalid keeps the settings in force, and the log says so."""
        try:
            st = os.stat(config_path(self.layout.root))
            stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        except OSError:
            stamp = None
        hup = self._hup.is_set()
        if stamp != self._settings_stamp or hup:
            self._hup.clear()
            first, self._settings_stamp = self._settings_stamp is None, stamp
            try:
                self.layout.config = Config.load(self.layout.root)
                if hup:
                    self.wlog("settings read again (SIGHUP)")
                elif not first:
                    self.wlog("settings read again (store.conf changed)")
            except SettingError as e:
                self.wlog(f"settings not read again: {e}; the previous ones stay in force")
        return self.layout.config

    def adopt(self) -> None:
        """The services that run already (a watcher that died or was stopped
        alone left them): watched from now on, restarted with the others."""
        with self.lock:
            for svc in SERVICES:
                pid = control.running_pid(self.layout, svc)
                if pid is not None and svc.name not in self.children:
                    self.wlog(f"watcher adopted '{svc.program}' process {pid}")
                    self._track(svc, Adopted(pid))

    def _track(self, svc: Service, p: subprocess.Popen | Adopted) -> None:
        old = self.children.get(svc.name)
        if old is not None:  # stopped by us: reaped, and forgotten
            old.poll()
            self.expected.discard(old)
        self.children[svc.name] = p
        if svc not in self.watched:
            self.watched = [s for s in SERVICES if s in self.watched or s is svc]

    def _expect(self, svc: Service) -> None:
        p = self.children.get(svc.name)
        if p is not None:
            self.expected.add(p)

    # -- requests ------------------------------------------------------------------------
    def start(self, names: list[str], out) -> bool:
        with self.lock:
            services = enabled(self.layout, by_name(names))
            for s in services:  # an administrator's start clears it, and says so
                if s.name in self.given_up:
                    self.given_up.discard(s.name)
                    out(f"{s.label} was not restarted after it failed again within "
                        "local.autorestart.timeout; starting it now")
            return control.start(self.layout, services, self._both(out), self._track)

    def stop(self, names: list[str], out) -> None:
        with self.lock:
            services = by_name(names)
            control.stop(self.layout, services, self._both(out), self._expect)
            self.watched = [s for s in self.watched if s not in services]

    def status(self, out) -> None:
        for svc in SERVICES:
            pid = control.running_pid(self.layout, svc)
            state = f"running ({pid})" if pid else (
                "not restarted (failed again within local.autorestart.timeout)"
                if svc.name in self.given_up else "not running")
            out(f"{svc.label} {state}")

    def _both(self, out):
        def write(line: str) -> None:
            self.wlog(line)
            out(line)
        return write

    # -- watching ------------------------------------------------------------------------
    def check(self) -> None:
        """Reap children; handle the ones that exited unasked."""
        with self.lock:
            for name, p in list(self.children.items()):
                if self.children.get(name) is not p or p.poll() is None:
                    continue  # replaced by a restart in this pass, or running
                del self.children[name]
                if p in self.expected:
                    self.expected.discard(p)
                    continue
                self.failed(next(s for s in SERVICES if s.name == name), p)

    def failed(self, svc: Service, p: subprocess.Popen | Adopted) -> None:
        how = "exited abnormally" if p.returncode != 0 else "exited"
        self.wlog(f"Watched '{svc.program}' process {p.pid} {how}")
        logmsg.log("watcher", logmsg.WATCHED_EXITED, program=svc.program, pid=p.pid,
                   status=p.returncode)
        self._restart_for(svc)

    def _restart_for(self, svc: Service) -> None:
        """Restart every watched service because of `svc`, unless it was
        restarted local.autorestart.count times within local.autorestart.timeout."""
        c = self.settings()
        if not c.get_bool(settings.AUTORESTART) or svc.name in self.given_up:
            return
        timeout = c.get_int(settings.AUTORESTART_TIMEOUT)
        count = c.get_int(settings.AUTORESTART_COUNT)
        now = time.monotonic()
        recent = [t for t in self.restarted_at.get(svc.name, []) if now - t < timeout]
        self.restarted_at[svc.name] = recent
        if len(recent) >= count:
            self.given_up.add(svc.name)
            self.wlog(f"'{svc.program}' failed again within {timeout} s of its restart: "
                      "not restarted")
            logmsg.log("watcher", logmsg.RESTART_GIVEN_UP, program=svc.program,
                       seconds=timeout)
            return
        recent.append(now)
        self.restart_all()

    def restart_all(self) -> None:
        services = list(self.watched)
        self.wlog("Received request to restart: " + " ".join(s.name for s in services))
        logmsg.log("watcher", logmsg.SERVICES_RESTARTING,
                   services=" ".join(s.name for s in services))
        control.stop(self.layout, services, self.wlog, self._expect)
        control.start(self.layout, services, self.wlog, self._track)

    # -- the process ---------------------------------------------------------------------
    def serve(self) -> None:
        """Answer requests and watch the children until `stop` of all."""
        path = socket_path(self.layout)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            os.unlink(path)  # a dead watcher's (start-msg connected to it first)
        watcher = self

        class Handler(socketserver.StreamRequestHandler):
            status_only = False

            def handle(self):
                line = self.rfile.readline(4096).decode("utf-8", "replace").split()
                if not line:
                    return

                def out(text: str) -> None:
                    self.wfile.write(text.encode() + b"\n")
                    self.wfile.flush()
                out.rfile = self.rfile  # a utility's connection: read until it closes
                try:
                    if self.status_only and line[0] != "status":
                        raise ValueError("over TCP the watcher answers status only; requests "
                                         f"that change something come over {SOCKET}")
                    watcher.request(line[0], line[1:], out)
                except ValueError as e:
                    out(f"error: {e}")
                    out("FAILED")

        class StatusHandler(Handler):
            status_only = True

        server = socketserver.ThreadingUnixStreamServer(path, Handler)
        os.chmod(path, 0o600)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers: list[socketserver.BaseServer] = [server]
        port = self.settings().get_int(settings.WATCHER_PORT)
        if port:  # Sun's local.watcher.port, on loopback; a port taken is logged, not fatal
            try:
                tcp = _LoopbackServer(("127.0.0.1", port), StatusHandler)
                threading.Thread(target=tcp.serve_forever, daemon=True).start()
                servers.append(tcp)
            except OSError as e:
                self.wlog(f"watcher cannot listen on 127.0.0.1:{port} ({e.strerror}): "
                          "status over TCP is off")
        # SIGHUP, an administrator's "read your settings", must not end the watcher
        signal.signal(signal.SIGHUP, lambda _sig, _frame: self._hup.set())
        self.wlog(f"watcher process {os.getpid()} started at {time.ctime()}")
        self.adopt()
        last_minute = None
        try:
            while not self.done.wait(POLL):
                if self._hup.is_set():
                    self.settings()
                self.check()
                now = time.localtime()
                minute = now[:5]
                if minute != last_minute:
                    last_minute = minute
                    self.scheduled(now)
        finally:
            for srv in servers:
                srv.shutdown()
                srv.server_close()
            if os.path.exists(path):
                os.unlink(path)
            self.wlog(f"watcher process {os.getpid()} stopped at {time.ctime()}")

    def utility(self, pid: int, program: str, rfile) -> None:
        """A registered utility: its connection closing without `done` is an
        abnormal exit; stored cleans up after it (utility.py)."""
        for line in rfile:
            if line.startswith(b"done "):
                return
        self.wlog(f"Watched utility '{program}' process {pid} exited abnormally")
        logmsg.log("watcher", logmsg.UTILITY_EXITED, program=program, pid=pid)
        r = subprocess.run(STORE.argv(self.layout.root) + ["-r"], capture_output=True,
                           timeout=300)
        self.wlog(f"Cleanup after '{program}' process {pid} (stored -r): exit status "
                  f"{r.returncode}")

    def scheduled(self, now: time.struct_time) -> None:
        """msprobe on local.schedule.msprobe (the seeds' imsched runs it)."""
        c = self.settings()
        if not c.get_bool(settings.MSPROBE_SCHEDULE_ENABLE) or \
                not cron.matches(cron.parse(c.get(settings.MSPROBE_SCHEDULE)), now):
            return
        if self._probe is not None and self._probe.poll() is None:
            return  # the last one still runs
        self._probe = subprocess.Popen(
            [sys.executable, "-c", "from store.cli.msprobe import main; main()",
             "--store-root", self.layout.root, "--nagios", "--restart", "--state", "watcher"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.layout.root)
        self.wlog(f"msprobe process {self._probe.pid} started at {time.ctime()}")

    def request(self, verb: str, names: list[str], out) -> None:
        if verb == "start":
            out("OK" if self.start(names, out) else "FAILED")
        elif verb == "stop":
            self.stop(names, out)
            if not names:
                out(f"Stopping watcher process {os.getpid()} ... done")
                self.done.set()
            out("OK")
        elif verb == "utility":
            self.utility(int(names[0]), names[1], out.rfile)
        elif verb == "restart":  # msprobe: a service that does not answer, or is down
            svc = by_name(names[:1])[0]
            with self.lock:
                if svc not in self.watched:  # never started here, or stopped by stop-msg
                    out(f"{svc.label} is not watched: not restarted")
                else:
                    self.wlog(f"msprobe: '{svc.program}' not responding or down")
                    self._restart_for(svc)
            out("OK")
        elif verb == "status":
            self.status(out)
            out("OK")
        elif verb == "quit":  # stop-msg watcher: the watcher alone; the services run on
            out(f"Stopping watcher process {os.getpid()} ... done")
            self.done.set()
            out("OK")
        else:
            raise ValueError(f"unknown request {verb!r} (start, stop, status, quit)")
