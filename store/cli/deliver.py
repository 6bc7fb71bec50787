"""deliver: append messages to a mailbox."""

import contextlib
import os
import stat
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
    with contextlib.ExitStack() as files_open:
        # opened now, read later a chunk at a time: a missing file fails before anything
        # is stored, and no message is ever held in memory whole
        sources = [sys.stdin.buffer if f == "-" else files_open.enter_context(open(f, "rb"))
                   for f in files or ("-",)]
        if sum(f == "-" for f in files) > 1:
            raise click.UsageError("standard input ('-') can be given once")
        for f, src in zip(files, sources, strict=False):
            st = os.fstat(src.fileno())
            if f != "-" and stat.S_ISREG(st.st_mode) and st.st_size == 0:
                raise click.UsageError(f"{f} is empty; nothing was delivered")
        with open_store(store_root, create=create) as store:
            if create and not store.exists(name):
                store.create(name, partition)
            if batch:
                for uid in store.append_stream(name, sources, flags=flag_bits, batch=True):
                    click.echo(f"{name} {uid}")
            else:
                for src in sources:
                    uid = store.append_stream(name, [src], flags=flag_bits)[0]
                    click.echo(f"{name} {uid}")
    return 0


main = entry(cli, "deliver")
