"""Findings: one value per problem found or action taken."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import EXIT_CORRECTED, EXIT_OK, EXIT_UNCORRECTED

NO_ACTION = "none"


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
