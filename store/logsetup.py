"""Where the log goes: `<root>/log/default` of the store a command works on.

One handler per store log file, on the `store` logger, kept in a registry
so that it can be taken off again: a command attaches its store's log when
it opens the store, and `common.run` detaches every handler when the
command ends, so commands run one after another in one process (tests, a
future service) each write only their own store's log.
"""

from __future__ import annotations

import logging
import os
import sys

from . import logmsg

LOG_FILE = "default"
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """`text` as one line of printable text: control characters (C0, DEL, C1 such
    as U+0085), line and paragraph separators (U+2028, U+2029), other invisible
    characters and undecodable bytes (surrogate escapes) written as \\n, \\xNN,
    \\uNNNN. A user name, mailbox name or address sent by a client can then
    neither forge a log line nor make the log a binary file."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _NAMED.get(c) or (
        f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}") for c in text)


class OneLineFormatter(logging.Formatter):
    """Every record is one line: its message escaped (escape), an exception's
    traceback too, on the same line."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = escape(record.getMessage())
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        if record.exc_info:
            line += " " + escape(self.formatException(record.exc_info))
        return line


FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s: %(message)s"
STDERR_FORMAT = "%(name)s %(levelname)s: %(message)s"
_LOGGER = "store"
_attached: dict[str, logging.Handler] = {}  # log file path (or "<stderr>") -> handler


def attach(log_dir: str, level: int = logging.INFO) -> logging.Handler:
    """Send the toolkit's log to `<log_dir>/default` (rotatable: the handler
    reopens the file when logrotate moves it). Attaching a store's log twice
    gives the one handler."""
    path = os.path.abspath(os.path.join(log_dir, LOG_FILE))
    if path in _attached:
        return _attached[path]
    try:
        os.makedirs(log_dir, exist_ok=True)
        handler: logging.Handler = ReopeningFileHandler(path)
    except OSError as e:  # a read-only or full filesystem must not stop a check or a listing
        handler = attach_stderr(level)
        logmsg.log("log", logmsg.LOG_UNWRITABLE, path=path, error=e.strerror or e)
        return handler
    handler.setFormatter(OneLineFormatter(FORMAT))
    return _add(path, handler, level)


def attach_stderr(level: int = logging.INFO) -> logging.Handler:
    """The log on standard error too (for the journal, under systemd)."""
    if "<stderr>" in _attached:
        return _attached["<stderr>"]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(STDERR_FORMAT))
    return _add("<stderr>", handler, level)


def _add(key: str, handler: logging.Handler, level: int) -> logging.Handler:
    logger = logging.getLogger(_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(level)
    _attached[key] = handler
    return handler


def attached() -> bool:
    return bool(_attached)


def detach_all() -> None:
    """Take off and close every handler attached here."""
    logger = logging.getLogger(_LOGGER)
    for key, handler in list(_attached.items()):
        logger.removeHandler(handler)
        handler.close()
        del _attached[key]


class ReopeningFileHandler(logging.FileHandler):
    """What logging.handlers.WatchedFileHandler does (before each record,
    reopen the file if logrotate moved or removed it) without importing
    logging.handlers, which brings socket, pickle and queue: ~9 ms of every
    command's start-up, `deliver`'s included."""

    def __init__(self, path: str) -> None:
        super().__init__(path, encoding="utf-8")
        self._id = self._open_id()

    def _open_id(self) -> tuple[int, int] | None:
        if self.stream is None:
            return None
        st = os.fstat(self.stream.fileno())
        return st.st_dev, st.st_ino

    def emit(self, record: logging.LogRecord) -> None:
        try:
            st = os.stat(self.baseFilename)
            now = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            now = None
        if now is None or now != self._id:
            if self.stream is not None:
                self.stream.flush()
                self.stream.close()
                self.stream = None
            try:
                self.stream = self._open()
            except OSError as e:  # a symlink planted after a rotation, a full or read-only disk
                sys.stderr.write(f"log {self.baseFilename} cannot be written ({e.strerror}): "
                                 f"{self.format(record)}\n")
                self._id = None
                return
            self._id = self._open_id()
        super().emit(record)

    def _open(self):
        """The log file, never through a symlink (O_NOFOLLOW), created 0640."""
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o640)
        return os.fdopen(fd, "a", encoding=self.encoding)
