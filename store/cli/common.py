"""What every command shares: --store-root, rendering, and the one place
where errors and signals become exit statuses."""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from .. import logmsg, logsetup
from ..config import default_root
from ..errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_OPERATIONAL,
    EXIT_USAGE,
    CorruptionError,
    StoreError,
)
from ..proc import become_owner
from ..supervise import utility
from . import _interrupted_while_starting

if TYPE_CHECKING:
    from ..mailbox import Store

EXIT_CODES_HELP = ("Exit codes: 0 success, 4 damage found, 8 operational error "
                   "(store missing, lock held, I/O), 16 usage error, 32 interrupted.")


def store_root_option(f):
    return click.option(
        "--store-root", "store_root", metavar="PATH", default=None,
        help="Store root (default: $MSGSTORE_ROOT, then /var/opt/msgstore).")(f)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")(f)


_running: list[str] = []  # the command run() is running (utilities register with the watcher)


def resolve_root(store_root: str | None) -> str:
    """The store root this command works on. Run as root on a store that
    belongs to another user, the command becomes that user first (before it
    touches anything)."""
    root = store_root or default_root()
    become_owner(root)
    utility.register(root, _running[-1] if _running else "")
    return root


def open_store(store_root: str | None, *, create: bool = False, readonly: bool = False) -> Store:
    root = resolve_root(store_root)
    from ..mailbox import Store  # here: a command's --help need not load the mailbox layer
    store = Store.init(root) if create else Store.open(root, readonly=readonly)
    logsetup.attach(store.layout.log_dir)
    return store


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False))


def render_table(title: str, columns: Sequence[str], rows: Sequence[Sequence]) -> None:
    """A rich table on a terminal; plain tab-separated lines when piped."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table
        table = Table(title=title)
        for c in columns:
            table.add_column(c)
        for r in rows:
            table.add_row(*["" if v is None else str(v) for v in r])
        Console().print(table)
    else:
        for r in rows:
            click.echo("\t".join("" if v is None else str(v) for v in r))


def entry(command: click.Command, prog: str) -> Callable[[], None]:
    """Wrap a click command as a console script with our exit-code map."""
    def main(argv: list[str] | None = None) -> None:
        if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as usual from here
        code = run(command, prog, argv)
        sys.exit(code)
    return main


def run(command: click.Command, prog: str, argv: list[str] | None = None) -> int:
    """The command's exit status; the log handlers it attached are taken off.
    A command speaking another convention (deliver: sysexits.h) carries an
    `exit_map` translating the statuses chosen here."""
    _running.append(prog)
    code = EXIT_INTERRUPTED
    try:
        code = _run(command, prog, argv)
        exit_map = getattr(command, "exit_map", None)
        return exit_map.get(code, code) if exit_map else code
    finally:
        utility.done(code)
        _running.pop()
        logsetup.detach_all()


def _run(command: click.Command, prog: str, argv: list[str] | None) -> int:
    if argv and any("\x00" in a for a in argv):  # only in-process: exec(2) cannot pass one
        click.echo(f"{prog}: usage error: an argument holds a NUL byte", err=True)
        return EXIT_USAGE
    try:
        rv = command.main(args=argv, prog_name=prog, standalone_mode=False)
        return rv if isinstance(rv, int) else EXIT_OK
    except click.exceptions.Exit as e:
        return e.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo(f"{prog}: interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.UsageError as e:
        click.echo(f"{prog}: usage error: {e.format_message()} (see {prog} --help)", err=True)
        return EXIT_USAGE
    except click.ClickException as e:
        click.echo(f"{prog}: {e.format_message()}", err=True)
        return EXIT_USAGE
    except StoreError as e:
        if isinstance(e, CorruptionError):  # damage is news for the default log too
            logging.getLogger(f"store.{prog}").error(one_line(str(e)))
        click.echo(f"{prog}: {one_line(str(e))}", err=True)
        return e.exit_code
    except BrokenPipeError:
        return EXIT_OK
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        click.echo(f"{prog}: I/O error{where}: {e.strerror or e}", err=True)
        return EXIT_OPERATIONAL
    except Exception as e:  # noqa: BLE001 - the one catch-all of every command
        return internal_error(command, prog, e)


def internal_error(command: click.Command, prog: str, e: Exception) -> int:
    """An exception no code expected (a bug): its traceback to the default
    log (or standard error, when no log is open yet) as one catalogued line,
    one line on standard error, and the exit status of an operational error
    (8; `deliver`: 70, EX_SOFTWARE), never 1, which means "corrected"."""
    where = "the default log" if logsetup.attached() else "standard error"
    if not logsetup.attached():
        logsetup.attach_stderr()
    logmsg.log_internal(prog, prog, e)
    click.echo(f"{prog}: internal error {type(e).__name__}: {one_line(str(e))} (a bug; the "
               f"traceback is in {where}: please report it)", err=True)
    return getattr(command, "internal_exit", EXIT_OPERATIONAL)


def one_line(text: str) -> str:
    return " ".join(text.split())


def usage(msg: str) -> click.UsageError:
    return click.UsageError(msg)




class progress_bar:
    """A rich progress bar on stderr when it is a terminal (and the output
    is not JSON); nothing otherwise. Entered, it gives update(done, total,
    count), count being what the rate is of (messages)."""

    def __init__(self, unit: str, as_json: bool):
        self.unit = unit
        self.enabled = sys.stderr.isatty() and not as_json
        self.bar: Any = None  # a rich Progress once entered (rich loads only then)

    def __enter__(self):
        if not self.enabled:
            return None
        import time

        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )
        # on stderr, where isatty() was asked: `reconstruct -r -n > file` keeps the file clean
        self.bar = Progress(TextColumn(self.unit), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                            transient=True, console=Console(stderr=True))
        self.bar.start()
        task = self.bar.add_task(self.unit, total=None, rate="")
        t0 = time.monotonic()

        def update(done: int, total: int, count: int) -> None:
            el = max(time.monotonic() - t0, 1e-6)
            self.bar.update(task, completed=done, total=total, rate=f"{count / el:,.0f} msg/s")
        return update

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()


def counting(update, total: int | None = None):
    """For an engine's progress callback (messages done: n, and perhaps
    more arguments): a running count shown on a progress_bar's update, or
    None when there is no bar."""
    if update is None:
        return None
    done = 0

    def advance(n: int, *_more) -> None:
        nonlocal done
        done += n
        update(done, total, done)
    return advance
