"""Expiry rules (Sun's imexpire): where they are, how they read, which apply.

Files named `store.expirerule` hold `rule_name.attribute: value` lines (a
local file may leave out the rule name: `attribute: value`, one rule named
after its file). Where they are is their scope:

  config/store.expirerule                           global: every mailbox
  <partition>/store.expirerule                      a partition's mailboxes
  <a user's INBOX directory>/store.expirerule       that user's mailboxes
  <a folder's directory>/store.expirerule           that folder and its subfolders

Without a global file, the settings `store.expirerule.<attribute>` make one
global rule (Sun: both at once are not supported; the file wins).
`config/expire_exclude_list` lists user ids (one a line, # comments) whose
mailboxes are never expired.

Within a rule the criteria are alternatives (any one expires a message),
except `seen: and` / `deleted: and`, which every expired message must also
meet; `seen: or` / `deleted: or` expire by the flag alone. The rules that
apply to a mailbox are unified the same way (any rule expires a message),
unless one is `exclusive`: then the last exclusive one loaded (global
first, the most local last) applies alone. A message takes the action of
the last applying rule that expires it.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field

from .. import settings
from ..config import Config
from ..errors import UsageError
from ..fsutil import open_nofollow
from .store import pattern_to_regex

RULE_FILE = "store.expirerule"
EXCLUDE_FILE = "expire_exclude_list"
DAY = 86400
ACTIONS = ("discard", "report", "fileinto")
NUMBERS = ("messagedays", "messagecount", "foldersize", "messagesize", "messagesizedays")
ATTRIBUTES = ("folderpattern", "regexp", *NUMBERS, "seen", "deleted", "action", "exclusive")
_FIELD_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 ftext


class RuleError(UsageError):
    """A rule that cannot be read: names its file and line."""


@dataclass
class Rule:
    name: str
    origin: str  # "<file>:<line>" of its first line, or "configutil"
    scope: str | None = None  # a local rule: the directory it applies under
    folderpattern: str = ""  # empty: every mailbox in scope
    regexp: bool = False
    messagedays: int = 0  # 0: not a criterion (each of NUMBERS)
    messagecount: int = 0
    foldersize: int = 0
    messagesize: int = 0
    messagesizedays: int = 0
    seen: str = ""  # "", "and", "or"
    deleted: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)  # (field, value pattern)
    action: str = "discard"
    fileinto: str = ""  # the folder of action fileinto
    exclusive: bool = False
    _pattern: re.Pattern | None = None

    def set(self, attr: str, value: str, where: str) -> None:
        key = attr.lower()
        value = value.strip()
        if key == "folderpattern":
            self.folderpattern = value
            self._pattern = None
        elif key in ("regexp", "exclusive"):
            if value.lower() not in ("0", "1", "yes", "no", "true", "false", "on", "off"):
                raise RuleError(f"{where}: {attr}: {value!r} is not 1 or 0")
            setattr(self, key, value.lower() in ("1", "yes", "true", "on"))
            self._pattern = None
        elif key in NUMBERS:
            if not re.fullmatch(r"[0-9]{1,18}", value):
                raise RuleError(f"{where}: {attr}: {value!r} is not a whole number")
            setattr(self, key, int(value))
        elif key in ("seen", "deleted"):
            if value.lower() not in ("and", "or"):
                raise RuleError(f"{where}: {attr}: {value!r} is not `and` or `or`")
            setattr(self, key, value.lower())
        elif key == "action":
            word, _, folder = value.partition(":")
            word = word.strip().lower()
            if word not in ACTIONS or (word == "fileinto") != bool(folder.strip()):
                raise RuleError(f"{where}: action: {value!r} is not discard, report or "
                                "fileinto:FOLDER")
            self.action, self.fileinto = word, folder.strip()
        elif _FIELD_NAME.fullmatch(attr) and (attr[0].isupper() or key.startswith("x-")):
            if not value:
                raise RuleError(f"{where}: {attr}: an empty header value matches every message")
            self.headers.append((key, value))
        else:
            raise RuleError(f"{where}: unknown attribute {attr!r} (attributes: "
                            f"{', '.join(ATTRIBUTES)}, or a header field spelled with a "
                            "capital, as Subject)")

    def check(self) -> None:
        """The whole rule, once its lines are read."""
        if self.regexp and self.folderpattern:
            try:
                re.compile(self.folderpattern)
            except re.error as e:
                raise RuleError(f"{self.origin}: folderpattern: {self.folderpattern!r} is not a "
                                f"regular expression ({e})") from None
        if not self.criteria():
            raise RuleError(f"{self.origin}: rule {self.name!r} has no criterion (messagedays, "
                            "messagecount, foldersize, messagesize, seen, deleted or a header)")

    def criteria(self) -> bool:
        return bool(self.messagedays or self.messagecount or self.foldersize
                    or self.messagesize or self.seen or self.deleted or self.headers)

    def matches(self, mailbox: str) -> bool:
        """Whether the folder pattern takes `mailbox` (canonical name; an
        INBOX is also tried as `user/<id>` and `user/<id>/inbox`, Sun's names)."""
        if not self.folderpattern:
            return True
        if self._pattern is None:
            self._pattern = (re.compile(self.folderpattern) if self.regexp
                             else pattern_to_regex(self.folderpattern))
        names = [mailbox]
        if mailbox.startswith("user/") and mailbox.endswith("/INBOX") and mailbox.count("/") == 2:
            names += [mailbox[:-6], mailbox[:-5] + "inbox"]
        return any(self._pattern.fullmatch(n) for n in names)


def header_matches(pattern: str, value: str) -> bool:
    """A header value against a rule's: with `*` or `?`, a glob of the whole
    value; otherwise a substring. Case is ignored either way."""
    pattern, value = pattern.lower(), value.lower()
    if "*" in pattern or "?" in pattern:
        return fnmatch.fnmatchcase(value, pattern)
    return pattern in value


def parse(text: str, path: str, *, scope: str | None) -> list[Rule]:
    """The rules of one file, in the order their names first appear."""
    rules: dict[str, Rule] = {}
    default = os.path.basename(os.path.dirname(path)) or path
    for n, line in enumerate(text.splitlines(), 1):
        where = f"{path}:{n}"
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, colon, value = stripped.partition(":")
        if not colon:
            raise RuleError(f"{where}: {stripped!r} is not `rule.attribute: value`")
        key = key.strip()
        rule_name, dot, attr = key.partition(".")
        if not dot:
            if scope is None:
                raise RuleError(f"{where}: {key!r} needs a rule name in the global file "
                                "(Rule1.messagedays: 30)")
            rule_name, attr = default, key
        if not rule_name or not attr:
            raise RuleError(f"{where}: {key!r} is not `rule.attribute`")
        rule = rules.get(rule_name)
        if rule is None:
            rule = rules[rule_name] = Rule(rule_name, where, scope)
        rule.set(attr, value, where)
    out = list(rules.values())
    for rule in out:
        rule.check()
    return out


def read_file(path: str, *, scope: str | None) -> list[Rule]:
    """The rules of a file; none when there is no file. Never through a symlink."""
    try:
        with open_nofollow(path, "rb") as f:
            raw = f.read(1 << 20)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise RuleError(f"{path}: cannot be read ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RuleError(f"{path}: not UTF-8 (byte {e.start})") from None
    return parse(text, path, scope=scope)


def from_settings(config: Config) -> list[Rule]:
    """The global rule the settings `store.expirerule.*` make (none when they
    set no criterion)."""
    rule = Rule("configutil", "configutil")
    for s in settings.EXPIRE_RULE:
        value = config.get(s)
        if value and value not in ("0", "off"):
            rule.set(s.name.rsplit(".", 1)[1], value, f"configutil {s.name}")
    if not rule.criteria():
        return []
    rule.check()
    return [rule]


@dataclass
class RuleSet:
    """Every rule of a store, the local ones read as their directories are met."""

    config_dir: str
    config: Config
    global_rules: list[Rule] = field(default_factory=list)
    excluded: set[str] = field(default_factory=set)
    _local: dict[str, list[Rule]] = field(default_factory=dict)

    @classmethod
    def load(cls, config_dir: str, config: Config) -> RuleSet:
        rules = cls(config_dir, config)
        path = os.path.join(config_dir, RULE_FILE)
        rules.global_rules = (read_file(path, scope=None) if os.path.lexists(path)
                              else from_settings(config))
        rules.excluded = read_exclude_list(os.path.join(config_dir, EXCLUDE_FILE))
        return rules

    def local(self, directory: str) -> list[Rule]:
        if directory not in self._local:
            self._local[directory] = read_file(os.path.join(directory, RULE_FILE),
                                               scope=directory)
        return self._local[directory]

    def for_mailbox(self, mailbox: str, partition_dir: str, mdir: str) -> list[Rule]:
        """The rules that apply to a mailbox, in load order (global first),
        or only the last exclusive one among them."""
        user = mailbox.split("/")[1] if mailbox.startswith("user/") else None
        if user is not None and user in self.excluded:
            return []
        found = [r for r in self.global_rules if r.matches(mailbox)]
        rel = os.path.relpath(mdir, partition_dir)
        dirs = [partition_dir]
        if not rel.startswith(".."):
            parts = rel.split(os.sep)
            # the directories that are mailboxes (`=<name>`), outermost first
            dirs += [os.path.join(partition_dir, *parts[:i + 1])
                     for i, p in enumerate(parts) if p.startswith("=") and i >= 1]
        for d in dirs:
            found += [r for r in self.local(d) if r.matches(mailbox)]
        exclusive = [r for r in found if r.exclusive]
        return exclusive[-1:] if exclusive else found


def read_exclude_list(path: str) -> set[str]:
    try:
        with open_nofollow(path, "rb") as f:
            text = f.read(1 << 20).decode("utf-8", "replace")
    except FileNotFoundError:
        return set()
    return {w for line in text.splitlines()
            if (w := line.split("#", 1)[0].strip())}
