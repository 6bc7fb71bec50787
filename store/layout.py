"""Paths of a store: root, partitions, hashdir, mailbox name <-> directory.

Mailbox names: `user/<id>/INBOX` (also accepted as `user/<id>`) is the INBOX
of <id>; `user/<id>/<folder>[/<sub>...]` its folders; any other top-level
namespace holds shared mailboxes. The canonical form, used in the database,
the index header and every message, spells the INBOX as `user/<id>/INBOX`.

Directories: `=user/<h1>/<h2>/=<id>/` is the INBOX, folders nest below it as
`=<folder>/`; other namespaces map to `=<ns>/=<name>/...`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat

from . import settings
from .config import CONFIG_DIR, CONFIG_FILE, Config
from .errors import InvalidNameError, NotAStoreError, StoreError
from .fsutil import is_real_dir, tighten_umask

MAX_COMPONENT_BYTES = 254  # plus the '=' prefix = NAME_MAX (255) on disk
USER_NS = "user"
INBOX = "INBOX"
DIR_PREFIX = "="
MARKER = os.path.join(CONFIG_DIR, CONFIG_FILE)
# in a mailbox directory: a delete has begun (mailbox/lifecycle.py); the
# directory is no longer a mailbox, and whoever finds it finishes the delete
DELETING = "store.deleted"

GROUP_ACCESS_UMASK = 0o027  # files 0640, directories 0750: the mail group may read
PRIVATE_UMASK = 0o077  # files 0600, directories 0700 (local.store.groupaccess = 0)


def is_bucket(name: str) -> bool:
    """Message bucket directories are named by number (`00`, `01`, ... `100`);
    mailbox directories start with `=`."""
    return name.isdigit()


def _check_component(name: str, comp: str) -> None:
    if comp == "":
        raise InvalidNameError(f"invalid mailbox name {name!r}: empty component")
    if comp in (".", ".."):
        raise InvalidNameError(f"invalid mailbox name {name!r}: component {comp!r} not allowed")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in comp):
        raise InvalidNameError(f"invalid mailbox name {name!r}: control or NUL character")
    try:
        n = len(comp.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidNameError(f"invalid mailbox name {name!r}: not valid UTF-8") from None
    if n > MAX_COMPONENT_BYTES:
        raise InvalidNameError(f"invalid mailbox name: component of {n} bytes "
                               f"(at most {MAX_COMPONENT_BYTES})")


@functools.lru_cache(maxsize=4096)  # a delivery spells the same name several times
def canonical(name: str) -> str:
    """Validate a mailbox name and return its canonical spelling."""
    if not isinstance(name, str) or not name:
        raise InvalidNameError("invalid mailbox name: empty")
    if name.startswith("/") or name.endswith("/"):
        raise InvalidNameError(f"invalid mailbox name {name!r}: leading or trailing '/'")
    parts = name.split("/")
    for comp in parts:
        _check_component(name, comp)
    if parts[0] == USER_NS:
        if len(parts) < 2:
            raise InvalidNameError(f"invalid mailbox name {name!r}: 'user' needs a user id")
        _check_not_reserved(parts[1])
        if len(parts) == 2:
            parts.append(INBOX)
        elif parts[2].upper() == INBOX:
            if len(parts) > 3:  # INBOX's children are the user's folders
                parts = parts[:2] + parts[3:]
            else:
                parts[2] = INBOX
    return "/".join(parts)


def _owner(path: str) -> str:
    try:
        return str(os.stat(path).st_uid)
    except OSError:
        return "unknown"


def user_of(name: str) -> str | None:
    parts = name.split("/")
    return parts[1] if parts[0] == USER_NS and len(parts) > 1 else None


def is_inbox(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 3 and parts[0] == USER_NS and parts[2] == INBOX


# Identifiers an ACL gives a meaning of its own (RFC 4314 2: `anyone`, a leading `-` for
# negative rights; Cyrus's `anonymous` and `group:`; Dovecot's `owner`, `authenticated`,
# `group=`, `$` names): a user with one of these ids would get, or give, every user's rights.
RESERVED_USERIDS = frozenset({"anyone", "anonymous", "owner", "authenticated"})
RESERVED_PREFIXES = ("-", "$", "group:", "group=", "group-override=", "user=")


def _check_not_reserved(user: str) -> None:
    if user.lower() in RESERVED_USERIDS or user.lower().startswith(RESERVED_PREFIXES):
        raise InvalidNameError(f"invalid user id {user!r}: reserved for ACL identifiers")


def check_userid(user: str) -> str:
    if "/" in user:
        raise InvalidNameError(f"invalid user id {user!r}: '/' not allowed")
    _check_component(f"user/{user}", user)
    _check_not_reserved(user)
    return user


def hashdir(user: str) -> str:
    """The two hashed directory levels of a user: `<h1>/<h2>/`."""
    h = hashlib.sha1(check_userid(user).encode("utf-8")).hexdigest()
    return f"{h[0:2]}/{h[2:4]}/"


def relpath(name: str) -> str:
    """Directory of a canonical mailbox name, relative to its partition."""
    parts = canonical(name).split("/")
    if parts[0] == USER_NS:
        base = [DIR_PREFIX + USER_NS, *hashdir(parts[1]).strip("/").split("/"), DIR_PREFIX + parts[1]]
        rest = [] if parts[2] == INBOX else parts[2:]
        return "/".join(base + [DIR_PREFIX + p for p in rest]) + "/"
    return "/".join(DIR_PREFIX + p for p in parts) + "/"


def name_from_relpath(rel: str) -> str | None:
    """Inverse of `relpath`, or None when the path is not a mailbox place."""
    parts = [p for p in rel.strip("/").split("/") if p]
    if not parts or not all(p.startswith(DIR_PREFIX) for p in (parts[:1] + parts[3:])):
        return None
    if parts[0] == DIR_PREFIX + USER_NS:
        if len(parts) < 4:
            return None
        user = parts[3][1:]
        name = "/".join([USER_NS, user, INBOX] + [p[1:] for p in parts[4:]])
        try:
            if hashdir(user) != f"{parts[1]}/{parts[2]}/":
                return None
        except InvalidNameError:
            return None
    else:
        name = "/".join(p[1:] for p in parts)
    try:
        return canonical(name)
    except InvalidNameError:
        return None


def child_prefix(name: str) -> str:
    """What the names of a canonical mailbox's children start with: a
    user's INBOX's children are the user's folders (`user/joe/`)."""
    return name[:-len(INBOX)] if is_inbox(name) else name + "/"


def parent(name: str) -> str | None:
    parts = name.split("/")
    if parts[0] == USER_NS:
        if len(parts) <= 3 and parts[-1] == INBOX:
            return None
        return "/".join(parts[:2] + [INBOX]) if len(parts) == 3 else "/".join(parts[:-1])
    return "/".join(parts[:-1]) or None


def is_descendant(name: str, ancestor: str) -> bool:
    if name == ancestor:
        return False
    p = parent(name)
    while p is not None:
        if p == ancestor:
            return True
        p = parent(p)
    return False


class Layout:
    """Where everything of one store root lives."""

    def __init__(self, root: str, config: Config | None = None):
        self.root = os.path.abspath(root)
        self.config = config or Config.load(self.root)
        # every file and directory this process creates gets at most 0640/0750
        # (or 0600/0700), whatever umask it was started with
        tighten_umask(GROUP_ACCESS_UMASK if self.config.get_bool(settings.GROUP_ACCESS)
                      else PRIVATE_UMASK)

    @classmethod
    def open(cls, root: str, *, config_problems: list[str] | None = None) -> Layout:
        """An existing store. `config_problems`: settings lines that fail
        are noted there and left out, instead of raising (configutil -l)."""
        root = os.path.abspath(root)
        try:
            marked = stat.S_ISREG(os.stat(os.path.join(root, MARKER)).st_mode)
        except PermissionError:
            raise StoreError(f"permission denied reading the store root {root}: run the "
                             f"command as the store's owner (uid {_owner(root)})") from None
        except OSError:
            marked = False
        if not marked:
            if not os.path.exists(root):
                raise NotAStoreError(f"store root {root} does not exist "
                                     "(create one with mboxutil -c or deliver --create)")
            raise NotAStoreError(f"{root} is not a message store (no {MARKER})")
        if config_problems is not None:
            return cls(root, Config.load(root, config_problems))
        return cls(root)

    @classmethod
    def init(cls, root: str) -> Layout:
        """Open a store, initialising it if the root is missing or empty."""
        root = os.path.abspath(root)
        if os.path.isfile(os.path.join(root, MARKER)):
            return cls(root)
        if os.path.exists(root):
            if not os.path.isdir(root):
                raise NotAStoreError(f"{root} exists and is not a directory")
            if os.listdir(root):
                raise NotAStoreError(f"{root} is not empty and not a message store; "
                                     "refusing to initialise it")
        tighten_umask(GROUP_ACCESS_UMASK)  # before the first directory: the root's
        os.makedirs(os.path.join(root, CONFIG_DIR), exist_ok=True)
        layout = cls(root, Config(root, {}))
        for d in (layout.mboxlist_dir, layout.log_dir, layout.lock_dir):
            os.makedirs(d, exist_ok=True)
        for p in layout.config.partitions().values():
            os.makedirs(p, exist_ok=True)
        layout.config.save({})  # the marker: a store root has its settings file
        return layout

    @property
    def config_dir(self) -> str:
        return os.path.join(self.root, CONFIG_DIR)

    @property
    def mboxlist_dir(self) -> str:
        return os.path.join(self.root, "mboxlist")

    @property
    def duplicates_dir(self) -> str:
        """Duplicate-delivery database (db/duplicates.py)."""
        return os.path.join(self.root, "dbdata", "duplicates")

    @property
    def log_dir(self) -> str:
        return os.path.join(self.root, "log")

    @property
    def lock_dir(self) -> str:
        return os.path.join(self.root, "lock")

    def telemetry_dir(self, service: str, user: str) -> str:
        """Where sessions of `user` on `service` (imap, pop) are captured,
        when the administrator has made it (services/telemetry.py)."""
        return os.path.join(self.root, "telemetry", service, user)

    def partition_path(self, partition: str) -> str:
        parts = self.config.partitions()
        if partition not in parts:
            # added since this process read the settings (configutil, while lmtpd, imapd and
            # popd run): the file is read again, once, before the name is refused
            self.config = Config.load(self.root)
            parts = self.config.partitions()
        if partition not in parts:
            raise StoreError(f"unknown partition {partition!r} (known: {', '.join(parts)})")
        return parts[partition]

    def mailbox_dir(self, name: str, partition: str) -> str:
        return os.path.join(self.partition_path(partition), relpath(name))

    def make_mailbox_dir(self, name: str, partition: str) -> str:
        """Create a mailbox directory, refusing to pass through a symlink."""
        base = self.partition_path(partition)
        os.makedirs(base, exist_ok=True)
        path = base
        for comp in relpath(name).strip("/").split("/"):
            path = os.path.join(path, comp)
            if not is_real_dir(path):
                os.mkdir(path, 0o750)
        return path + "/"


def walk_spool(partition_path: str, start: str | None = None, *, deleting: bool = False):
    """Yield (canonical name, directory) for every mailbox directory in a
    partition (one holding store.idx or message buckets). Symlinks are never
    followed; bucket directories are not descended into. A directory whose
    delete has begun (DELETING) is no mailbox, unless `deleting` asks for
    those too (reconstruct, which finishes them)."""
    user_top = os.path.join(partition_path, DIR_PREFIX + USER_NS)

    def subdirs(d: str, hashed: bool) -> list[str]:
        try:
            entries = list(os.scandir(d))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return []
        return sorted(e.path for e in entries if e.is_dir(follow_symlinks=False)
                      and (hashed or e.name.startswith(DIR_PREFIX)))

    def mailboxes(d: str):
        try:
            entries = list(os.scandir(d))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return
        # a mailbox: has an index, or has bucket directories (its index was lost);
        # not one whose delete has begun
        marked = any(e.name == DELETING for e in entries)
        if (marked and deleting) or (not marked and any(
                (e.name == "store.idx" and e.is_file(follow_symlinks=False))
                or (is_bucket(e.name) and e.is_dir(follow_symlinks=False)) for e in entries)):
            name = name_from_relpath(os.path.relpath(d, partition_path))
            if name is not None:
                yield name, d + "/"
        for sub in sorted(e.path for e in entries
                          if e.is_dir(follow_symlinks=False) and e.name.startswith(DIR_PREFIX)):
            yield from mailboxes(sub)

    if start is not None:  # one mailbox and everything below it
        yield from mailboxes(start.rstrip("/"))
        return
    for top in subdirs(partition_path, False):
        if top == user_top:
            for h1 in subdirs(top, True):
                for h2 in subdirs(h1, True):
                    for userdir in subdirs(h2, False):
                        yield from mailboxes(userdir)
        else:
            yield from mailboxes(top)
