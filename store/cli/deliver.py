"""deliver: append messages to a mailbox."""

import sys

import click

from ..index import names_to_flags
from ..layout import canonical
from .common import EXIT_CODES_HELP, entry, open_store, store_root_option


@click.command(epilog="Examples:\n\n\b\n  deliver user/joe msg1.eml msg2.eml\n"
               "  deliver --create user/joe/Archive < msg.eml\n"
               "  deliver --batch user/joe /var/spool/import/*.eml\n\n" + EXIT_CODES_HELP)
@store_root_option
@click.option("--create", is_flag=True,
              help="Create the mailbox (and initialise the store root) if missing.")
@click.option("--batch", is_flag=True,
              help="One filesystem sync for all messages instead of one fsync per message.")
@click.option("--flags", default="", metavar="FLAGS", help="Flags to set, e.g. '\\Seen \\Flagged'.")
@click.option("--partition", default="primary", show_default=True,
              help="Partition for a mailbox made by --create.")
@click.argument("mailbox")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
def cli(store_root, create, batch, flags, partition, mailbox, files) -> int:
    """Append FILES (standard input when none) to MAILBOX; print `MAILBOX UID` for each."""
    name = canonical(mailbox)
    try:
        flag_bits = names_to_flags(flags)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    datas = []
    for f in files or ("-",):
        if f == "-":
            datas.append(sys.stdin.buffer.read())
        else:
            with open(f, "rb") as fh:
                datas.append(fh.read())
    with open_store(store_root, create=create) as store:
        if create and not store.exists(name):
            store.create(name, partition)
        if batch:
            uids = store.append_many(name, datas, flags=flag_bits)
            for uid in uids:
                click.echo(f"{name} {uid}")
        else:
            for data in datas:
                click.echo(f"{name} {store.append(name, data, flags=flag_bits)}")
    return 0


main = entry(cli, "deliver")
