"""Every setting of the toolkit: name, default, valid range, description.

Settings live in `<root>/config/store.conf`, one `name = value` per line
(comments with `#`). Only values that differ from the default need to be
there. Partitions are the pattern setting `store.partition.<name>.path`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .errors import SettingError
from .fsutil import write_file_atomic

CONFIG_DIR = "config"
CONFIG_FILE = "store.conf"
DEFAULT_ROOT = "/var/opt/msgstore"
ROOT_ENV = "MSGSTORE_ROOT"
DOMAIN_RE = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
PARTITION_RE = re.compile(r"^store\.partition\.([A-Za-z0-9_-]{1,64})\.path$")


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    kind: str  # "int", "path", "domains" (comma-separated domain names, may be empty)
    description: str
    minimum: int | None = None
    maximum: int | None = None

    def validate(self, raw: str) -> str:
        value = raw.strip()
        if self.kind == "int":
            if not re.fullmatch(r"[0-9]+", value):
                raise SettingError(f"{self.name}: {raw!r} is not a whole number "
                                   f"(valid: {self.minimum}-{self.maximum})")
            n = int(value)
            if (self.minimum is not None and n < self.minimum) or \
                    (self.maximum is not None and n > self.maximum):
                raise SettingError(f"{self.name}: {n} is out of range "
                                   f"(valid: {self.minimum}-{self.maximum})")
            return str(n)
        if self.kind == "cron":
            from .cron import parse
            try:
                parse(value)
            except ValueError as e:
                raise SettingError(f"{self.name}: {e}") from None
            return " ".join(value.split())
        if self.kind == "domains":
            names = [d.strip().lower() for d in value.split(",") if d.strip()]
            for d in names:
                if not DOMAIN_RE.fullmatch(d):
                    raise SettingError(f"{self.name}: {d!r} is not a domain name "
                                       "(valid: comma-separated names such as example.com)")
            return ",".join(names)
        if not value or "\x00" in value or "\n" in value or not value.isprintable() \
                or not is_utf8(value):
            raise SettingError(f"{self.name}: {raw!r} is not a valid path (printable UTF-8)")
        return value


SETTINGS: dict[str, Setting] = {s.name: s for s in [
    Setting("store.root", DEFAULT_ROOT, "path",
            "Store root directory. Read from --store-root, then $MSGSTORE_ROOT, "
            "then this default; not stored in the settings file."),
    Setting("store.partition.primary.path", "partition/primary", "path",
            "Spool directory of partition 'primary' (absolute, or relative to the store root). "
            "Add partitions as store.partition.<name>.path."),
    Setting("local.store.snapshotpath", "dbdata/snapshots", "path",
            "Location of database snapshots: absolute, or relative to the store root."),
    Setting("local.store.snapshotinterval", "1440", "int",
            "Minutes between database snapshots.", 1, 46080),
    Setting("local.store.snapshotdirs", "3", "int",
            "Number of database snapshots kept.", 2, 367),
    Setting("local.store.checkpointinterval", "60", "int",
            "Seconds between database checkpoints by stored (stamp stored.ckp).", 1, 86400),
    Setting("local.store.cleanupinterval", "300", "int",
            "Seconds between stale-reader cleanups by stored (stamp stored.lcu).", 1, 86400),
    Setting("local.store.peruserinterval", "3600", "int",
            "Seconds between per-user flag write-outs by stored (stamp stored.per).", 1, 86400),
    Setting("local.store.expirestart", "23", "int",
            "Hour of the day (0-23) at which stored erases expunged message files.", 0, 23),
    Setting("local.store.groupaccess", "1", "int",
            "1: files are created 0640 and directories 0750 (the store's group may read); "
            "0: 0600 and 0700, as Dovecot. Whatever the umask.", 0, 1),
    Setting("store.quotagraceperiod", "120", "int",
            "Hours during which mail for a user over quota is deferred (the MTA retries) "
            "before it is refused for good (552 5.2.2, deliver exit 77). 0: refuse at once.",
            0, 8760),
    Setting("store.quotawarn", "90", "int",
            "Percent of the quota at which the user gets one warning message in the INBOX "
            "(again only after usage fell below it). 0: no warnings.", 0, 100),
    Setting("service.listenaddr", "127.0.0.1", "path",
            "Address imapd (and popd) listen on; 127.0.0.1 keeps them to this machine."),
    Setting("service.imap.port", "143", "int",
            "imapd's port; 0: no plain IMAP listener.", 0, 65535),
    Setting("service.pop.port", "110", "int",
            "popd's port; 0: no plain POP3 listener.", 0, 65535),
    Setting("service.imap.sslport", "993", "int",
            "imapd's implicit-TLS port (IMAPS); 0, or no certificate: none.", 0, 65535),
    Setting("service.pop.sslport", "995", "int",
            "popd's implicit-TLS port (POP3S); 0, or no certificate: none.", 0, 65535),
    Setting("local.service.tls.certfile", "", "path",
            "PEM certificate (chain) of imapd and popd: absolute, or relative to the store "
            "root. Empty: no TLS (no STARTTLS, no SSL ports), and logins only from loopback."),
    Setting("local.service.tls.keyfile", "", "path",
            "PEM private key of that certificate (empty: in the certificate file)."),
    Setting("local.watcher.enable", "1", "int",
            "1: start-msg launches the watcher, which starts the services and watches them "
            "(local.autorestart); 0: start-msg starts the services alone.", 0, 1),
    Setting("store.enable", "1", "int", "1: start-msg starts stored.", 0, 1),
    Setting("lmtp.enable", "1", "int", "1: start-msg starts lmtpd.", 0, 1),
    Setting("imap.enable", "1", "int", "1: start-msg starts imapd.", 0, 1),
    Setting("pop.enable", "1", "int", "1: start-msg starts popd.", 0, 1),
    Setting("local.autorestart", "0", "int",
            "1: when a store service exits abnormally the watcher restarts every store service "
            "enabled at start, in order (stored first); 0: it only logs the failure.", 0, 1),
    Setting("local.autorestart.timeout", "600", "int",
            "Seconds: a service that fails again within this time of a restart is not "
            "restarted again (as Oracle Messaging Server 8: one restart per period).",
            1, 86400),
    Setting("local.schedule.msprobe", "5,15,25,35,45,55 * * * *", "cron",
            "When the watcher runs msprobe (crontab: minute hour day month weekday).",),
    Setting("local.schedule.msprobe.enable", "1", "int",
            "1: the watcher runs msprobe on local.schedule.msprobe; 0: not (cron or the "
            "systemd timer may).", 0, 1),
    Setting("local.msprobe.coredir", "", "path",
            "Where the system writes core files (e.g. /var/crash); msprobe warns of any there. "
            "Empty: no such check."),
    Setting("local.msprobe.timeout", "10", "int",
            "Seconds msprobe waits for a service's answer before it calls it unresponsive.",
            1, 600),
    Setting("local.msprobe.diskwarn", "90", "int",
            "Percent of space or inodes used at which msprobe warns (partitions, mboxlist, "
            "snapshots, log).", 1, 100),
    Setting("local.msprobe.diskcrit", "95", "int",
            "Percent of space or inodes used at which msprobe reports CRITICAL.", 1, 100),
    Setting("local.lmtp.socket", "run/lmtp", "path",
            "UNIX socket lmtpd listens on (mode 0660): absolute, or relative to the store root."),
    Setting("local.lmtp.port", "0", "int",
            "Loopback TCP port lmtpd also listens on (127.0.0.1); 0: none.", 0, 65535),
    Setting("local.lmtp.workers", "2", "int",
            "lmtpd serving processes (a Python process uses one core; each has its own group "
            "commit). 1: one process.", 1, 64),
    Setting("local.lmtp.domains", "", "domains",
            "Domains whose addresses are delivered (comma-separated); empty: every domain."),
    Setting("local.lmtp.foldcase", "1", "int",
            "1: the local part of an address is folded to lower case (Joe@ is joe); "
            "0: it is taken as written.", 0, 1),
    Setting("local.lmtp.autocreate", "0", "int",
            "1: a user's INBOX is created at the first delivery to it; 0: an address without "
            "an INBOX is refused (550 5.1.1 unknown user).", 0, 1),
    Setting("local.lmtp.lockwait", "5", "int",
            "Seconds a delivery waits for a locked mailbox before it is deferred (451 4.2.0).",
            0, 600),
    Setting("local.lmtp.maxmessagesize", "52428800", "int",
            "Largest message delivered, in bytes; larger ones are refused (552 5.3.4).",
            1024, 2147483647),
    Setting("local.lmtp.duplicatewindow", "0", "int",
            "Seconds during which a second message with the same Message-ID for the same "
            "recipient is not stored again (Cyrus's duplicate suppression); 0: off.", 0, 2592000),
]}


def lookup(name: str) -> Setting:
    if name in SETTINGS:
        return SETTINGS[name]
    m = PARTITION_RE.match(name)
    if m:
        return Setting(name, "", "path", f"Spool directory of partition '{m.group(1)}'.")
    raise SettingError(f"unknown setting {name!r} (configutil -l lists them)")


def config_path(root: str) -> str:
    return os.path.join(root, CONFIG_DIR, CONFIG_FILE)


def _parse(data: bytes, path: str, problems: list[str] | None = None) -> dict[str, str]:
    """The settings of a store.conf. A bad line raises SettingError naming
    file and line; with `problems`, it is noted there and skipped instead
    (configutil -l, which must still list)."""
    values: dict[str, str] = {}

    def bad(lineno: int, why: str) -> None:
        msg = f"{path}:{lineno}: {why}"
        if problems is None:
            raise SettingError(msg)
        problems.append(msg)

    for lineno, raw in enumerate(data.splitlines(), 1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            bad(lineno, f"not UTF-8 text (byte {e.start + 1} of the line)")
            continue
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            bad(lineno, f"expected 'name = value', found {line!r}")
            continue
        name = name.strip()
        try:
            values[name] = lookup(name).validate(value)
        except SettingError as e:  # where, for the administrator who edited the file
            bad(lineno, str(e))
    return values


class Config:
    """The effective settings of one store root."""

    def __init__(self, root: str, values: dict[str, str]):
        self.root = root
        self.values = values

    @classmethod
    def load(cls, root: str, problems: list[str] | None = None) -> Config:
        """The settings of `root`; a bad line raises SettingError, or with
        `problems` is noted there and left out."""
        path = config_path(root)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        return cls(root, _parse(data, path, problems))

    def get(self, name: str) -> str:
        if name == "store.root":
            return self.root
        setting = lookup(name)
        return self.values.get(name, setting.default)

    def get_int(self, name: str) -> int:
        return int(self.get(name))

    def source(self, name: str) -> str:
        if name == "store.root":
            return "command line or environment"
        return "file" if name in self.values else "default"

    def resolve_path(self, name: str) -> str:
        value = self.get(name)
        return value if os.path.isabs(value) else os.path.join(self.root, value)

    def partitions(self) -> dict[str, str]:
        """Partition name -> absolute spool path."""
        names = {"primary"}
        names.update(m.group(1) for n in self.values if (m := PARTITION_RE.match(n)))
        return {p: self.resolve_path(f"store.partition.{p}.path") for p in sorted(names)}

    def names(self) -> list[str]:
        extra = sorted(n for n in self.values if n not in SETTINGS)
        return list(SETTINGS) + extra

    def set(self, name: str, raw: str) -> str:
        """Validate and write one setting atomically; returns the stored value."""
        if name == "store.root":
            raise SettingError("store.root is chosen with --store-root or $MSGSTORE_ROOT, "
                               "not stored in the settings file")
        value = lookup(name).validate(raw)
        values = dict(self.values)
        values[name] = value
        self.save(values)
        self.values = values
        return value

    def save(self, values: dict[str, str]) -> None:
        lines = ["# Message store settings: written by configutil; one 'name = value' per line.\n"]
        lines += [f"{n} = {v}\n" for n, v in sorted(values.items())]
        os.makedirs(os.path.dirname(config_path(self.root)), exist_ok=True)
        write_file_atomic(config_path(self.root), "".join(lines).encode())


def is_utf8(text: str) -> bool:
    """False for text holding bytes that were not UTF-8 (a command line's
    surrogate escapes), which no file or database of the store may hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8, as surrogate escapes
        return False
    return True


def default_root() -> str:
    return os.environ.get(ROOT_ENV) or DEFAULT_ROOT
