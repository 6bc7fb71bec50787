"""deliver: the local delivery agent (one process per message, as an MTA's
pipe transport runs it), and the administrator's way to append files to a
mailbox. Exit statuses follow sysexits.h, as dovecot-lda's and Cyrus's
deliver do: an MTA retries 75 and bounces the rest."""

import contextlib
import functools
import os
import stat
import sys

import click

from .. import settings
from ..daemon import state
from ..delivery.sysexits import EX_DATAERR, EX_SOFTWARE, EX_TEMPFAIL, EX_USAGE
from ..errors import EXIT_INTERRUPTED, EXIT_OPERATIONAL, EXIT_UNCORRECTED, EXIT_USAGE
from .common import entry, one_line, open_store, store_root_option

EXIT_CODES = ("Exit codes (sysexits.h): 0 delivered, 64 usage, 65 bad message (empty, too big), "
              "67 unknown user, 70 internal error, 75 temporary failure (over quota within "
              "store.quotagraceperiod, mailbox locked, store not ready or damaged, disk full; "
              "the MTA retries), 77 over quota past the grace period, 78 configuration error.")

# where click or the shared runner answered with our own codes (a usage
# error before anything ran, an interrupt, an I/O error): their sysexits
_SYSEXITS = {EXIT_USAGE: EX_USAGE, EXIT_OPERATIONAL: EX_TEMPFAIL, EXIT_UNCORRECTED: EX_TEMPFAIL,
             EXIT_INTERRUPTED: EX_TEMPFAIL}


@click.command(epilog="Examples:\n\n\b\n"
               "  deliver -f alice@example.org -a joe@example.com < msg.eml\n"
               "  deliver -a joe+lists@example.com -m Lists < msg.eml\n"
               "  deliver user/joe msg1.eml msg2.eml\n"
               "  deliver --create user/joe/Archive < msg.eml\n"
               "  deliver --batch user/joe /var/spool/import/*.eml\n\n" + EXIT_CODES)
@store_root_option
@click.option("-f", "--from", "sender", metavar="SENDER", default=None,
              help="Envelope sender, for Return-Path: (default: from a leading 'From ' line).")
@click.option("-a", "--address", "address", metavar="ADDRESS", default=None,
              help="Recipient address, mapped to its user's mailbox as lmtpd maps it "
                   "(local[+detail]@domain). All arguments are then files.")
@click.option("-m", "--mailbox", "folder", metavar="FOLDER", default=None,
              help="With -a: deliver into this folder of the user (INBOX when it does not exist).")
@click.option("--internaldate", metavar="WHEN", default=None,
              help="Arrival date: 'from' (the 'From ' line), 'received' (the newest Received: "
                   "header), or a date (RFC 5322, ISO 8601 or seconds since the epoch).")
@click.option("--create", is_flag=True,
              help="Create the mailbox (and initialise the store root) if missing.")
@click.option("--batch", is_flag=True,
              help="One filesystem sync for all messages instead of one fsync per message.")
@click.option("--flags", default="", metavar="FLAGS", help="Flags to set, e.g. '\\Seen \\Flagged'.")
@click.option("--partition", default="primary", show_default=True,
              help="Partition for a mailbox made by --create.")
@click.argument("args", nargs=-1, metavar="[MAILBOX] [FILE]...")
def cli(store_root, sender, address, folder, internaldate, create, batch, flags, partition,
        args) -> int:
    """Deliver a message to ADDRESS (-a), or append FILEs (standard input when
    none) to MAILBOX and print `MAILBOX UID` for each."""
    if address is None:
        if sender is not None or folder is not None:
            raise click.UsageError("-f and -m go with -a ADDRESS")
        if not args:
            raise click.UsageError("give a MAILBOX, or -a ADDRESS")
        mailbox, files = args[0], args[1:]
    else:
        if create or batch or flags:
            raise click.UsageError("--create, --batch and --flags go with MAILBOX, not -a")
        mailbox, files = None, args
    with contextlib.ExitStack() as files_open:
        sources = _open_sources(files, files_open)
        try:
            if address is None:
                return _append(store_root, mailbox, sources, create, batch, flags, partition,
                               internaldate)
            return _deliver(store_root, address, folder, sender, sources, internaldate)
        except (click.UsageError, click.exceptions.Exit):
            raise
        except Exception as e:
            from ..errors import CorruptionError
            if isinstance(e, CorruptionError):  # damage is news for the default log too
                import logging
                logging.getLogger("store.deliver").error(one_line(str(e)))
            return _report(_refused(e, store_root))


def _open_sources(files, files_open) -> list:
    """Opened now, read later a chunk at a time: a missing file fails before
    anything is stored, and no message is ever held in memory whole."""
    if sum(f == "-" for f in files) > 1:
        raise click.UsageError("standard input ('-') can be given once")
    sources = [sys.stdin.buffer if f == "-" else files_open.enter_context(open(f, "rb"))
               for f in files or ("-",)]
    for f, src in zip(files, sources, strict=False):
        st = os.fstat(src.fileno())
        if f != "-" and stat.S_ISREG(st.st_mode) and st.st_size == 0:
            click.echo(f"deliver: {f} is empty; nothing was delivered", err=True)
            raise click.exceptions.Exit(EX_DATAERR)
    return sources


def _append(store_root, mailbox, sources, create, batch, flags, partition, internaldate) -> int:
    from ..index import names_to_flags
    from ..layout import canonical
    name = canonical(mailbox)
    try:
        flag_bits = names_to_flags(flags)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    when = None if internaldate is None else _when(internaldate, None)
    with open_store(store_root, create=create) as store:
        _refuse_while_recovering(store)
        if create and not store.exists(name):
            store.create(name, partition)
        if batch:
            uids = store.append_stream(name, sources, flags=flag_bits, batch=True,
                                       internaldate=when)
            for uid in uids:
                click.echo(f"{name} {uid}")
        else:
            for src in sources:
                uid = store.append_stream(name, [src], flags=flag_bits, internaldate=when)[0]
                click.echo(f"{name} {uid}")
    return 0


def _deliver(store_root, address, folder, sender, sources, internaldate) -> int:
    from ..delivery.agent import Agent, Policy
    from ..message import envelope_sender, split_mbox_from
    with open_store(store_root) as store:
        _refuse_while_recovering(store)
        agent = Agent(store, Policy.from_config(store.layout.config), via="deliver",
                      recovering=functools.partial(state.resync_pending, store.layout))
        try:
            for src in sources:
                from_line, data = split_mbox_from(_read_limited(src, agent.policy.max_size))
                env_from = sender if sender is not None else envelope_sender(from_line) or ""
                try:
                    target = agent.resolve(address, folder)
                except Exception as e:
                    return _report(agent.refuse(e, env_from, address))
                out = agent.deliver(data, env_from, [target],
                                    internaldate=_when(internaldate, data, from_line))[0]
                if not out.ok:
                    return _report(out)
                click.echo(f"{out.mailbox} {out.uid}")
        finally:
            agent.close()
    return 0


def _read_limited(src, limit: int) -> bytes:
    """The message, read whole (headers go in front of it); one byte over
    the limit is enough to refuse it."""
    return src.read(limit + 1)


def _when(spec: str | None, data: bytes | None, from_line: bytes | None = None) -> int | None:
    from ..message import internaldate_of
    if spec is None:
        return None
    try:
        return internaldate_of(spec, data or b"", from_line)
    except ValueError as e:
        raise click.UsageError(f"--internaldate: {e}") from None


def _refuse_while_recovering(store) -> None:
    from ..daemon.state import recovering
    from ..delivery.outcome import NotReadyError
    pid = recovering(store.layout)
    if pid is not None:
        raise NotReadyError(f"stored (pid {pid}) is checking or recovering the database; "
                            "try again later")


def _refused(e: Exception, store_root):
    import time

    from ..config import Config, default_root
    from ..delivery.outcome import refused
    from ..errors import StoreError
    try:
        grace = Config.load(store_root or default_root()).get_int(settings.QUOTA_GRACE_PERIOD)
    except (StoreError, OSError):
        grace = 0
    out = refused(e, grace_hours=grace, now=int(time.time()))
    if out.reason == "internal":
        from .. import logmsg
        logmsg.log_internal("deliver", "deliver", e)
    return out


def _report(out) -> int:
    click.echo(f"deliver: {out.enhanced} {out.text}", err=True)
    return out.sysexit


cli.exit_map = _SYSEXITS
cli.internal_exit = EX_SOFTWARE  # type: ignore[attr-defined]
main = entry(cli, "deliver")
