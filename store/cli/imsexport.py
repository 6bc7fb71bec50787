"""imsexport: mailboxes (with their folders) to a Maildir or an mboxrd file."""

import click

from ..migrate import exporter
from .common import (
    EXIT_CODES_HELP,
    counting,
    emit_json,
    entry,
    json_option,
    open_store,
    progress_bar,
    render_table,
    store_root_option,
)

EXAMPLES = """Flags, keywords, INTERNALDATE and (Maildir) UIDs are kept: imsimport,
Dovecot and mutt read them back. Maildir: folders as Maildir++ (.Sent,
.Lists.dev). mbox: the folders in DEST.sbd/ (Thunderbird's layout). DEST
must not exist (a Maildir may be an empty directory).

Examples:

\b
  imsexport user/joe /tmp/joe-maildir                  joe's INBOX and folders
  imsexport user/joe/Archive archive.mbox --format mbox
  imsexport --no-recursive user/joe inbox.mbox --format mbox

"""


@click.command(epilog=EXAMPLES + EXIT_CODES_HELP)
@store_root_option
@click.option("--format", "fmt", type=click.Choice([exporter.MAILDIR, exporter.MBOX]),
              default=exporter.MAILDIR, show_default=True, help="What to write.")
@click.option("--recursive/--no-recursive", default=True, show_default=True,
              help="The mailbox's folders too.")
@json_option
@click.argument("mailbox")
@click.argument("dest", type=click.Path(path_type=str))
def cli(store_root, fmt, recursive, as_json, mailbox, dest) -> int:
    """Export MAILBOX (and its folders) to DEST."""
    with open_store(store_root, readonly=True) as store, \
            progress_bar("messages", as_json) as bar:
        total = 0
        if bar:
            from ..layout import canonical
            names = [canonical(mailbox)] + (store.children(canonical(mailbox)) if recursive
                                            else [])
            total = sum(i.messages or 0 for i in store.list() if i.name in set(names))
        result = exporter.export(store, mailbox, dest, fmt, recursive=recursive,
                                 progress=counting(bar, total))
    if as_json:
        emit_json(result.as_json())
        return 0
    render_table(f"imsexport {mailbox} ({fmt})", ["mailbox", "written to", "messages", "bytes",
                                                  "notes"],
                 [(m.mailbox, m.dest, m.messages, m.bytes,
                   "; ".join(m.notes + ([f"{m.vanished} expunged meanwhile"] if m.vanished
                                        else []))) for m in result.mailboxes])
    j = result.as_json()
    click.echo(f"exported {j['messages']} messages ({j['bytes']:,} bytes) of "
               f"{len(result.mailboxes)} mailboxes; {result.seconds:.2f} s "
               f"({j['messages_per_second']:,.0f} messages/s)")
    return 0


main = entry(cli, "imsexport")
