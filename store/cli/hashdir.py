"""hashdir: where a user's mailboxes live inside a partition."""

import click

from ..layout import check_userid, relpath
from ..layout import hashdir as _hashdir
from .common import EXIT_CODES_HELP, entry


@click.command(epilog="Examples:\n\n\b\n  hashdir joe        ->  16/a9/\n"
               "  hashdir -a joe     ->  =user/16/a9/=joe/\n\n" + EXIT_CODES_HELP)
@click.option("-a", "absolute", is_flag=True,
              help="Print the INBOX directory relative to the partition.")
@click.argument("user")
def cli(absolute: bool, user: str) -> int:
    """Print the hashed directory of USER (`<h1>/<h2>/`)."""
    check_userid(user)
    click.echo(relpath(f"user/{user}") if absolute else _hashdir(user))
    return 0


main = entry(cli, "hashdir")
