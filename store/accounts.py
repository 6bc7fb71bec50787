"""Who may log in to the store's services (imapd, popd): the password file
`<root>/config/passwd`, one `user:hash` per line, the hash a PHC string of
argon2id made by argon2-cffi (salted, slow: ~0.1 s a check here, which is
also the floor of a failed login's delay). Mode 0600: only the store's
owner, who runs the services, reads it. Written whole and swapped in
(fsutil.atomic_write) under `lock/passwd.lock`, never in place."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from . import locks
from .errors import SettingError, UsageError
from .fsutil import open_nofollow, write_file_atomic
from .layout import Layout, check_userid

PASSWD_FILE = "passwd"
MODE = 0o600
LOCK_TIMEOUT = 10.0


def passwd_path(layout: Layout) -> str:
    return os.path.join(layout.config_dir, PASSWD_FILE)


def _hasher():
    from argon2 import PasswordHasher  # only the commands that need it pay its import
    return PasswordHasher()


def read(layout: Layout) -> dict[str, str]:
    """user -> hash. A line that is not `user:$argon2...` raises SettingError
    naming file and line (a hand edit gone wrong must not lock everyone out
    silently, nor let anyone in)."""
    path = passwd_path(layout)
    try:
        with open_nofollow(path) as f:
            data = f.read()
    except FileNotFoundError:
        return {}
    out: dict[str, str] = {}
    for lineno, raw in enumerate(data.splitlines(), 1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise SettingError(f"{path}:{lineno}: not UTF-8 text") from None
        if not line or line.startswith("#"):
            continue
        user, sep, digest = line.partition(":")
        if not sep or not digest.startswith("$argon2"):
            raise SettingError(f"{path}:{lineno}: expected 'user:$argon2id$...'")
        try:
            check_userid(user)
        except UsageError as e:
            raise SettingError(f"{path}:{lineno}: {e}") from None
        out[user] = digest
    return out


def _write(layout: Layout, entries: dict[str, str]) -> None:
    lines = ["# Store users: written by mboxutil --set-password; user:argon2id hash\n"]
    lines += [f"{u}:{h}\n" for u, h in sorted(entries.items())]
    write_file_atomic(passwd_path(layout), "".join(lines).encode(), mode=MODE)


def set_password(layout: Layout, user: str, password: str) -> bool:
    """Set (or replace) a user's password. Returns True when the user is new."""
    check_userid(user)
    if not password:
        raise UsageError("the password is empty")
    if "\n" in password or "\r" in password or "\0" in password:
        raise UsageError("the password holds a line break or NUL")
    digest = _hasher().hash(password)
    with _locked(layout):
        entries = read(layout)
        new = user not in entries
        entries[user] = digest
        _write(layout, entries)
    return new


def remove(layout: Layout, user: str) -> bool:
    """Remove a user's password (they can no longer log in). False if there was none."""
    check_userid(user)
    with _locked(layout):
        entries = read(layout)
        if entries.pop(user, None) is None:
            return False
        _write(layout, entries)
    return True


def users(layout: Layout) -> list[str]:
    return sorted(read(layout))


def verify(layout: Layout, user: str, password: str) -> bool:
    """Whether `password` is the user's. An unknown user costs a hash check
    too, so that timing does not tell which users exist."""
    from argon2.exceptions import InvalidHashError, VerificationError
    digest = read(layout).get(user)
    hasher = _hasher()
    try:
        return hasher.verify(digest or _DUMMY, password) and digest is not None
    except (VerificationError, InvalidHashError):
        return False


# a hash of a random password nobody knows, checked for unknown users
_DUMMY = ("$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA"
          "$Qm9ndXNoYXNoYm9ndXNoYXNoYm9ndXNoYXNoYm9ndXM")


@contextlib.contextmanager
def _locked(layout: Layout) -> Iterator[None]:
    os.makedirs(layout.lock_dir, exist_ok=True)
    fd = locks.take(layout.lock_dir, locks.PASSWD_LOCK, LOCK_TIMEOUT, "the password file")
    try:
        yield
    finally:
        locks.release(fd)
