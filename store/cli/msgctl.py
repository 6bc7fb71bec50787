"""start-msg, stop-msg and watcher: the seeds' start and stop of the store's
services (store/supervise/). One module: the three share the talk with the
watcher."""

from __future__ import annotations

import os
import shutil
import socket
import sys

import click

from .. import logsetup, settings
from ..config import default_root
from ..errors import EXIT_OK, EXIT_OPERATIONAL
from ..layout import Layout
from ..supervise import control
from ..supervise.registry import SERVICES, by_name, connects, enabled
from ..supervise.watcher import Watcher, socket_path
from .common import EXIT_CODES_HELP, entry, resolve_root, store_root_option, usage

NAMES = ", ".join(s.name for s in SERVICES)


def _ask(layout: Layout, request: str, echo=click.echo) -> int | None:
    """Send a request to the running watcher, its lines to `echo`; its exit
    status, or None when no watcher answers."""
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(socket_path(layout))
    except OSError:
        return None
    with s, s.makefile("rb") as f:
        s.sendall(request.encode() + b"\n")
        status = EXIT_OPERATIONAL
        for raw in f:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line in ("OK", "FAILED"):
                status = EXIT_OK if line == "OK" else EXIT_OPERATIONAL
                break
            echo(line)
    return status


def _launch_watcher(layout: Layout) -> int:
    """The watcher started in a session of its own, once it answers."""
    argv = [sys.executable, "-c", "from store.cli.msgctl import watcher_main; watcher_main()",
            "--store-root", layout.root]
    p = control.spawn(layout, argv, "watcher")
    answers = control.wait_for(lambda: p.poll() is not None
                               or connects(socket.AF_UNIX, socket_path(layout)), 10)
    if p.poll() is not None:
        raise click.ClickException(f"the watcher exited at start (status {p.returncode}; "
                                   f"see {layout.log_dir}/watcher.stderr)")
    if not answers:
        raise click.ClickException("the watcher did not answer within 10 s")
    return p.pid


WATCHER = "watcher"  # seed 001's service name for the watcher itself


def _names(services: tuple[str, ...]) -> list[str]:
    try:
        by_name(list(services))
    except ValueError as e:
        raise usage(f"{e}; or {WATCHER}, alone") from None
    return list(services)


START_EPILOG = f"""\b
Examples:
  start-msg              the watcher, then stored (waited for), lmtpd, imapd, popd
  start-msg imap         imapd alone (stored must be running)
  start-msg watcher      the watcher alone: it watches the services that run

Services: {NAMES}; each started when its setting (store.enable, lmtp.enable,
imap.enable, pop.enable, local.policy.enable) is 1. With local.watcher.enable 1 (the default) the
watcher starts them and restarts them on failure (local.autorestart).

""" + EXIT_CODES_HELP


@click.command(name="start-msg", epilog=START_EPILOG)
@store_root_option
@click.option("--write-units", "units_dir", metavar="DIR",
              help="Start nothing: write systemd units for these settings into DIR "
                   "(/etc/systemd/system), to run the services under systemd instead.")
@click.option("--user", default=None, help="With --write-units: the services' user (default: "
                                           "the store root's owner, else mailsrv).")
@click.option("--group", default=None, help="With --write-units: their group (default: the "
                                            "store root's group, else mailsrv).")
@click.argument("services", nargs=-1, metavar="[SERVICE]...")
def start_cli(store_root, units_dir, user, group, services) -> int:
    """Start the store's services in order; stop at stored if it does not
    become ready. What is already running is reported and left alone."""
    if units_dir:  # as root, for /etc/systemd/system: it does not become the store's owner
        return _write_units(Layout.open(store_root or default_root()), units_dir, user, group)
    layout = Layout.open(resolve_root(store_root))
    logsetup.attach(layout.log_dir)
    if services == (WATCHER,):  # the watcher alone; it adopts the services that run
        if _ask(layout, "status", echo=lambda _line: None) is not None:
            click.echo("watcher is already running")
            return EXIT_OK
        click.echo(f"Launching watcher ... {_launch_watcher(layout)}")
        return EXIT_OK
    names = _names(services)
    if not layout.config.get_bool(settings.WATCHER_ENABLE):
        ok = control.start(layout, enabled(layout, by_name(names)), click.echo)
        return EXIT_OK if ok else EXIT_OPERATIONAL
    click.echo("Connecting to watcher ...")
    status = _ask(layout, "start " + " ".join(names))
    if status is None:
        click.echo(f"Launching watcher ... {_launch_watcher(layout)}")
        status = _ask(layout, "start " + " ".join(names))
    if status is None:
        raise click.ClickException("the watcher stopped answering")
    return status


STOP_EPILOG = f"""\b
Examples:
  stop-msg               popd, imapd, lmtpd, stored, then the watcher
  stop-msg imap          imapd alone
  stop-msg watcher       the watcher alone: the services run on, unwatched

Services: {NAMES}.

""" + EXIT_CODES_HELP


def _write_units(layout: Layout, units_dir: str, user: str | None, group: str | None) -> int:
    import grp
    import pwd

    from ..supervise.units import units
    st = os.stat(layout.root)
    if user is None:
        try:
            user = pwd.getpwuid(st.st_uid).pw_name if st.st_uid != 0 else "mailsrv"
        except KeyError:
            user = str(st.st_uid)
    if group is None:
        try:
            group = grp.getgrgid(st.st_gid).gr_name if st.st_gid != 0 else "mailsrv"
        except KeyError:
            group = str(st.st_gid)
    os.makedirs(units_dir, exist_ok=True)
    # the console scripts beside this interpreter (a venv), else where PATH has them
    bindir = os.path.dirname(sys.executable)
    found = shutil.which("stored")
    if not os.path.exists(os.path.join(bindir, "stored")) and found:
        bindir = os.path.dirname(found)
    for fname, text in units(layout, bindir, user, group).items():
        with open(os.path.join(units_dir, fname), "w", encoding="utf-8") as f:
            f.write(text)
        click.echo(os.path.join(units_dir, fname))
    return EXIT_OK


@click.command(name="stop-msg", epilog=STOP_EPILOG)
@store_root_option
@click.argument("services", nargs=-1, metavar="[SERVICE]...")
def stop_cli(store_root, services) -> int:
    """Stop the store's services in reverse order (SIGTERM; SIGKILL after 30 s)."""
    layout = Layout.open(resolve_root(store_root))
    logsetup.attach(layout.log_dir)
    if services == (WATCHER,):  # the watcher alone: the services run on, unwatched
        status = _ask(layout, "quit")
        if status is None:
            click.echo("watcher is not running")
            return EXIT_OK
        return status
    names = _names(services)
    status = _ask(layout, "stop " + " ".join(names))
    if status is None:  # no watcher: by the pid files
        control.stop(layout, by_name(names), click.echo)
        status = EXIT_OK
    return status


@click.command(name="watcher", epilog=EXIT_CODES_HELP)
@store_root_option
def watcher_cli(store_root) -> int:
    """The watcher, in the foreground (start-msg launches it): starts and
    stops services on request and restarts them on failure."""
    layout = Layout.open(resolve_root(store_root))
    logsetup.attach(layout.log_dir)
    if _ask(layout, "status") is not None:
        raise click.ClickException(f"a watcher already answers on {socket_path(layout)}")
    Watcher(layout).serve()
    return EXIT_OK


start_main = entry(start_cli, "start-msg")
stop_main = entry(stop_cli, "stop-msg")
watcher_main = entry(watcher_cli, "watcher")
