"""The mailbox database: records (schema), envelope (checksums), lmdbfiles
(the files), database (Database, Txn: every lmdb error becomes a store error
there), verify (in a crash-isolated child)."""

from .database import Database, Txn, printable_key  # noqa: F401
from .records import (  # noqa: F401
    DATABASES,
    FOLDER,
    LRIGHT,
    PERUSER,
    QUOTA,
    SUBSCR,
    FolderEntry,
    LrightEntry,
    PeruserEntry,
    QuotaEntry,
    Record,
    SubscrEntry,
)
