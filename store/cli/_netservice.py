"""The command of a network service on Twisted (imapd, popd): one
definition, so that their options and checks cannot drift apart."""

from __future__ import annotations

import importlib

import click

from .. import logsetup, settings
from ..layout import Layout
from .common import EXIT_CODES_HELP, resolve_root, store_root_option


def service_command(name: str, protocol: str, service: str, example_port: int,
                    what: str) -> click.Command:
    plain, tls = settings.PORTS[service]
    port_setting, ssl_setting = plain.name, tls.name
    epilog = (f"Examples:\n\n\b\n  {name:<22} listen on service.listenaddr (127.0.0.1), "
              f"port {port_setting}\n  {name + ' --port ' + str(example_port):<22} another "
              "port for this run\n\nUsers log in with the password set by "
              "`mboxutil --set-password USER`.\n\n" + EXIT_CODES_HELP)

    @click.command(name=name, epilog=epilog, help=f"{what} until SIGTERM.")
    @store_root_option
    @click.option("--address", default=None,
                  help="Listening address (default: service.listenaddr).")
    @click.option("--port", type=click.IntRange(0, 65535), default=None,
                  help=f"Port (default: {port_setting}; 0: none).")
    @click.option("--sslport", type=click.IntRange(0, 65535), default=None,
                  help=f"Implicit-TLS port (default: {ssl_setting}; 0: none). Needs "
                       "local.service.tls.certfile.")
    def cli(store_root, address, port, sslport) -> int:
        layout = Layout.open(resolve_root(store_root))
        logsetup.attach(layout.log_dir)
        address = address or layout.config.get(settings.LISTEN_ADDRESS)
        port = layout.config.get_int(plain) if port is None else port
        sslport = layout.config.get_int(tls) if sslport is None else sslport
        if not layout.config.get(settings.TLS_CERT_FILE):
            sslport = 0
        if port == 0 and sslport == 0:
            raise click.UsageError(f"{port_setting} is 0 and there is no TLS listener "
                                   f"({ssl_setting} 0 or no local.service.tls.certfile): "
                                   f"{protocol} would listen nowhere")
        # Twisted only for this command
        importlib.import_module(f"store.services.{name}").run(layout.root, address, port,
                                                              sslport)
        return 0
    return cli
