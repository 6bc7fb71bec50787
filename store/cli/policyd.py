"""policyd: Postfix's policy service for the store (foreground, systemd Type=notify)."""

from __future__ import annotations

import click

from .. import logsetup, settings
from ..layout import Layout
from .common import EXIT_CODES_HELP, entry, resolve_root, store_root_option

EPILOG = """\b
Examples:
  policyd                     listen on <root>/run/policy (local.policy.socket), and on
                              127.0.0.1:PORT when local.policy.port is set
  Postfix (main.cf):
    smtpd_recipient_restrictions = reject_unauth_destination,
        check_policy_service unix:/var/opt/msgstore/run/policy

""" + EXIT_CODES_HELP


@click.command(epilog=EPILOG)
@store_root_option
@click.option("--socket", "socket_path", metavar="PATH", default=None,
              help="UNIX socket to listen on (default: the local.policy.socket setting).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Also listen on this loopback TCP port (default: local.policy.port; 0: none).")
def cli(store_root, socket_path, port) -> int:
    """Answer Postfix's policy requests (check_policy_service) at RCPT time: unknown
    recipients and full quota roots are refused before the message is queued. Runs in the
    foreground until SIGTERM."""
    from ..services.policyd import run

    layout = Layout.open(resolve_root(store_root))
    logsetup.attach(layout.log_dir)
    path = socket_path or layout.config.resolve_path(settings.POLICY_SOCKET)
    port = layout.config.get_int(settings.POLICY_PORT) if port is None else port
    run(layout.root, path, port)
    return 0


main = entry(cli, "policyd")
