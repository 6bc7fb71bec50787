"""The mailbox API every command uses: Store (store.py) as a facade over
lifecycle.py (create, delete, rename), messages.py (append, flags,
expunge, erase), acl.py (ACLs and lright) and quota.py (roots, usage, the
one recount, limits)."""

from .acl import ALL_RIGHTS  # noqa: F401
from .messages import FlagMode, Incoming, bucket_of, message_path  # noqa: F401
from .quota import (  # noqa: F401
    mailbox_usage,
    quota_add,
    quota_root_for,
    quota_root_mailbox,
    root_mailboxes,
)
from .store import MailboxInfo, Store, pattern_to_regex  # noqa: F401
from .uidranges import MAX_UID, UidRanges  # noqa: F401
