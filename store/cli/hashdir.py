"""hashdir: where a user's mailboxes live inside a partition, and on disk."""

import click

from ..layout import canonical, check_userid, relpath
from ..layout import hashdir as _hashdir
from .common import EXIT_CODES_HELP, entry, open_store, store_root_option, usage

EPILOG = """Examples:

\b
  hashdir joe                    ->  16/a9/
  hashdir -a joe                 ->  =user/16/a9/=joe/
  hashdir --partition joe        ->  primary   (the partition joe's INBOX is on)
  hashdir --path joe             ->  /var/opt/msgstore/partition/primary/=user/16/a9/=joe/
  hashdir --path user/joe/Sent   ->  .../=user/16/a9/=joe/=Sent/   (as Cyrus's mbpath)

""" + EXIT_CODES_HELP


@click.command(epilog=EPILOG)
@store_root_option
@click.option("-a", "absolute", is_flag=True,
              help="Print the INBOX directory relative to the partition.")
@click.option("--partition", "show_partition", is_flag=True,
              help="Print the partition the mailbox is on (from the database).")
@click.option("--path", "show_path", is_flag=True,
              help="Print the mailbox's directory on disk (from the database).")
@click.argument("target", metavar="USER|MAILBOX")
def cli(store_root, absolute: bool, show_partition: bool, show_path: bool, target: str) -> int:
    """Print the hashed directory of USER (`<h1>/<h2>/`), or where a user's
    INBOX or a mailbox is: its partition, its directory on disk."""
    if sum((absolute, show_partition, show_path)) > 1:
        raise usage("give at most one of -a, --partition, --path")
    name = canonical(target) if "/" in target else None
    if not (show_partition or show_path):
        if name is not None:
            raise usage(f"{target}: a user id, not a mailbox name (or use --path)")
        check_userid(target)
        click.echo(relpath(f"user/{target}") if absolute else _hashdir(target))
        return 0
    if name is None:
        name = f"user/{check_userid(target)}/INBOX"
    with open_store(store_root, readonly=True) as store:
        e = store.entry(name)
        click.echo(e.partition if show_partition else store.mailbox_dir(name, e))
    return 0


main = entry(cli, "hashdir")
