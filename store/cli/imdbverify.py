"""imdbverify: verify the mailbox database; take, list and restore snapshots."""

from __future__ import annotations

import os
import time

import click

from .. import logsetup, snapshots
from ..daemon import state
from ..db import Database, lmdbfiles
from ..db import verify as dbverify
from ..errors import EXIT_UNCORRECTED, LockedError
from ..layout import Layout
from .common import (
    EXIT_CODES_HELP,
    emit_json,
    entry,
    json_option,
    render_table,
    resolve_root,
    store_root_option,
    usage,
)

EPILOG = """\b
Examples:
  imdbverify                  verify the live database (exit 0 good, 4 damaged)
  imdbverify -s -m            take a snapshot now and verify it (cron: 0 2 * * * imdbverify -s -m)
  imdbverify -l               list snapshots (--json for machines)
  imdbverify --restore snap-20261122T020000Z
                              restore one (stored must be stopped)

""" + EXIT_CODES_HELP


@click.command(epilog=EPILOG)
@store_root_option
@click.option("-s", "take", is_flag=True, help="Take a snapshot now.")
@click.option("-m", "verify_taken", is_flag=True, help="With -s: verify the snapshot just taken.")
@click.option("-l", "do_list", is_flag=True, help="List snapshots.")
@click.option("--restore", metavar="NAME", help="Restore a snapshot (refused while stored runs).")
@json_option
def cli(store_root, take, verify_taken, do_list, restore, as_json) -> int:
    """Verify the mailbox database in a child process; manage snapshots."""
    if sum(map(bool, (take, do_list, restore))) > 1:
        raise usage("give at most one of -s, -l, --restore")
    if verify_taken and not take:
        raise usage("-m verifies the snapshot that -s takes: use -s -m")
    layout = Layout.open(resolve_root(store_root))
    logsetup.attach(layout.log_dir)
    if do_list:
        snaps = snapshots.list_snapshots(layout)
        if as_json:
            emit_json([s.as_json() for s in snaps])
        else:
            render_table("Snapshots", ["name", "time", "verified", "suspect", "bytes", "path"],
                         [(s.name, s.as_json()["time"], s.verified, s.suspect, s.bytes, s.path)
                          for s in snaps])
        return 0
    if take:
        with Database(layout.mboxlist_dir, readonly=True) as db:
            snap = snapshots.take(layout, db)
        ok = snap.verified and (not verify_taken or snapshots.still_good(snap))
        if as_json:
            emit_json(snap.as_json() | {"verified_again": ok if verify_taken else None})
        else:
            click.echo(f"{snap.name}: {snap.bytes} bytes, "
                       + ("verified" if ok else "FAILED verification: kept as suspect"))
        return 0 if ok else EXIT_UNCORRECTED
    if restore:
        return _restore(layout, restore)
    verdict = dbverify.verify(layout.mboxlist_dir)
    if as_json:
        emit_json(verdict.as_json())
    else:
        click.echo(f"{layout.mboxlist_dir}: {verdict.reason}")
        for n, c in verdict.entries.items():
            click.echo(f"  {n}: {c} entries")
    return 0 if verdict.ok else EXIT_UNCORRECTED


def _restore(layout: Layout, name: str) -> int:
    st = state.running(layout)
    if st is not None:
        raise LockedError(f"stored is running (pid {st['pid']}); stop it before restoring")
    snap = snapshots.find(layout, name)
    if snap.suspect or not snapshots.still_good(snap):
        raise LockedError(f"snapshot {name} is suspect or fails verification; choose another")
    lock = state.acquire_daemon_lock(layout)
    try:
        if lmdbfiles.has_data(layout.mboxlist_dir):  # keep what is replaced
            keep = os.path.join(layout.mboxlist_dir,
                                "before-restore-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
            os.makedirs(keep)
            lmdbfiles.put_aside(layout.mboxlist_dir, keep)
            click.echo(f"previous database kept in {keep}")
        snapshots.restore_into(snap, layout.mboxlist_dir)
    finally:
        state.release_daemon_lock(lock)
    click.echo(f"restored {snap.name}; now run reconstruct -m and reconstruct -q")
    return 0


main = entry(cli, "imdbverify")
