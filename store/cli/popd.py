"""popd: POP3 access to users' INBOXes (foreground, systemd Type=notify)."""

from ._netservice import service_command
from .common import entry

cli = service_command("popd", "POP3", "pop", 1110,
                      "Serve users' INBOXes over POP3")
main = entry(cli, "popd")
