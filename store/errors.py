"""Typed errors. Each carries the exit code the CLI maps it to (fsck(8) codes)."""

EXIT_OK = 0
EXIT_CORRECTED = 1
EXIT_NOT_RESPONDING = 2  # stored -t: it runs but its heartbeat is stale (restart it)
EXIT_UNCORRECTED = 4
EXIT_OPERATIONAL = 8
EXIT_USAGE = 16
EXIT_INTERRUPTED = 32


class StoreError(Exception):
    """Base class: an operational error (store missing, lock held, I/O)."""

    exit_code = EXIT_OPERATIONAL


class UsageError(StoreError):
    exit_code = EXIT_USAGE


class NotAStoreError(StoreError):
    pass


class InvalidNameError(UsageError):
    pass


class SettingError(UsageError):
    pass


class MailboxExistsError(StoreError):
    pass


class NoSuchMailboxError(StoreError):
    pass


class PermissionDeniedError(StoreError):
    """The acting user lacks an ACL right the operation needs (IMAP NO [NOPERM])."""


class LimitError(StoreError):
    """A per-user limit (local.user.maxmailboxes, local.user.maxsubscriptions)
    would be passed (IMAP NO [LIMIT])."""


class OverQuotaError(StoreError):
    """`since`: when the current run of over-quota refusals began (the
    grace period of store.quotagraceperiod runs from there)."""

    def __init__(self, message: str, *, since: int | None = None):
        super().__init__(message)
        self.since = since


class EmptyMessageError(UsageError):
    """A message of no bytes: refused, as Dovecot and Cyrus refuse one."""


class KeywordError(UsageError):
    """A keyword that is not an IMAP atom, or one more than a mailbox's
    table holds (index.MAX_KEYWORDS)."""


class LockedError(StoreError):
    pass


class ProgrammingError(StoreError):
    """The engine was called in a way no command may call it (a bug in the caller)."""


class CorruptionError(StoreError):
    """Damage found on disk. `where` names file and offset/record, so the
    administrator can find it; `kind` is a stable machine-readable tag."""

    exit_code = EXIT_UNCORRECTED

    def __init__(self, message: str, *, kind: str, mailbox: str | None = None,
                 path: str | None = None, where: str | None = None):
        self.kind = kind
        self.mailbox = mailbox
        self.path = path
        self.where = where
        detail = message
        if path or where:
            detail += " [" + ", ".join(x for x in (path, where) if x) + "]"
        super().__init__(detail)
        self.message = message

    def __reduce__(self):  # pickled whole across proc.run_isolated's pipe
        return (_corruption, (self.message, self.kind, self.mailbox, self.path, self.where))


def _corruption(message, kind, mailbox, path, where) -> CorruptionError:
    return CorruptionError(message, kind=kind, mailbox=mailbox, path=path, where=where)


def symlink_error(path: str, what: str = "file or directory") -> CorruptionError:
    """A symlink where the store expects its own `what`: never followed."""
    return CorruptionError(f"{path} is a symlink where the store expects a {what}; the store "
                           "never follows one: remove it (or put the real one there)",
                           kind="symlink", path=path)
