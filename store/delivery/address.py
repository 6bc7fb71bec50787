"""Recipient addresses: `local[+detail]@domain` parsed, checked against the
accepted domains, and mapped to the mailbox that receives the message."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .. import settings
from ..config import Config
from ..errors import InvalidNameError, StoreError
from ..layout import USER_NS, canonical, check_userid

DETAIL_DELIMITER = "+"
# what an MTA passes after RCPT TO: a dot-atom local part (no quoted strings:
# no mailbox name can be made of one safely) and an optional domain
_ADDRESS_RE = re.compile(r"(?P<local>[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+)(?:@(?P<domain>[^@\s]+))?")


class AddressError(StoreError):
    """A recipient that cannot be a mailbox of this store. `permanent`:
    malformed (553 5.1.3) or not ours (550 5.1.2); `unknown`: no such user
    (550 5.1.1)."""

    def __init__(self, message: str, *, reason: str):
        super().__init__(message)
        self.reason = reason  # "bad-address", "not-local", "unknown-user"


@dataclass(frozen=True)
class Recipient:
    address: str  # as the MTA gave it, without angle brackets
    user: str
    detail: str | None
    domain: str | None


@dataclass(frozen=True)
class AddressRules:
    """The settings that decide what an address means."""

    domains: frozenset[str]  # empty: every domain is ours
    foldcase: bool
    autocreate: bool

    @classmethod
    def from_config(cls, config: Config) -> AddressRules:
        domains = config.get(settings.LMTP_DOMAINS)
        return cls(frozenset(d for d in domains.split(",") if d),
                   config.get_bool(settings.LMTP_FOLDCASE),
                   config.get_bool(settings.LMTP_AUTOCREATE))


def parse(address: str, rules: AddressRules) -> Recipient:
    """The recipient an address names, or AddressError."""
    addr = address.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1]
    m = _ADDRESS_RE.fullmatch(addr)
    if not m:
        raise AddressError(f"malformed address <{addr}>", reason="bad-address")
    local, domain = m.group("local"), m.group("domain")
    if domain is None and rules.domains:
        # the MTA decides which domains are ours; an address without one is not its
        raise AddressError(f"<{addr}>: no domain (this store takes "
                           f"{', '.join(sorted(rules.domains))})", reason="not-local")
    if domain is not None:
        domain = domain.lower().rstrip(".")
        if rules.domains and domain not in rules.domains:
            raise AddressError(f"<{addr}>: {domain} is not a domain of this store",
                               reason="not-local")
    user, _, detail = local.partition(DETAIL_DELIMITER)
    if rules.foldcase:  # the user only: a detail names a folder, matched by the agent
        user = user.lower()
    try:
        check_userid(user)
    except InvalidNameError:
        raise AddressError(f"malformed address <{addr}>", reason="bad-address") from None
    if user.startswith(".") or user.endswith("."):
        raise AddressError(f"malformed address <{addr}>", reason="bad-address")
    return Recipient(addr, user, detail or None, domain)


def inbox_of(rcpt: Recipient) -> str:
    return canonical(f"{USER_NS}/{rcpt.user}")


def folder_of(rcpt: Recipient, folder: str) -> str | None:
    """`user/<user>/<folder>`, or None when `folder` is no valid name."""
    try:
        return canonical(f"{USER_NS}/{rcpt.user}/{folder}")
    except InvalidNameError:
        return None
