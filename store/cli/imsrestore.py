"""imsrestore: a backup stream (file or stdin) back into mailboxes."""

import sys

import click

from ..errors import EXIT_UNCORRECTED
from ..migrate import restore
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
    usage,
)

EXAMPLES = """OBJECTs pick what to restore (default: everything in the backup): `user/joe`
(joe's mailboxes), a mailbox (with the folders below it). --to restores the
one OBJECT under another name (`user/joe` --to `user/ann`: joe's folders
become ann's). A mailbox that does not exist or never held a message gets
the backup's UIDs and UIDVALIDITY; into a live one messages are added under
new UIDs (the mapping is in --json). Nothing is ever removed. A damaged or
cut-off backup is restored up to the damage, which is reported with its
offset (exit 4).

Examples:

\b
  imsrestore -f /backup/joe.msb
  imsrestore -f /backup/full.msb user/joe/Sent
  imsrestore -f /backup/joe.msb --to user/joe-restored user/joe
  gunzip -c full.msb.gz | imsrestore -f - user/joe

"""


@click.command(epilog=EXAMPLES + EXIT_CODES_HELP)
@store_root_option
@click.option("-f", "source", metavar="FILE|-", required=True,
              help="The backup ('-': standard input).")
@click.option("--to", "to", metavar="MAILBOX", help="Restore the one OBJECT under this name.")
@click.option("--ignore-quota", is_flag=True, help="Restore past the quota limit.")
@click.option("--with-config", is_flag=True,
              help="Also the config/ files of a backup made --with-config: each written where "
                   "this store has none; one it has is kept, the backup's beside it as "
                   "NAME.restored.")
@json_option
@click.argument("objects", nargs=-1)
def cli(store_root, source, to, ignore_quota, with_config, as_json, objects) -> int:
    """Restore mailboxes from a backup made by imsbackup."""
    if to and len(objects) != 1:
        raise usage("--to needs exactly one OBJECT (the mailbox or user it renames)")
    with open_store(store_root) as store, progress_bar("messages", as_json) as bar:
        if source == "-":
            result = restore.restore(store, sys.stdin.buffer, "<stdin>", objects=list(objects),
                                     to=to, check_quota=not ignore_quota,
                                     progress=counting(bar), with_config=with_config)
        else:
            with open(source, "rb") as f:
                result = restore.restore(store, f, source, objects=list(objects), to=to,
                                         check_quota=not ignore_quota,
                                         progress=counting(bar), with_config=with_config)
    if as_json:
        emit_json(result.as_json())
    else:
        render_table(f"imsrestore {source}", ["mailbox", "restored as", "messages", "updated",
                                              "skipped", "UIDs kept", "new UIDs", "complete"],
                     [(m.name, m.target, m.messages, m.updated, m.skipped,
                       "yes" if m.uids_kept else "no", len(m.remapped),
                       "yes" if m.complete else "NO") for m in result.mailboxes])
        for m in result.mailboxes:
            for note in m.notes:
                click.echo(f"{m.target}: {note}")
        for name, action in result.config:
            click.echo(f"config/{name}: {action}")
        j = result.as_json()
        click.echo(f"restored {j['messages']} messages into {len(result.mailboxes)} mailboxes; "
                   f"{result.seconds:.2f} s ({j['messages_per_second']:,.0f} messages/s)")
    if result.damage:
        click.echo(f"imsrestore: {result.damage}; everything before it was restored", err=True)
        return EXIT_UNCORRECTED
    return 0


main = entry(cli, "imsrestore")
