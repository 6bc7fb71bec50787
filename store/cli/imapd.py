"""imapd: IMAP access to the store (foreground, systemd Type=notify)."""

from ._netservice import service_command
from .common import entry

cli = service_command("imapd", "IMAP", "imap", 1143,
                      "Serve the store's mailboxes over IMAP4rev1")
main = entry(cli, "imapd")
