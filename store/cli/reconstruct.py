"""reconstruct: check and repair mailboxes and the mailbox database."""

from __future__ import annotations

import click

from ..daemon.state import refuse_while_recovering
from ..layout import check_userid
from ..reconstruct import exit_code, lastcheck
from ..reconstruct.runner import DbMode, Options, reconstruct_db, reconstruct_mailboxes
from .common import (
    emit_json,
    entry,
    json_option,
    open_store,
    progress_bar,
    store_root_option,
    usage,
)

HELP_EPILOG = """\b
Syntax (Sun):
  reconstruct [-n | -f] [-i] [-e] [-G] [-p partition] {-r [mailbox...] | mailbox...}
  reconstruct [-p partition [-u user]] -m
  reconstruct -l
  reconstruct -q

\b
Examples:
  reconstruct -n user/dulcinea/INBOX    check one mailbox, change nothing
  reconstruct -r -n                     check every mailbox
  reconstruct -r -p primary             check, and rebuild what is damaged, on one partition
  reconstruct -f -r user/daphne         rebuild daphne's mailboxes without checking first
  reconstruct -f -i -e user/joe         rebuild from the message files, expunged mail comes back
  reconstruct -n -G -r                  also check every message's content against its GUID
  reconstruct -m                        repair the mailbox database from the spool
  reconstruct -p primary -u john -m     ... for one user
  reconstruct -q                        recount quota usage (safe while mail is delivered)
  reconstruct -l                        rebuild lright from the ACLs

\b
Exit codes (as fsck): 0 clean, 1 problems found and all corrected, 4 problems
left uncorrected (everything -n finds), 8 operational error, 16 usage error,
32 interrupted.
"""


@click.command(epilog=HELP_EPILOG)
@store_root_option
@click.option("-n", "--no-fix", "check_only", is_flag=True, help="Check only; change nothing.")
@click.option("-f", "--force", is_flag=True, help="Rebuild without the consistency check first.")
@click.option("-i", "--zero-index", is_flag=True,
              help="Ignore (truncate) store.idx when rebuilding: index from the files alone.")
@click.option("-e", "--remove-expunged", "remove_exp", is_flag=True,
              help="Remove store.exp when rebuilding: expunged messages come back.")
@click.option("-G", "--check-content", "check_content", is_flag=True,
              help="Also hash every message file against its GUID (reads every byte).")
@click.option("-p", "--partition", metavar="PARTITION", help="Limit to one partition.")
@click.option("-r", "--recursive", is_flag=True,
              help="Also every sub-mailbox; alone: every mailbox.")
@click.option("-m", "--mailbox-db", "db_mode", is_flag=True,
              help="Check and repair the mailbox database (folder, quota, lright) from the spool.")
@click.option("-u", "--user", metavar="USER", help="With -p and -m: one user's mailboxes.")
@click.option("-q", "--quota", "quota_mode", is_flag=True, help="Fix quota roots and usage.")
@click.option("-l", "--lright", "lright_mode", is_flag=True, help="Rebuild lright from the ACLs.")
@click.option("-j", "--jobs", type=click.IntRange(1, 256), default=None,
              help="Worker processes (default: the number of CPUs).")
@json_option
@click.argument("mailboxes", nargs=-1)
def cli(store_root, check_only, force, zero_index, remove_exp, check_content, partition, recursive,
        db_mode, user, quota_mode, lright_mode, jobs, as_json, mailboxes) -> int:
    """Check mailboxes and rebuild those with problems; or repair the database."""
    modes = sum(map(bool, (db_mode, quota_mode, lright_mode, recursive or mailboxes)))
    if modes != 1:
        raise usage("give one of: mailbox names and/or -r, -m, -q, -l")
    if check_only and force:
        raise usage("-n and -f exclude each other")
    if check_only and (zero_index or remove_exp):
        raise usage("-i and -e act only when a mailbox is rebuilt; they cannot go with -n "
                    "(use them with -f)")
    if user and not (db_mode and partition):
        raise usage("-u needs -p PARTITION and -m")
    if (db_mode or quota_mode or lright_mode) and (force or zero_index or remove_exp
                                                   or check_content):
        raise usage("-f, -i, -e and -G go with mailbox names or -r, not with -m, -q or -l")
    if (quota_mode or lright_mode) and partition:
        raise usage("-q and -l work on the whole store; -p goes with -m or mailbox names")
    import os
    with open_store(store_root, readonly=check_only) as store:
        known = store.layout.config.partitions()
        if partition and partition not in known:
            raise usage(f"-p {partition}: no such partition (known: {', '.join(known)}); "
                        "-p takes a partition name, not a path")
        if user:
            check_userid(user)  # a user id, not a mailbox name
        if db_mode or quota_mode or lright_mode:
            mode = DbMode.MAILBOXES if db_mode else DbMode.QUOTA if quota_mode else DbMode.LRIGHT
            if mode is DbMode.MAILBOXES:
                refuse_while_recovering(store.layout)
            findings, summary = reconstruct_db(store, partition=partition, user=user,
                                               apply=not check_only, mode=mode)
        else:
            # the seeds write a user's mailboxes as user/daphne/ (seed 003, step 9)
            names = [m[:-1] if m.endswith("/") and m.strip("/") else m for m in mailboxes]
            opts = Options(names=names, recursive=recursive, check_only=check_only,
                           force=force, zero_index=zero_index, remove_exp=remove_exp,
                           check_content=check_content,
                           partition=partition, jobs=jobs or os.cpu_count() or 1)
            with progress_bar("mailboxes", as_json) as progress:
                findings, summary = reconstruct_mailboxes(store, opts, progress)
            if check_only and recursive and not names and not partition:  # msprobe reports it
                lastcheck.record(store.layout, exit_code(findings), summary.mailboxes_checked,
                                 summary.mailboxes_with_problems)
    code = exit_code(findings)
    if as_json:
        emit_json({"findings": [f.as_json() for f in findings],
                   "summary": summary.as_json() | {"exit_code": code}})
        return code
    for f in findings:
        click.echo(f.line())
    s = summary
    rate = s.messages_checked / s.elapsed_seconds if s.elapsed_seconds else 0
    click.echo(f"reconstruct: {s.mailboxes_checked} mailboxes checked, "
               f"{s.mailboxes_with_problems} with problems, {s.mailboxes_rebuilt} rebuilt; "
               f"{s.messages_checked} messages ({s.messages_indexed} indexed); database entries "
               f"{s.db_added} added, {s.db_removed} removed, {s.db_changed} changed; "
               f"{s.elapsed_seconds:.2f} s ({rate:,.0f} messages/s)",
               )
    return code


main = entry(cli, "reconstruct")
