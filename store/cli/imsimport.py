"""imsimport: mail from an mbox file, a tree of mbox files or a Maildir into mailboxes."""

import click

from ..migrate import importer
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

EXAMPLES = """The source's format is found from the source: a file is an mbox (mboxo,
mboxrd or Content-Length); a directory with cur/ or new/ is a Maildir, its
Maildir++ folders (.Sent, .Lists.dev) and Maildir subdirectories becoming
folders under MAILBOX; any other directory is a tree of mbox files (mutt,
Thunderbird), each file a folder. Flags, keywords and dates come along; a
Dovecot Maildir's UIDs and UIDVALIDITY too, into a mailbox that never held
a message. Messages already there (same content and date) are skipped: an
import run again, or after it was killed, finishes what is left.

Examples:

\b
  imsimport ~joe/mbox user/joe                  an mbox into joe's INBOX
  imsimport /home/joe/Maildir user/joe          joe's Maildir, with its folders
  imsimport -n /home/joe/Maildir user/joe       what it would do
  imsimport --json archive.mbox user/joe/Archive
  imsimport --ignore-quota /home/joe/Maildir user/joe

"""


@click.command(epilog=EXAMPLES + EXIT_CODES_HELP)
@store_root_option
@click.option("-n", "dry_run", is_flag=True, help="Show what would be imported; change nothing.")
@click.option("--ignore-quota", is_flag=True,
              help="Import past the quota limit (usage still counts it).")
@json_option
@click.argument("source", type=click.Path(path_type=str))
@click.argument("mailbox")
def cli(store_root, dry_run, ignore_quota, as_json, source, mailbox) -> int:
    """Import the mail of SOURCE (mbox or Maildir) into MAILBOX and its folders."""
    scanned = importer.scan(source)
    total = sum(len(f.messages) for f in scanned[1])
    with open_store(store_root, readonly=dry_run) as store, \
            progress_bar("messages", as_json) as bar:
        result = importer.run(store, source, mailbox, dry_run=dry_run,
                              check_quota=not ignore_quota, scanned=scanned,
                              progress=counting(bar, total))
    if as_json:
        emit_json(result.as_json())
        return 0
    render_table(f"imsimport {source} ({result.format})" + (" -n" if dry_run else ""),
                 ["source", "mailbox", "found", "imported" if not dry_run else "would import",
                  "skipped", "UIDs kept", "notes"],
                 [(f.source, f.mailbox + (" (new)" if f.created else ""), f.found, f.imported,
                   f.skipped, "yes" if f.uids_kept else "no", "; ".join(f.notes))
                  for f in result.folders])
    t = result.totals()
    verb = "would import" if dry_run else "imported"
    click.echo(f"{verb} {t['imported']} of {t['found']} messages ({t['bytes']:,} bytes) into "
               f"{len(result.folders)} mailboxes, {t['skipped']} already there; "
               f"{result.seconds:.2f} s ({t['messages_per_second']:,.0f} messages/s)")
    return 0


main = entry(cli, "imsimport")
