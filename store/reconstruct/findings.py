"""Findings: one value per problem found or action taken."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import EXIT_CORRECTED, EXIT_OK, EXIT_UNCORRECTED

NO_ACTION = "none"

# Every finding kind that is not also a log message code (those are in
# store/logmsg.py): what it means, and what the administrator does about it.
# docs/log-messages.md shows this table; a test keeps it complete.
KINDS: dict[str, str] = {
    "index-missing": "store.idx is missing. A rebuild writes it from the message files.",
    "missing-file": "A record's message file is gone. The rebuild drops the record; restore the "
                    "file from a backup first if the message matters (its UID is never reused).",
    "file-size": "A message file's size differs from its record. The record is rebuilt from "
                 "the file; find out what rewrote the file (message files are never rewritten).",
    "unindexed-file": "A message file no record knows (a delivery cut off, or restored from a "
                      "backup). It is indexed; below UIDNEXT it gets a new UID by a hard link.",
    "exp-missing-file": "store.exp lists a message whose file is already erased. Dropped from "
                        "store.exp; nothing to do.",
    "exp-also-indexed": "A UID is both indexed and expunged. The rebuild keeps it expunged "
                        "(use -e to bring expunged messages back).",
    "exp-removed": "-e removed store.exp: messages expunged but not erased are back.",
    "header-name": "The index header names another mailbox (a directory copied or renamed by "
                   "hand). Put the directory back, or rebuild with -f.",
    "db-missing": "No folder entry for a mailbox in the spool. The rebuild (or -m) adds it "
                  "from the index header.",
    "db-mismatch": "The folder entry disagrees with the index header's copy. The entry is "
                   "rewritten from the header.",
    "quotaroot": "A mailbox's quota root does not contain it. Fix with mboxutil or -q.",
    "mailbox-missing": "A folder entry whose directory is missing. Run reconstruct -m (it "
                       "removes the entry) or restore the directory.",
    "unknown-file": "A file the store does not recognise in a mailbox directory; left alone. "
                    "Move it away if it does not belong there.",
    "temp-file": "A temp file of a write cut off by a crash. A rebuild of the mailbox removes "
                 "it; a check leaves it.",
    "records-salvaged": "The index header was unreadable but records after it verify: their "
                        "flags, dates and modseqs are kept. Nothing to do.",
    "db-added": "-m added a folder entry from the spool.",
    "db-changed": "-m changed a folder entry to match the index header.",
    "db-removed": "-m removed a folder entry whose mailbox is not in the spool.",
    "db-unreadable-header": "-m cannot read a mailbox's index header. Run reconstruct on that "
                            "mailbox first, then -m again.",
    "duplicate-mailbox": "The same mailbox exists on two partitions; left alone. Decide which "
                         "copy is current and move the other away.",
    "quotaroot-wrong": "A folder entry's quota root is wrong. Corrected.",
    "quota-added": "A quota root every mailbox needs was missing. Added with the limit the "
                   "root mailbox's index header keeps, else without one: then set it with "
                   "mboxutil --set-quota if there was one.",
    "quota-limit-changed": "-m found a quota limit in the database that differs from the copy "
                           "in the root mailbox's index header (a crash during mboxutil "
                           "--set-quota, or a database restored from an older snapshot) and "
                           "set it from the header. Check the limit with mboxutil -q.",
    "quota-limit-uncopied": "The root mailbox's index header did not keep the quota limit yet "
                            "(a store from before it did, or a header rebuilt without it). "
                            "-m copies it there; nothing to do.",
    "quota-usage": "A quota root's usage was wrong (or a rebuild changed it). Corrected.",
    "quota-unreadable": "A mailbox's usage could not be counted. Run reconstruct on it, then "
                        "-q again.",
    "lright-added": "A missing lright entry was added from the ACLs.",
    "lright-changed": "An lright entry was corrected from the ACLs.",
    "lright-removed": "An lright entry no ACL supports was removed.",
}


@dataclass(frozen=True)
class Finding:
    mailbox: str
    kind: str
    detail: str
    action: str = NO_ACTION
    fixed: bool = False
    problem: bool = True  # False: reported for information (an unknown file left alone)

    def as_json(self) -> dict:
        return {"mailbox": self.mailbox, "kind": self.kind, "detail": self.detail,
                "action": self.action}

    def line(self) -> str:
        act = "" if self.action == NO_ACTION else f" -> {self.action}"
        return f"{self.mailbox}: {self.detail}{act}"

    def fix(self, action: str) -> Finding:
        return Finding(self.mailbox, self.kind, self.detail, action, True, self.problem)


@dataclass
class Summary:
    mailboxes_checked: int = 0
    mailboxes_with_problems: int = 0
    mailboxes_rebuilt: int = 0
    messages_indexed: int = 0
    messages_checked: int = 0
    db_added: int = 0
    db_removed: int = 0
    db_changed: int = 0
    elapsed_seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        d = asdict(self)
        d.update(d.pop("extra"))
        return d


def exit_code(findings: list[Finding]) -> int:
    problems = [f for f in findings if f.problem]
    if not problems:
        return EXIT_OK
    return EXIT_CORRECTED if all(f.fixed for f in problems) else EXIT_UNCORRECTED
