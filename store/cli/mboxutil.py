"""mboxutil: list, create, delete, rename mailboxes; expunge; quotas; ACLs."""

import sys

import click

from .. import logmsg, logsetup
from ..errors import StoreError
from ..index import names_to_flags
from ..layout import user_of
from .common import (
    EXIT_CODES_HELP,
    emit_json,
    entry,
    json_option,
    open_store,
    render_table,
    resolve_root,
    store_root_option,
    usage,
)

EXAMPLES = """Examples:

\b
  mboxutil -l                          list every mailbox
  mboxutil -l -p 'user/joe/*'          list joe's mailboxes
  mboxutil -c user/joe                 create joe's INBOX (initialises an empty store root)
  mboxutil -c user/joe/Sent
  mboxutil -d user/joe/Sent
  mboxutil -r user/joe/Old user/joe/Archive
  mboxutil -r user/joe user/joe second move joe to partition 'second'
  mboxutil -e -p 'user/joe/*'          expunge messages flagged \\Deleted
  mboxutil -q                          quota roots with usage and limits
  mboxutil --set-quota user/joe 1000000000
  mboxutil --set-quota user/joe 1000000000 --messages 50000
  mboxutil --set-acl user/joe/Sent bob lr
  mboxutil --set-flags user/joe 12 '\\Deleted'
  mboxutil --move user/joe user/joe/Archive 1:500   move UIDs 1-500 (flags, dates kept)
  mboxutil --set-password joe < pw.txt  the password: the first line of standard input
  mboxutil --list-users

"""


ORPHANS = "\0orphans"  # -d given without a name (as `-o -d`)


@click.command(epilog=EXAMPLES + EXIT_CODES_HELP)
@store_root_option
@click.option("-l", "do_list", is_flag=True, help="List mailboxes.")
@click.option("-p", "pattern", metavar="PATTERN", help="Mailbox pattern for -l/-e (* and %).")
@click.option("-c", "create", metavar="NAME", help="Create a mailbox.")
@click.option("-d", "delete", metavar="NAME", is_flag=False, flag_value=ORPHANS, default=None,
              help="Delete a mailbox and its messages; with -o (no NAME): the orphaned "
                   "mailboxes, after a confirmation.")
@click.option("-o", "orphans", is_flag=True,
              help="List orphaned mailboxes: those of users with no entry in the user "
                   "database (config/passwd).")
@click.option("-w", "write_to", metavar="FILE", help="With -o: write the list to FILE.")
@click.option("-r", "rename", is_flag=True, help="Rename: OLD NEW [PARTITION] as arguments.")
@click.option("-e", "expunge", is_flag=True,
              help="Expunge messages flagged \\Deleted (mailboxes as arguments, or -p).")
@click.option("-q", "quota", is_flag=True, help="Show quota roots (a ROOT argument for one).")
@click.option("--set-quota", nargs=2, metavar="ROOT BYTES", default=None,
              help="Set a quota limit in bytes ('none' removes the limit).")
@click.option("--messages", "message_limit", metavar="N", default=None,
              help="With --set-quota: also a limit on the number of messages ('none' removes "
                   "it; without --messages it stays as it is).")
@click.option("--set-acl", nargs=3, metavar="MAILBOX IDENTIFIER RIGHTS", default=None,
              help="Set rights ('' removes the identifier).")
@click.option("--set-flags", nargs=3, metavar="MAILBOX UID FLAGS", default=None,
              help="Replace the flags of one message.")
@click.option("--move", nargs=3, metavar="SOURCE TARGET UIDS", default=None,
              help="Move messages (a UID set: 1,4:7,20:*) with their flags and dates; whole "
                   "on a kill (a cut-off move is finished by the next).")
@click.option("--set-password", metavar="USER", default=None,
              help="Set USER's password for imapd/popd: the first line of standard input "
                   "(asked twice without echo on a terminal).")
@click.option("--remove-password", metavar="USER", default=None,
              help="Remove USER's password (they can no longer log in).")
@click.option("--list-users", is_flag=True, help="List the users that have a password.")
@click.option("--auth-test", metavar="USER", default=None,
              help="Check a password against USER's (the first line of standard input) without "
                   "logging in: exit 0 accepted, 8 refused.")
@click.option("--status", "status_of", metavar="MAILBOX", default=None,
              help="A mailbox's figures: messages, unseen, bytes, UIDVALIDITY, UIDNEXT, "
                   "HIGHESTMODSEQ, quota root, partition (as doveadm mailbox status).")
@click.option("--locks", "show_locks", is_flag=True,
              help="Show who holds which lock now (mailbox, pid, command); looking locks nothing.")
@click.option("--partition", "partition", default="primary", show_default=True,
              help="Partition for -c.")
@json_option
@click.argument("args", nargs=-1)
def cli(store_root, do_list, pattern, create, delete, orphans, write_to, rename, expunge, quota,
        set_quota, message_limit, set_acl, set_flags, move, set_password, remove_password,
        list_users, auth_test, status_of, show_locks, partition, as_json, args) -> int:
    """Manage mailboxes, quotas, ACLs and the users who may log in."""
    if orphans:
        if args or do_list or create or rename or (delete not in (None, ORPHANS)):
            raise usage("-o takes only -w FILE and -d (without a name)")
        return _orphans(store_root, write_to, delete == ORPHANS, as_json)
    if delete == ORPHANS:
        raise usage("-d needs a mailbox name (or -o -d: the orphaned mailboxes)")
    if write_to:
        raise usage("-w goes with -o")
    actions = [n for n, v in (("-l", do_list), ("-c", create), ("-d", delete), ("-r", rename),
                              ("-e", expunge), ("-q", quota), ("--set-quota", set_quota),
                              ("--set-acl", set_acl), ("--set-flags", set_flags),
                              ("--move", move),
                              ("--set-password", set_password),
                              ("--remove-password", remove_password),
                              ("--list-users", list_users), ("--auth-test", auth_test),
                              ("--status", status_of), ("--locks", show_locks)) if v]
    if len(actions) != 1:
        raise usage("give exactly one of -l, -c, -d, -r, -e, -q, --set-quota, --set-acl, "
                    "--set-flags, --move, --set-password, --remove-password, --list-users, "
                    "--auth-test, --status, --locks"
                    + (f" (got {' '.join(actions)})" if actions else ""))
    if message_limit is not None and not set_quota:
        raise usage("--messages goes with --set-quota")
    if args and not (rename or expunge or quota):
        raise usage(f"unexpected arguments: {' '.join(args)}")
    if set_password or remove_password or list_users:
        return _users(store_root, set_password, remove_password, as_json)
    if auth_test:
        return _auth_test(store_root, auth_test)
    if status_of:
        return _status(store_root, status_of, as_json)
    if show_locks:
        return _locks(store_root, as_json)
    # listings open the database read-only: they work on a read-only store
    with open_store(store_root, create=bool(create), readonly=bool(do_list or quota)) as store:
        store.check_readable()  # a damaged page must not abort the listing
        if do_list:
            infos = store.list(pattern)
            if as_json:
                emit_json([i.as_json() for i in infos])
            else:
                render_table("Mailboxes", ["name", "partition", "messages", "bytes", "uidvalidity",
                                           "acl"],
                             [(i.name, i.partition, i.messages if i.error is None else "DAMAGED",
                               i.bytes, i.uidvalidity,
                               " ".join(f"{k}:{v}" for k, v in sorted(i.acl.items())))
                              for i in infos])
            return 0
        if create:
            store.create(create, partition)
            click.echo(f"created {create}")
            return 0
        if delete:
            store.delete(delete)
            click.echo(f"deleted {delete}")
            return 0
        if rename:
            if len(args) not in (2, 3):
                raise usage("-r needs OLD NEW [PARTITION]")
            for old, new in store.rename(args[0], args[1], args[2] if len(args) == 3 else None):
                click.echo(f"renamed {old} {new}")
            return 0
        if expunge:
            if args and pattern:
                raise usage("-e takes mailbox names or -p PATTERN, not both")
            names = list(args) if args else [i.name for i in store.list(pattern)]
            total = 0
            for n in names:
                uids = store.expunge(n)
                total += len(uids)
                if uids:
                    click.echo(f"{n} expunged {len(uids)}")
            return 0
        if quota:
            if len(args) > 1:
                raise usage("-q takes at most one quota root")
            rows = store.quotas(args[0] if args else None)
            if as_json:
                emit_json(rows)
            else:
                render_table("Quota roots", ["root", "used bytes", "messages", "limit bytes",
                                             "limit messages"],
                             [(q["root"], q["used_bytes"], q["used_messages"],
                               "none" if q["limit_bytes"] is None else q["limit_bytes"],
                               "none" if q["limit_messages"] is None else q["limit_messages"])
                              for q in rows])
            return 0
        if set_quota:
            root, raw = set_quota
            if raw.lower() == "none":
                limit = None
            elif raw.isdigit():
                limit = int(raw)
            else:
                raise usage(f"--set-quota: {raw!r} is not a number of bytes or 'none'")
            if message_limit is None:
                q = store.set_quota(root, limit)
            elif message_limit.lower() == "none":
                q = store.set_quota(root, limit, None)
            elif message_limit.isdigit():
                q = store.set_quota(root, limit, int(message_limit))
            else:
                raise usage(f"--messages: {message_limit!r} is not a number of messages or "
                            "'none'")
            click.echo(f"quota {q['root']} limit {q['limit_bytes']} used {q['used_bytes']}"
                       + (f" messages limit {q['limit_messages']} used {q['used_messages']}"
                          if q.get("limit_messages") is not None else ""))
            return 0
        if set_acl:
            acl = store.set_acl(*set_acl)
            click.echo(f"acl {set_acl[0]} " + " ".join(f"{k}:{v}" for k, v in sorted(acl.items())))
            return 0
        if move:
            from ..mailbox import moving
            source, target, spec = move
            moved = moving.move(store, source, target, moving.parse_uid_set(spec))
            if as_json:
                emit_json({"source": source, "target": target,
                           "moved": [[a, b] for a, b in sorted(moved.items())]})
            else:
                click.echo(f"moved {len(moved)} messages from {source} to {target}")
            return 0
        name, uid, flags = set_flags
        if not uid.isdigit():
            raise usage(f"--set-flags: UID {uid!r} is not a number")
        try:
            bits = names_to_flags(flags)
        except ValueError as e:
            raise usage(str(e)) from None
        store.set_flags(name, int(uid), bits)
        click.echo(f"flags {name} {uid} {flags}")
        return 0




def _users(store_root, set_password, remove_password, as_json) -> int:
    from .. import accounts
    from ..layout import Layout
    layout = Layout.open(resolve_root(store_root))
    logsetup.attach(layout.log_dir)
    if set_password:
        new = accounts.set_password(layout, set_password, _read_password())
        logmsg.log("accounts", logmsg.PASSWORD_SET, user=set_password,
                   what="added" if new else "changed")
        click.echo(f"password {'set' if new else 'changed'} for {set_password}")
        return 0
    if remove_password:
        if not accounts.remove(layout, remove_password):
            raise StoreError(f"{remove_password} has no password")
        logmsg.log("accounts", logmsg.PASSWORD_REMOVED, user=remove_password)
        click.echo(f"password removed for {remove_password}")
        return 0
    names = accounts.users(layout)
    if as_json:
        emit_json(names)
    else:
        for n in names:
            click.echo(n)
    return 0


def _auth_test(store_root, user: str) -> int:
    """doveadm auth test: the password checked as a login checks it."""
    from .. import accounts
    from ..layout import Layout
    layout = Layout.open(resolve_root(store_root))
    if not accounts.verify(layout, user, _read_password(confirm=False)):
        raise StoreError(f"{user}: password refused (no such user, or not their password)")
    click.echo(f"{user}: password accepted")
    return 0


def _status(store_root, name: str, as_json: bool) -> int:
    """doveadm mailbox status: one mailbox's figures from its index."""
    from ..index import FLAG_SEEN
    from ..layout import canonical
    with open_store(store_root, readonly=True) as store:
        name = canonical(name)
        entry = store.entry(name)
        idx = store.read(name)
        if idx.problems:
            raise idx.problems[0]
        h = idx.header
        row = {"mailbox": name, "messages": len(idx.records),
               "unseen": sum(1 for r in idx.records if not r.flags & FLAG_SEEN),
               "bytes": sum(r.size for r in idx.records), "uidvalidity": h.uidvalidity,
               "uidnext": h.uidnext, "highestmodseq": h.highest_modseq,
               "quotaroot": entry.quotaroot, "partition": entry.partition}
    if as_json:
        emit_json(row)
    else:
        for k, v in row.items():
            click.echo(f"{k}\t{v}")
    return 0


def _orphans(store_root, write_to: str | None, delete: bool, as_json: bool) -> int:
    """Sun's `mboxutil -o`: the mailboxes of users the user database does not
    know. With no user at all in it, nothing is an orphan (every mailbox
    would be: a store whose users log in some other way)."""
    from .. import accounts
    with open_store(store_root, readonly=not delete) as store:
        users = set(accounts.users(store.layout))
        if not users:
            raise StoreError("the user database (config/passwd) holds no user: every mailbox "
                             "would be an orphan; nothing done")
        names = [i.name for i in store.list("user/*")]
        gone = [n for n in names if user_of(n) not in users]
        if write_to:
            with open(write_to, "w", encoding="utf-8") as f:
                f.writelines(n + "\n" for n in gone)
        if as_json:
            emit_json(gone)
        else:
            for n in gone:
                click.echo(n)
        if not delete or not gone:
            return 0
        owners = sorted({user_of(n) or "" for n in gone})
        prompt = f"delete {len(gone)} mailboxes of {len(owners)} users ({', '.join(owners[:5])}" \
                 f"{'...' if len(owners) > 5 else ''}) and their messages? [y/N] "
        click.echo(prompt, nl=False, err=True)
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            click.echo("nothing deleted", err=True)
            return 0
        for n in sorted(gone, key=len, reverse=True):  # folders before their INBOX
            if store.exists(n):
                store.delete(n)
                click.echo(f"deleted {n}")
    return 0


def _locks(store_root, as_json) -> int:
    """The locks held now: a mailbox lock by the mailbox's name (its file is a
    hash of it), the others by their file name; with the holder's command."""
    from .. import locks
    with open_store(store_root, readonly=True) as store:
        names = {locks.mailbox_lock_name(i.name): i.name for i in store.list()}
        rows = []
        for fname, pid in sorted(locks.held(store.layout.lock_dir).items()):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                command = ""
            rows.append((names.get(fname, fname), pid, command))
    if as_json:
        emit_json([{"lock": n, "pid": p, "command": c} for n, p, c in rows])
    else:
        render_table("Locks held", ["lock", "pid", "command"], rows)
    return 0


def _read_password(*, confirm: bool = True) -> str:
    """The first line of standard input; on a terminal, asked (twice, for a
    new one) without echo."""
    if sys.stdin.isatty():
        import getpass
        first = getpass.getpass("New password: " if confirm else "Password: ")
        if confirm and getpass.getpass("Again: ") != first:
            raise usage("the two passwords differ")
        return first
    line = sys.stdin.buffer.readline()
    try:
        return line.rstrip(b"\r\n").decode("utf-8")
    except UnicodeDecodeError:
        raise usage("the password is not UTF-8 text") from None

main = entry(cli, "mboxutil")
