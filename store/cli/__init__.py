"""Command-line layer: parse flags, call the engine, render, map errors to exit codes."""

import os
import signal
import sys

COMMANDS = ("deliver", "reconstruct", "stored", "imdbverify", "mboxutil", "hashdir",
            "configutil", "imcheck", "lmtpd", "imapd", "popd")
_prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""


def _interrupted_while_starting(_signum, _frame) -> None:
    # nothing has been done yet: say so in the one line every command uses
    # for Ctrl-C, and exit 32 instead of a KeyboardInterrupt traceback
    # from the middle of an import
    os.write(2, f"{_prog}: interrupted\n".encode())
    os._exit(32)


if _prog in COMMANDS and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    # a console script is importing its command; common.entry() puts the
    # usual handler back as soon as the command starts
    signal.signal(signal.SIGINT, _interrupted_while_starting)
