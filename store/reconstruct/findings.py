"""Findings: one value per problem found (and what the repair does about it),
and the registry of every finding kind.

A finding carries the action the repair takes (`action`, imperative: what
`-n` announces as "would ...") and the same action done (`done`), and
whether it was applied. A finding without an action is left to the
administrator; its `done` then says so ("left alone"). Whether a kind is a
problem, what it means and what to do, and which summary count it adds to
are the kind's, in KINDS: docs/log-messages.md is generated from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .. import logmsg
from ..errors import EXIT_CORRECTED, EXIT_OK, EXIT_UNCORRECTED, ProgrammingError

LEFT_ALONE = "left alone"


@dataclass(frozen=True)
class Kind:
    """One kind of finding, as the registry describes it."""

    code: str
    problem: bool  # False: reported for information (an unknown file left alone)
    meaning: str  # what it means, and what the administrator does about it
    counts: str | None = None  # the Summary count it adds to
    log_code: bool = False  # also a message of the log catalogue (logmsg)


KINDS: dict[str, Kind] = {}


def _k(code: str, meaning: str, *, problem: bool = True, counts: str | None = None) -> None:
    KINDS[code] = Kind(code, problem, meaning, counts)


# kinds that are log messages too: their text and action are in the catalogue
for _msg in (logmsg.IDX_MISSING_HEADER, logmsg.IDX_START_BEYOND_EOF, logmsg.IDX_HEADER_CHECKSUM,
             logmsg.IDX_RECORD_CHECKSUM, logmsg.IDX_PARTIAL_RECORD, logmsg.IDX_UID_ORDER,
             logmsg.IDX_UIDNEXT, logmsg.IDX_COUNT_MISMATCH, logmsg.IDX_SIZE_MISMATCH,
             logmsg.CACHE_INVALID, logmsg.EXP_CORRUPT, logmsg.UIDVALIDITY_NEW,
             logmsg.DB_VALUE_CORRUPT):
    KINDS[_msg.code] = Kind(_msg.code, True, _msg.action, None, True)

_k("index-missing", "store.idx is missing. A rebuild writes it from the message files.")
_k("missing-file", "A record's message file is gone. The rebuild drops the record; restore the "
                   "file from a backup first if the message matters (its UID is never reused).")
_k("file-size", "A message file's size differs from its record. The record is rebuilt from "
                "the file; find out what rewrote the file (message files are never rewritten).")
_k("unindexed-file", "A message file no record knows (a delivery cut off, or restored from a "
                     "backup). It is indexed; below UIDNEXT it gets a new UID by a hard link.")
_k("uid-out-of-range", "A message file or store.exp record has a UID above 4294967294 (a "
                       "hostile or damaged source): UIDNEXT could not follow it. The file is "
                       "indexed under a new UID (its old name stays beside: remove it by hand); "
                       "the store.exp record is dropped.")
_k("uids-exhausted", "The mailbox has given every UID: a file below UIDNEXT cannot be indexed. "
                     "Copy the messages into a new mailbox, which starts its UIDs again.")
_k("modseq-out-of-range", "HIGHESTMODSEQ is past RFC 7162's limit (2^63-1, less room for the "
                          "records): new modseqs start from that limit.")
_k("exp-missing-file", "store.exp lists a message whose file is already erased. Dropped from "
                       "store.exp; nothing to do.")
_k("exp-also-indexed", "A UID is both indexed and expunged. The rebuild keeps it expunged "
                       "(use -e to bring expunged messages back).")
_k("exp-removed", "-e removed store.exp: messages expunged but not erased are back.",
   problem=False)
_k("delete-pending", "A delete of the mailbox was cut off (its `store.deleted` mark is there). "
                     "The repair finishes it: the entry and the remaining files go, the mail "
                     "does not come back.")
_k("header-name", "The index header names another mailbox (a directory copied or renamed by "
                  "hand). Put the directory back, or rebuild with -f.")
_k("db-missing", "No folder entry for a mailbox in the spool. The rebuild (or -m) adds it "
                 "from the index header.", counts="db_added")
_k("db-mismatch", "The folder entry disagrees with the index header's copy. The entry is "
                  "rewritten from the header.", counts="db_changed")
_k("quotaroot", "A mailbox's quota root does not contain it. Fix with mboxutil or -q.")
_k("mailbox-missing", "A folder entry whose directory is missing. Run reconstruct -m (it "
                      "removes the entry) or restore the directory.")
_k("unknown-file", "A file the store does not recognise in a mailbox directory; left alone. "
                   "Move it away if it does not belong there.", problem=False)
_k("temp-file", "A temp file of a write cut off by a crash. A rebuild of the mailbox removes "
                "it; a check leaves it.", problem=False)
_k("records-salvaged", "The index header was unreadable but records after it verify: their "
                       "flags, dates and modseqs are kept. Nothing to do.", problem=False)
_k("keywords-lost", "Salvaged records had keywords ($Forwarded, $Junk, ...) whose names were "
                    "in the unreadable header; they are cleared. The system flags are kept.",
   problem=False)
_k("db-added", "-m added a folder entry from the spool.", counts="db_added")
_k("db-changed", "-m changed a folder entry to match the index header.", counts="db_changed")
_k("db-removed", "-m removed a folder entry whose mailbox is not in the spool.",
   counts="db_removed")
_k("db-unreadable-header", "-m cannot read a mailbox's index header. Run reconstruct on that "
                           "mailbox first, then -m again.")
_k("duplicate-mailbox", "The same mailbox exists on two partitions; left alone. Decide which "
                        "copy is current and move the other away.")
_k("quotaroot-wrong", "A folder entry's quota root is wrong. Corrected.", counts="db_changed")
_k("quota-added", "A quota root every mailbox needs was missing. Added with the limit the "
                  "root mailbox's index header keeps, else without one: then set it with "
                  "mboxutil --set-quota if there was one.", counts="db_added")
_k("quota-limit-changed", "-m found a quota limit in the database that differs from the copy "
                          "in the root mailbox's index header (a crash during mboxutil "
                          "--set-quota, or a database restored from an older snapshot) and "
                          "set it from the header. Check the limit with mboxutil -q.",
   counts="db_changed")
_k("quota-limit-uncopied", "The root mailbox's index header did not keep the quota limit yet "
                           "(a store from before it did, or a header rebuilt without it). "
                           "-m copies it there; nothing to do.", problem=False)
_k("quota-usage", "A quota root's usage was wrong (or a rebuild changed it). Corrected.",
   counts="db_changed")
_k("symlink", "A symlink where the store keeps its own file or directory (an index file, a "
              "bucket, a message file, a mailbox directory). The store never reads or writes "
              "through one and reconstruct leaves the mailbox alone: remove the symlink (or "
              "put the real file or directory there), then run reconstruct again.")
_k("content-changed", "reconstruct -G: a message file's bytes no longer match the GUID taken when "
                      "it was delivered (same size, other content: disk or copy damage, or an "
                      "edit). The file is kept and indexed under a new UID; the old UID is "
                      "expunged, so a client never sees two contents under one UID. Compare "
                      "with a backup if the change was not intended.")
_k("other-partition", "A mailbox named with -p PARTITION is on another partition; it was left "
                      "out, as Sun's Administration Guide says. Run reconstruct without -p (or "
                      "with its partition) to check it.", problem=False)
_k("quota-busy", "A quota root's mailboxes were created, deleted or renamed during every one of "
                 "several counts; its usage was left as deliveries keep it. Run reconstruct -q "
                 "again when the store is quieter.", problem=False)
_k("quota-unreadable", "A mailbox's usage could not be counted. Run reconstruct on it, then "
                       "-q again.")
_k("lright-added", "A missing lright entry was added from the ACLs.", counts="db_added")
_k("lright-changed", "An lright entry was corrected from the ACLs.", counts="db_changed")
_k("lright-removed", "An lright entry no ACL supports was removed.", counts="db_removed")


@dataclass(frozen=True)
class Act:
    """An action: as `-n` announces it, and as the repair reports it done."""

    plan: str
    done: str


def advice(text: str) -> Act:
    """No action: the finding is left to the administrator (`text` says how)."""
    return Act("", text)


@dataclass(frozen=True)
class Finding:
    """One problem found (or fact reported) in one mailbox, with what the repair does about it."""

    mailbox: str
    kind: str
    detail: str
    act: Act = Act("", LEFT_ALONE)
    applied: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ProgrammingError(f"finding kind {self.kind!r} is not in the registry")

    @property
    def problem(self) -> bool:
        return KINDS[self.kind].problem

    @property
    def action(self) -> str:
        """What is (or would be) done, as the line and the JSON say it."""
        if not self.act.plan or self.applied:
            return self.act.done
        return f"would {self.act.plan}"

    def as_json(self) -> dict:
        return {"mailbox": self.mailbox, "kind": self.kind, "detail": self.detail,
                "problem": self.problem, "action": self.action, "applied": self.applied}

    def line(self) -> str:
        """The line printed and logged: `mailbox: detail -> action`."""
        return f"{self.mailbox}: {self.detail} -> {self.action}"

    def unapplied(self) -> Finding:
        """The finding as a check reports it: its action announced, not done."""
        return Finding(self.mailbox, self.kind, self.detail, self.act, False)

    def applying(self) -> Finding:
        """The finding with its action done (a finding without one is unchanged)."""
        return Finding(self.mailbox, self.kind, self.detail, self.act, bool(self.act.plan))


@dataclass
class Summary:
    """The counts a run ends with (rendered as the summary line and in --json)."""

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

    def count(self, findings: list[Finding]) -> None:
        """Add each finding to the count its kind names (with -n: what would change)."""
        for f in findings:
            counts = KINDS[f.kind].counts
            if counts:
                setattr(self, counts, getattr(self, counts) + 1)

    def as_json(self) -> dict:
        d = asdict(self)
        d.update(d.pop("extra"))
        return d


def exit_code(findings: list[Finding]) -> int:
    """0 without problems, 1 when every problem was applied, 4 otherwise."""
    problems = [f for f in findings if f.problem]
    if not problems:
        return EXIT_OK
    return EXIT_CORRECTED if all(f.applied for f in problems) else EXIT_UNCORRECTED
