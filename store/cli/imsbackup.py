"""imsbackup: users, mailboxes or partitions into a backup stream (file or stdout)."""

import datetime as dt
import os
import sys

import click

from ..errors import StoreError
from ..migrate import taking
from .common import (
    EXIT_CODES_HELP,
    counting,
    entry,
    json_option,
    open_store,
    progress_bar,
    store_root_option,
    usage,
)

EXAMPLES = """OBJECT: `user/joe` (joe's INBOX and every folder), a mailbox and the folders
below it, `/primary` (a partition), `/primary/user/joe`, or `/` (everything).
Taken while the services run: each mailbox as it was when the backup reached
it. The format is in docs/formats.md; imsrestore reads it.

Examples:

\b
  imsbackup -f /backup/joe.msb user/joe
  imsbackup -f - / | gzip > /backup/full-$(date +%F).msb.gz
  imsbackup -f /backup/incr.msb --since-backup /backup/full.msb /
  imsbackup -f /backup/week.msb -d 20261126 /primary

"""


def parse_date(value: str) -> int:
    """Sun's YYYYMMDD[:HHMMSS], ISO 8601 (YYYY-MM-DD[THH:MM[:SS]]), or
    seconds since the epoch; dates without a zone are UTC."""
    if value.isdigit() and len(value) != 8:
        return int(value)
    for fmt in ("%Y%m%d:%H%M%S", "%Y%m%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return int(dt.datetime.strptime(value, fmt).replace(tzinfo=dt.UTC).timestamp())
        except ValueError:
            continue
    raise usage(f"-d {value!r}: give YYYYMMDD[:HHMMSS], YYYY-MM-DD or seconds since the epoch")


@click.command(epilog=EXAMPLES + EXIT_CODES_HELP)
@store_root_option
@click.option("-f", "dest", metavar="FILE|-", required=True,
              help="Where the backup goes ('-': standard output).")
@click.option("-d", "since", metavar="DATE",
              help="Incremental: messages that arrived at or after DATE.")
@click.option("--since-backup", "base", metavar="FILE", type=click.Path(dir_okay=False),
              help="Incremental: what is new or changed since the backup in FILE.")
@click.option("--with-config", is_flag=True,
              help="Also the server's files of config/: the settings, the users and their "
                   "password hashes, the quota warning's text, the expiry rules.")
@json_option
@click.argument("objects", nargs=-1, required=True)
def cli(store_root, dest, since, base, with_config, as_json, objects) -> int:
    """Back up OBJECTs (users, mailboxes, partitions) to FILE or standard output."""
    since_ts = parse_date(since) if since else None
    base_map = None
    if base:
        with open(base, "rb") as f:
            base_map = taking.read_base(f, base)
    if dest != "-" and os.path.lexists(dest):
        raise usage(f"-f {dest}: exists; imsbackup writes only a new file")
    report = sys.stderr if dest == "-" else sys.stdout
    with open_store(store_root, readonly=True) as store:
        names = taking.select(store, list(objects))
        with progress_bar("messages", as_json) as bar:
            if dest == "-":
                result = _to_stdout(store, names, since_ts, base_map,
                                    counting(bar), with_config)
            else:
                result = _to_file(store, names, dest, since_ts, base_map,
                                  counting(bar), with_config)
    if as_json:
        click.echo(_json(result.as_json()), file=report)
    else:
        click.echo(f"backed up {result.messages} messages ({result.bytes:,} bytes) of "
                   f"{result.mailboxes} mailboxes"
                   + (f", {result.vanished} expunged meanwhile" if result.vanished else "")
                   + f"; {result.seconds:.2f} s", file=report)
    return 0


def _to_stdout(store, names, since, base, progress, with_config):
    try:
        return taking.take(store, names, sys.stdout.buffer, since=since, base=base,
                           progress=progress, with_config=with_config)
    except BrokenPipeError:
        # (not the quiet exit 0 of a listing piped to head: this backup is not whole)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes at exit
        raise StoreError("standard output was closed before the backup was complete "
                         "(what read it stopped): the backup is not whole") from None


def _to_file(store, names, dest, since, base, progress, with_config):
    """Written beside as `.FILE.partial`, renamed when whole: a backup at
    FILE is always a finished one."""
    d, b = os.path.split(os.path.abspath(dest))
    tmp = os.path.join(d, f".{b}.partial")
    try:
        with open(tmp, "xb") as out:
            result = taking.take(store, names, out, since=since, base=base, progress=progress,
                                 with_config=with_config)
            os.fsync(out.fileno())
        os.rename(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return result


def _json(obj) -> str:
    import json
    return json.dumps(obj, indent=2, ensure_ascii=False)


main = entry(cli, "imsbackup")
