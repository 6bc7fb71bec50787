"""imapd: IMAP access to the store (foreground, systemd Type=notify)."""

from __future__ import annotations

import click

from .. import logsetup
from ..layout import Layout
from .common import EXIT_CODES_HELP, entry, resolve_root, store_root_option

EPILOG = """\b
Examples:
  imapd                       listen on service.listenaddr (127.0.0.1) port service.imap.port
  imapd --port 1143           another port for this run

Users log in with the password set by `mboxutil --set-password USER`.

""" + EXIT_CODES_HELP


@click.command(epilog=EPILOG)
@store_root_option
@click.option("--address", default=None, help="Listening address (default: service.listenaddr).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port (default: service.imap.port).")
def cli(store_root, address, port) -> int:
    """Serve the store's mailboxes over IMAP4rev1 until SIGTERM."""
    from ..services.imapd import run  # Twisted only for this command

    layout = Layout.open(resolve_root(store_root))
    logsetup.attach(layout.log_dir)
    address = address or layout.config.get("service.listenaddr")
    port = layout.config.get_int("service.imap.port") if port is None else port
    if port == 0:
        raise click.UsageError("service.imap.port is 0: the IMAP listener is off")
    run(layout.root, address, port)
    return 0


main = entry(cli, "imapd")
