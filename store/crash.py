"""Named crash points: a kill -9 at a known step, for tests that must not
depend on timing.

A test sets `MSGSTORE_CRASHPOINT=append:after-file-sync` (optionally
`...@N`: the Nth time the point is reached) in a child's environment; the
code calls `crashpoint("append:after-file-sync")` at that step, and the
process ends there with `os._exit(CRASH_EXIT)` -- no `finally`, no atexit,
no flush, as a SIGKILL would leave it. Unarmed, a call costs one comparison
(the variable is read once, at import).

Every name is declared in POINTS with the step it stands for; a test
checks that each declared point is called somewhere and each call is
declared (docs/reliability.md lists them).
"""

from __future__ import annotations

import os

ENV = "MSGSTORE_CRASHPOINT"
CRASH_EXIT = 86  # a process that stopped at its crash point (tests check for it)

POINTS: dict[str, str] = {
    "append:after-file-sync": "message files written and synced, index not yet touched",
    "append:after-records": "index records appended, header not yet updated",
    "append:after-header": "index header updated, database usage not yet added",
    "create:after-index": "a new mailbox's index written, its database entry not yet",
    "delete:after-mark": "a delete's mark (store.deleted) written, nothing removed yet",
    "delete:after-index": "a deleted mailbox's index removed, its database entry not yet",
    "rename:after-journal": "a rename's journal written, the directory not yet moved",
    "rename:after-move": "a renamed mailbox's directory moved, its index and entry not yet",
    "expunge:after-exp": "expunged records added to store.exp, still in the index too",
    "expunge:after-index": "the index rewritten without them, quota usage not yet lowered",
    "move:after-journal": "an administrator's move journalled (store.move), nothing copied yet",
    "move:after-copy": "a batch of a move copied into the target, the originals still there",
    "move:after-expunge": "a move's originals expunged, its journal not yet removed",
    "resync:after-folders": "reconstruct -m: folder entries written, quota roots and usage not yet",
    "resync:after-quota-roots": "reconstruct -m/-q: quota roots and index copies written, usage "
                                "not yet recounted",
    "batch:before-replace": "a batch of replacements (reconstruct) written and synced, none swapped in",
    "batch:after-replace": "one file of a batch swapped in (@N: the Nth), the rest not yet",
    "snapshot:after-copy": "database copied into the snapshot's temp folder, not yet renamed",
    "snapshot:after-rename": "snapshot folder in place, old snapshots not yet pruned",
    "import:before-uidnext": "imsimport stored a folder's messages, its UIDNEXT not yet",
    "restore:before-finish": "imsrestore stored a mailbox's messages; flags, UIDNEXT, \\Seen and "
                             "quota limit not yet",
}


def _armed() -> tuple[str, int] | None:
    raw = os.environ.get(ENV, "")
    if not raw:
        return None
    name, _, nth = raw.partition("@")
    return name, int(nth) if nth.isdigit() and int(nth) > 0 else 1


_ARMED = _armed()
ARMED = _ARMED is not None  # for a step that must flush what a kill would leave
_hits = 0


def crashpoint(name: str) -> None:
    """End the process here when the environment names this point."""
    if _ARMED is None or _ARMED[0] != name:
        return
    global _hits
    _hits += 1
    if _hits >= _ARMED[1]:
        os.write(2, f"crashpoint {name}\n".encode())
        os._exit(CRASH_EXIT)
