"""stored: the store daemon (foreground, systemd Type=notify)."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import click

from .. import logmsg, logsetup, snapshots
from ..daemon import state
from ..daemon.daemon import Daemon, StopRequested
from ..daemon.housekeeping import cleanup
from ..errors import EXIT_NOT_RESPONDING, EXIT_OPERATIONAL, StoreError
from ..layout import Layout
from .common import EXIT_CODES_HELP, emit_json, entry, json_option, resolve_root, store_root_option

EPILOG = """\b
Examples:
  stored                      run in the foreground (as systemd's ExecStart)
  stored -t                   exit 0 when stored is ready, 2 when it runs but does not
                              respond (heartbeat older than 15 s), 8 otherwise
  stored -t -v                state, pid, stamp ages, newest snapshot
  stored -r                   clear stale reader slots and temp files, sync, exit

""" + EXIT_CODES_HELP


@click.command(epilog=EPILOG)
@store_root_option
@click.option("-t", "test", is_flag=True, help="Report whether stored is ready (exit code).")
@click.option("-v", "verbose", is_flag=True, help="With -t: print state, pid, stamps, snapshot.")
@click.option("-r", "cleanup", is_flag=True,
              help="Clear stale LMDB reader slots and temp files, sync and exit.")
@json_option
def cli(store_root, test, verbose, cleanup, as_json) -> int:
    """The message store daemon: checks the database, recovers it if needed,
    signals readiness, then runs checkpoints, cleanups, snapshots and expiry."""
    layout = Layout.open(resolve_root(store_root))
    logsetup.attach(layout.log_dir)
    if test:
        return _test(layout, verbose, as_json)
    if cleanup:
        return _cleanup(layout)
    return _run(layout)


def _test(layout: Layout, verbose: bool, as_json: bool) -> int:
    st = state.running(layout)
    now_state = st["state"] if st else "stopped"
    age = state.heartbeat_age(layout, time.time()) if st else None
    if st and now_state == state.READY and age is not None and age > state.HEARTBEAT_STALE:
        now_state = "not responding"
    if verbose or as_json:
        now = time.time()
        snaps = [s for s in snapshots.list_snapshots(layout) if not s.suspect]
        info: dict[str, Any] = {"state": now_state, "pid": st["pid"] if st else None,
                "stamps": {k: None if v is None else round(v, 1)
                           for k, v in state.stamp_ages(layout, now).items()},
                "newest_snapshot": snaps[-1].as_json() if snaps else None,
                "resync_pending": state.resync_pending(layout),
                "heartbeat_age": None if age is None else round(age, 1)}
        if as_json:
            emit_json(info)
        else:
            click.echo(f"state: {now_state}")
            click.echo(f"pid: {info['pid'] or '-'}")
            for k, v in info["stamps"].items():
                click.echo(f"{k}: " + ("never" if v is None else f"{v:.0f} s ago"))
            ns = info["newest_snapshot"]
            click.echo("newest snapshot: " + (f"{ns['name']} ({ns['time']})" if ns else "none"))
            click.echo("spool resync: " + ("pending" if info["resync_pending"] else "none pending"))
    if now_state == "not responding":
        return EXIT_NOT_RESPONDING
    return 0 if now_state == state.READY else EXIT_OPERATIONAL


def _cleanup(layout: Layout) -> int:
    # no daemon: hold its lock so that none starts meanwhile
    lock = None if state.running(layout) else state.acquire_daemon_lock(layout)
    try:
        done = cleanup(layout, time.time())
    finally:
        if lock is not None:
            state.release_daemon_lock(lock)
    click.echo(f"stored -r: {done.readers_cleared} stale reader slots cleared, "
               f"{len(done.temp_files_removed)} temp files removed, database synced")
    for p in done.temp_files_removed:
        click.echo(f"removed {p}")
    return 0


def _run(layout: Layout) -> int:
    logsetup.attach_stderr()  # for the journal
    stop, reload = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload.set())
    daemon = Daemon(layout.root)
    daemon.acquire()  # a second instance stops here, touching nothing
    try:
        daemon.start(stop)
        daemon.run(stop, reload)
    except StopRequested as e:
        logmsg.log("stored", logmsg.STORED_STOPPED_STARTING, why=e)
        return 0
    except (StoreError, OSError) as e:  # the reason, in the log the administrator reads
        logmsg.log("stored", logmsg.STORED_FAILED, error=" ".join(str(e).split()))
        raise
    finally:
        daemon.shutdown()
    return 0


main = entry(cli, "stored")
