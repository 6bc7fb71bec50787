"""lmtpd: the LMTP delivery service (foreground, systemd Type=notify)."""

from __future__ import annotations

import click

from .. import logsetup, settings
from ..config import Config
from ..layout import Layout
from .common import EXIT_CODES_HELP, entry, resolve_root, store_root_option

EPILOG = """\b
Examples:
  lmtpd                       listen on <root>/run/lmtp (local.lmtp.socket), and on
                              127.0.0.1:PORT when local.lmtp.port is set
  lmtpd --port 2003           also on 127.0.0.1:2003 for this run
  Postfix: mailbox_transport = lmtp:unix:/var/opt/msgstore/run/lmtp

""" + EXIT_CODES_HELP


@click.command(epilog=EPILOG)
@store_root_option
@click.option("--socket", "socket_path", metavar="PATH", default=None,
              help="UNIX socket to listen on (default: the local.lmtp.socket setting).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Also listen on this loopback TCP port (default: local.lmtp.port; 0: none).")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Serving processes (default: the local.lmtp.workers setting).")
@click.option("--no-wait", is_flag=True,
              help="Signal READY without waiting for stored (deliveries are deferred until "
                   "stored is ready).")
def cli(store_root, socket_path, port, workers, no_wait) -> int:
    """Deliver mail from the MTA over LMTP (RFC 2033) into the store. Runs in the
    foreground until SIGTERM; READY (systemd) once stored is ready."""
    from ..services.lmtpd import run  # aiosmtpd only for this command

    layout = Layout.open(resolve_root(store_root))
    logsetup.attach(layout.log_dir)
    config: Config = layout.config
    path = socket_path or config.resolve_path(settings.LMTP_SOCKET)
    port = config.get_int(settings.LMTP_PORT) if port is None else port
    workers = config.get_int(settings.LMTP_WORKERS) if workers is None else workers
    run(layout.root, path, port, workers=workers, wait=not no_wait)
    return 0


main = entry(cli, "lmtpd")
