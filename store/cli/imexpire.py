"""imexpire (Sun's name): expire messages by the store's rules
(store.expirerule files, the store.expirerule.* settings). stored runs it at
local.store.expirestart, before it erases expunged files."""

from __future__ import annotations

import time

import click

from ..errors import EXIT_OPERATIONAL
from ..mailbox.expire import run
from .common import (
    EXIT_CODES_HELP,
    emit_json,
    entry,
    json_option,
    open_store,
    progress_bar,
    store_root_option,
)

EPILOG = """\b
Rules (docs/admin-guide.md, "Expiry"): config/store.expirerule, e.g.
  Trash.folderpattern: user/%/Trash
  Trash.messagedays: 30
  Big.messagesize: 10000000
  Big.messagesizedays: 7
and store.expirerule in a partition's, user's or folder's directory.
\b
Examples:
  imexpire -n                  what would be expired, changing nothing
  imexpire -u joe              only joe's mailboxes
  imexpire -p primary --json

""" + EXIT_CODES_HELP


@click.command(epilog=EPILOG)
@store_root_option
@click.option("-n", "--dry-run", is_flag=True, help="Print what would be expired; change nothing.")
@click.option("-u", "user", metavar="USER", help="Only USER's mailboxes.")
@click.option("-p", "partition", metavar="PARTITION", help="Only the mailboxes of PARTITION.")
@json_option
def cli(store_root, dry_run, user, partition, as_json) -> int:
    """Expire messages by the expiry rules: discard (expunge), fileinto:FOLDER or report.
    Prints `<action> <mailbox> <uidvalidity> <uid>` for each message (Sun's report)."""
    with open_store(store_root, readonly=dry_run) as store:
        with progress_bar("mailboxes", as_json) as bar:
            progress = None if bar is None else (lambda n, total: bar(n, total, n))
            results = run(store, int(time.time()), user=user, partition=partition,
                          dry_run=dry_run, progress=progress)
    failed = [r for r in results if r.error]
    if as_json:
        emit_json({"dry_run": dry_run, "mailboxes": [r.as_json() for r in results]})
    else:
        verb = "would " if dry_run else ""
        for r in results:
            for uid in r.discarded:
                click.echo(f"{verb}discard {r.mailbox} {r.uidvalidity} {uid}")
            for target, uids in r.filed.items():
                for uid in uids:
                    click.echo(f"{verb}fileinto:{target} {r.mailbox} {r.uidvalidity} {uid}")
            for uid in r.reported:
                click.echo(f"report {r.mailbox} {r.uidvalidity} {uid}")
            if r.error:
                click.echo(f"imexpire: {r.mailbox}: {r.error}", err=True)
        total = sum(r.count() for r in results)
        click.echo(f"{total} messages {'would be ' if dry_run else ''}expired in "
                   f"{sum(1 for r in results if r.count())} mailboxes"
                   + (f"; {len(failed)} mailboxes failed" if failed else ""), err=True)
    return EXIT_OPERATIONAL if failed else 0


main = entry(cli, "imexpire")
