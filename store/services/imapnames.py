"""IMAP mailbox names and the store's, for one user (RFC 2342 namespaces):

  personal      INBOX, Sent, Lists/dev        user/<me>/INBOX, user/<me>/Sent, ...
  other users   user/bob, user/bob/Sent       user/bob/INBOX, user/bob/Sent
  shared        Shared/announce               announce (a top-level store name)

As Cyrus shows them with its alternate namespace. `user` and `Shared` are
the other namespaces' prefixes: no personal folder takes those names."""

from __future__ import annotations

from ..errors import InvalidNameError
from ..layout import INBOX, USER_NS, canonical, is_inbox, user_of

DELIMITER = "/"
OTHER_PREFIX = USER_NS + DELIMITER
SHARED_ROOT = "Shared"
SHARED_PREFIX = SHARED_ROOT + DELIMITER
NAMESPACES = ([["", DELIMITER]], [[OTHER_PREFIX, DELIMITER]], [[SHARED_PREFIX, DELIMITER]])


class Names:
    def __init__(self, user: str):
        self.user = user
        self.home = f"{USER_NS}/{user}/"

    def to_store(self, name: str) -> str:
        """The store's name of an IMAP name; InvalidNameError if it has none."""
        if name.upper() == INBOX:
            return self.home + INBOX
        if name.upper().startswith(INBOX + DELIMITER):
            return canonical(self.home + name[len(INBOX) + 1:])
        if name.startswith(OTHER_PREFIX) or name == USER_NS:
            return canonical(name)
        if name.startswith(SHARED_PREFIX):
            rest = name[len(SHARED_PREFIX):]
            if rest.split(DELIMITER)[0] == USER_NS:
                raise InvalidNameError(f"invalid mailbox name {name!r}: shared names do not "
                                       f"start with {USER_NS!r}")
            return canonical(rest)
        if name == SHARED_ROOT:
            raise InvalidNameError(f"{SHARED_ROOT!r} holds the shared folders; it is not one")
        return canonical(self.home + name)

    def to_imap(self, store_name: str) -> str:
        owner = user_of(store_name)
        if owner == self.user:
            return INBOX if is_inbox(store_name) else store_name[len(self.home):]
        if owner is not None:
            return store_name[:-len(DELIMITER + INBOX)] if is_inbox(store_name) else store_name
        return SHARED_PREFIX + store_name


def parents(name: str) -> list[str]:
    """`a/b/c` -> [`a`, `a/b`]."""
    parts = name.split(DELIMITER)
    return [DELIMITER.join(parts[:i]) for i in range(1, len(parts))]
