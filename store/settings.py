"""Every setting of the toolkit as a typed constant: name, default, kind, range, meaning.

Code reads a setting by its constant (`config.get_bool(settings.AUTORESTART)`), never by
its name as a string; the kind validates what `configutil` writes and what
`store.conf` holds. The admin guide's settings table is generated from this table
(`python tools/gen_settings_reference.py`; tests/test_config.py checks they match).
Partitions are the pattern `store.partition.<name>.path` (`partition_setting`).

To add a setting: one constant here (kind, default, range, a description an
administrator can act on), read it through the constant, regenerate the table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from .errors import SettingError

DEFAULT_ROOT = "/var/opt/msgstore"
DOMAIN_RE = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
PARTITION_RE = re.compile(r"^store\.partition\.([A-Za-z0-9_-]{1,64})\.path$")
_TRUE, _FALSE = ("1", "yes", "true", "on"), ("0", "no", "false", "off")


class Kind(StrEnum):
    """What a setting's value is, and so how it is validated."""

    NUMBER = "number"  # a whole number in [minimum, maximum], of `unit`
    DURATION = "duration"  # a whole number of `unit` (seconds, minutes, hours)
    BOOLEAN = "boolean"  # 1 or 0 (yes/no, true/false, on/off are taken and stored as 1/0)
    PERCENT = "percent"  # a whole percentage in [minimum, maximum] (a trailing % is taken)
    PORT = "port"  # a TCP port, 0-65535 (0: no listener)
    ADDRESS = "address"  # an IPv4 or IPv6 address, or a host name
    PATH = "path"  # a file or directory, absolute or relative to the store root
    DOMAINS = "domains"  # comma-separated domain names (may be empty)
    CRON = "cron"  # a crontab schedule: minute hour day month weekday
    CHOICE = "choice"  # one of the words in `choices`
    TEXT = "text"  # printable UTF-8, may be empty


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    kind: Kind
    description: str
    minimum: int | None = None
    maximum: int | None = None
    unit: str = ""  # of a NUMBER or DURATION: "seconds", "minutes", "hours", "bytes"
    choices: tuple[str, ...] = ()  # of a CHOICE
    program: str = ""  # of a CRON: the program a crontab-style value may name after its fields

    def validate(self, raw: str) -> str:
        """The value as stored, or SettingError saying why `raw` is not one."""
        value = raw.strip()
        kind = self.kind
        if kind is Kind.BOOLEAN:
            if value.lower() in _TRUE:
                return "1"
            if value.lower() in _FALSE:
                return "0"
            raise SettingError(f"{self.name}: {raw!r} is not a boolean (valid: 1 or 0)")
        if kind is Kind.PERCENT:
            value = value.removesuffix("%").strip()
        if kind in (Kind.NUMBER, Kind.DURATION, Kind.PERCENT, Kind.PORT):
            low, high = (0, 65535) if kind is Kind.PORT else (self.minimum, self.maximum)
            if not re.fullmatch(r"[0-9]+", value):
                raise SettingError(f"{self.name}: {raw!r} is not a whole number "
                                   f"(valid: {self.valid()})")
            n = int(value)
            if (low is not None and n < low) or (high is not None and n > high):
                raise SettingError(f"{self.name}: {n} is out of range (valid: {self.valid()})")
            return str(n)
        if kind is Kind.CHOICE:
            if value.lower() not in self.choices:
                raise SettingError(f"{self.name}: {raw!r} is not one of {self.valid()}")
            return value.lower()
        if kind is Kind.CRON:
            from .cron import parse
            fields = value.split()
            # the seed writes the program after the schedule (`... * * lib/msprobe`), as a
            # crontab line: taken when it names the program the schedule is for
            if len(fields) == 6 and fields[5].rsplit("/", 1)[-1] == self.program:
                fields = fields[:5]
            try:
                parse(" ".join(fields))
            except ValueError as e:
                raise SettingError(f"{self.name}: {e}") from None
            return " ".join(fields)
        if kind is Kind.DOMAINS:
            names = [d.strip().lower() for d in value.split(",") if d.strip()]
            for d in names:
                if not DOMAIN_RE.fullmatch(d):
                    raise SettingError(f"{self.name}: {d!r} is not a domain name "
                                       "(valid: comma-separated names such as example.com)")
            return ",".join(names)
        if kind is Kind.ADDRESS:
            import ipaddress  # here: only configutil and a settings file with the address pay for it
            try:
                return str(ipaddress.ip_address(value))
            except ValueError:
                if DOMAIN_RE.fullmatch(value.lower()):
                    return value.lower()
            raise SettingError(f"{self.name}: {raw!r} is not an IP address or host name "
                               "(valid: such as 127.0.0.1, ::1 or mail.example.com)")
        if value and ("\x00" in value or "\n" in value or not value.isprintable()
                      or not is_utf8(value)):
            what = "text" if kind is Kind.TEXT else "a valid path"
            raise SettingError(f"{self.name}: {raw!r} is not {what} (printable UTF-8)")
        if not value and (self.default or PARTITION_RE.match(self.name)):
            raise SettingError(f"{self.name}: a path is needed"
                               + (f" (default {self.default})" if self.default else ""))
        return value

    def valid(self) -> str:
        """What the value may be, as the admin guide and error lines say it."""
        if self.kind is Kind.PORT:
            return "0-65535"
        if self.kind in (Kind.NUMBER, Kind.DURATION, Kind.PERCENT):
            unit = "%" if self.kind is Kind.PERCENT else f" {self.unit}" if self.unit else ""
            return f"{self.minimum}-{self.maximum}{unit}"
        if self.kind is Kind.CHOICE:
            return ", ".join(self.choices)
        return {Kind.BOOLEAN: "1 or 0", Kind.ADDRESS: "IP address or host name",
                Kind.PATH: "path", Kind.TEXT: "text", Kind.DOMAINS: "domain names, comma-separated",
                Kind.CRON: "crontab: minute hour day month weekday"}[self.kind]


def is_utf8(text: str) -> bool:
    """False for text holding bytes that were not UTF-8 (a command line's
    surrogate escapes), which no file or database of the store may hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8, as surrogate escapes
        return False
    return True


SETTINGS: dict[str, Setting] = {}


def _s(name: str, default: str, kind: Kind, description: str, minimum: int | None = None,
       maximum: int | None = None, unit: str = "", choices: tuple[str, ...] = (),
       program: str = "") -> Setting:
    s = Setting(name, default, kind, description, minimum, maximum, unit, choices, program)
    if name in SETTINGS:
        raise ValueError(f"setting {name} declared twice")
    SETTINGS[name] = s
    return s


B, D, N, P = Kind.BOOLEAN, Kind.DURATION, Kind.NUMBER, Kind.PORT

ROOT = _s("store.root", DEFAULT_ROOT, Kind.PATH,
          "Store root directory. Read from --store-root, then $MSGSTORE_ROOT, then this default; "
          "not stored in the settings file.")
PRIMARY_PARTITION = _s("store.partition.primary.path", "partition/primary", Kind.PATH,
                       "Spool directory of partition 'primary' (absolute, or relative to the store "
                       "root). Add partitions as store.partition.<name>.path.")
SNAPSHOT_PATH = _s("local.store.snapshotpath", "dbdata/snapshots", Kind.PATH,
                   "Location of database snapshots: absolute, or relative to the store root.")
SNAPSHOT_INTERVAL = _s("local.store.snapshotinterval", "1440", D,
                       "Minutes between database snapshots.", 1, 46080, "minutes")
SNAPSHOT_DIRS = _s("local.store.snapshotdirs", "3", N, "Number of database snapshots kept.", 2, 367)
CHECKPOINT_INTERVAL = _s("local.store.checkpointinterval", "60", D,
                         "Seconds between database checkpoints by stored (stamp stored.ckp).",
                         1, 86400, "seconds")
CLEANUP_INTERVAL = _s("local.store.cleanupinterval", "300", D,
                      "Seconds between stale-reader cleanups by stored (stamp stored.lcu).",
                      1, 86400, "seconds")
PERUSER_INTERVAL = _s("local.store.peruserinterval", "3600", D,
                      "Seconds between per-user flag write-outs by stored (stamp stored.per).",
                      1, 86400, "seconds")
EXPIRE_START = _s("local.store.expirestart", "23", N,
                  "Hour of the day (0-23) at which stored erases expunged message files.", 0, 23)
CLEANUP_AGE = _s("store.cleanupage", "0", D,
                 "Hours an expunged message's file is kept before stored erases it (at "
                 "local.store.expirestart); until then reconstruct -e can bring it back. 0: "
                 "erased at the next erase hour.", 0, 87600, "hours")
GROUP_ACCESS = _s("local.store.groupaccess", "1", B,
                  "1: files are created 0640 and directories 0750 (the store's group may read); "
                  "0: 0600 and 0700, as Dovecot. Whatever the umask.")
QUOTA_GRACE_PERIOD = _s("store.quotagraceperiod", "120", D,
                        "Hours during which mail for a user over quota is deferred (the MTA "
                        "retries) before it is refused for good (552 5.2.2, deliver exit 77). "
                        "0: refuse at once.", 0, 8760, "hours")
QUOTA_WARN = _s("store.quotawarn", "90", Kind.PERCENT,
                "Percent of the quota at which the user gets one warning message in the INBOX "
                "(again only after usage fell below it). 0: no warnings.", 0, 100)
LISTEN_ADDRESS = _s("service.listenaddr", "127.0.0.1", Kind.ADDRESS,
                    "Address imapd (and popd) listen on; 127.0.0.1 keeps them to this machine.")
IMAP_PORT = _s("service.imap.port", "143", P, "imapd's port; 0: no plain IMAP listener.")
POP_PORT = _s("service.pop.port", "110", P, "popd's port; 0: no plain POP3 listener.")
IMAP_SSL_PORT = _s("service.imap.sslport", "993", P,
                   "imapd's implicit-TLS port (IMAPS); 0, or no certificate: none.")
IMAP_MAX_SESSIONS = _s("service.imap.maxsessions", "1000", N,
                       "IMAP sessions imapd serves at once; more are answered BYE [UNAVAILABLE] "
                       "and logged. imapd raises its descriptor limit to about 3 a session.",
                       1, 1000000)
POP_MAX_SESSIONS = _s("service.pop.maxsessions", "600", N,
                      "POP3 sessions popd serves at once (Sun's default); more are answered "
                      "-ERR [SYS/TEMP] and logged.", 1, 1000000)
POP_SSL_PORT = _s("service.pop.sslport", "995", P,
                  "popd's implicit-TLS port (POP3S); 0, or no certificate: none.")
TLS_CERT_FILE = _s("local.service.tls.certfile", "", Kind.PATH,
                   "PEM certificate (chain) of imapd and popd: absolute, or relative to the store "
                   "root. Empty: no TLS (no STARTTLS, no SSL ports), and logins only from loopback.")
TLS_KEY_FILE = _s("local.service.tls.keyfile", "", Kind.PATH,
                  "PEM private key of that certificate (empty: in the certificate file).")
TLS_PROFILE = _s("local.service.tls.profile", "intermediate", Kind.CHOICE,
                 "TLS versions and ciphers of imapd and popd, as Mozilla's server profiles: "
                 "intermediate (TLS 1.2 with forward-secret AEAD suites only, and TLS 1.3); "
                 "modern (TLS 1.3 only).", choices=("intermediate", "modern"))
MAX_MAILBOXES = _s("local.user.maxmailboxes", "1000", N,
                   "Mailboxes one user may have (the INBOX and every folder, as Cyrus's "
                   "X-NUM-FOLDERS); a CREATE past it is refused (IMAP NO [LIMIT]). "
                   "0: no limit. Administrators' commands (mboxutil) are not limited.",
                   0, 10000000)
MAX_SUBSCRIPTIONS = _s("local.user.maxsubscriptions", "1000", N,
                       "Subscriptions one user may hold; a SUBSCRIBE past it is refused (IMAP NO "
                       "[LIMIT]). 0: no limit.", 0, 10000000)
WATCHER_ENABLE = _s("local.watcher.enable", "1", B,
                    "1: start-msg launches the watcher, which starts the services and watches "
                    "them (local.autorestart); 0: start-msg starts the services alone.")
WATCHER_PORT = _s("local.watcher.port", "49994", P,
                  "Loopback TCP port where the watcher answers `status` (Sun's port); requests "
                  "that change something come only over its socket run/watcher. 0: none.")
STORE_ENABLE = _s("store.enable", "1", B, "1: start-msg starts stored.")
LMTP_ENABLE = _s("lmtp.enable", "1", B, "1: start-msg starts lmtpd.")
IMAP_ENABLE = _s("imap.enable", "1", B, "1: start-msg starts imapd.")
POP_ENABLE = _s("pop.enable", "1", B, "1: start-msg starts popd.")
AUTORESTART = _s("local.autorestart", "0", B,
                 "1: when a store service exits abnormally the watcher restarts every store "
                 "service enabled at start, in order (stored first); 0: it only logs the failure.")
AUTORESTART_TIMEOUT = _s("local.autorestart.timeout", "600", D,
                         "Seconds: the period in which a service is restarted at most "
                         "local.autorestart.count times; failing more often in it, it is left "
                         "stopped.", 1, 86400, "seconds")
AUTORESTART_COUNT = _s("local.autorestart.count", "2", N,
                       "Restarts of a failed service within local.autorestart.timeout (Sun 6.3: "
                       "up to two; Oracle Messaging Server 8: one).", 1, 100)
MSPROBE_SCHEDULE = _s("local.schedule.msprobe", "5,15,25,35,45,55 * * * *", Kind.CRON,
                      "When the watcher runs msprobe (crontab: minute hour day month weekday; "
                      "the seed's `... lib/msprobe` is taken too).", program="msprobe")
MSPROBE_SCHEDULE_ENABLE = _s("local.schedule.msprobe.enable", "1", B,
                             "1: the watcher runs msprobe on local.schedule.msprobe; 0: not "
                             "(cron or the systemd timer may).")
MSPROBE_COREDIR = _s("local.msprobe.coredir", "", Kind.PATH,
                     "Where the system writes core files (e.g. /var/crash); msprobe warns of any "
                     "there. Empty: no such check.")
MSPROBE_TIMEOUT = _s("local.msprobe.timeout", "10", D,
                     "Seconds msprobe waits for a service's answer before it calls it "
                     "unresponsive.", 1, 600, "seconds")
MSPROBE_PROMETHEUS_GROUP = _s("local.msprobe.prometheusgroup", "", Kind.TEXT,
                              "Group that may read msprobe's --prometheus file (node_exporter's, "
                              "e.g. prometheus): the file is made 0640 and given that group. "
                              "Empty: as written (the store's user only).")
MSPROBE_DISKWARN = _s("local.msprobe.diskwarn", "90", Kind.PERCENT,
                      "Percent of space or inodes used at which msprobe warns (partitions, "
                      "mboxlist, snapshots, log).", 1, 100)
MSPROBE_DISKCRIT = _s("local.msprobe.diskcrit", "95", Kind.PERCENT,
                      "Percent of space or inodes used at which msprobe reports CRITICAL.", 1, 100)
LMTP_SOCKET = _s("local.lmtp.socket", "run/lmtp", Kind.PATH,
                 "UNIX socket lmtpd listens on (mode 0660): absolute, or relative to the store "
                 "root.")
LMTP_PORT = _s("local.lmtp.port", "0", P,
               "Loopback TCP port lmtpd also listens on (127.0.0.1); 0: none.")
LMTP_WORKERS = _s("local.lmtp.workers", "2", N,
                  "lmtpd serving processes (a Python process uses one core; each has its own "
                  "group commit). 1: one process.", 1, 64)
LMTP_DOMAINS = _s("local.lmtp.domains", "", Kind.DOMAINS,
                  "Domains whose addresses are delivered (comma-separated); empty: every domain.")
LMTP_FOLDCASE = _s("local.lmtp.foldcase", "1", B,
                   "1: the local part of an address is folded to lower case (Joe@ is joe); "
                   "0: it is taken as written.")
LMTP_AUTOCREATE = _s("local.lmtp.autocreate", "0", B,
                     "1: a user's INBOX is created at the first delivery to it; 0: an address "
                     "without an INBOX is refused (550 5.1.1 unknown user).")
POLICY_ENABLE = _s("local.policy.enable", "0", B,
                    "1: start-msg starts policyd, which answers Postfix's check_policy_service "
                    "at RCPT time (unknown users, full quota roots) before mail is queued.")
POLICY_SOCKET = _s("local.policy.socket", "run/policy", Kind.PATH,
                   "UNIX socket policyd listens on (mode 0660): absolute, or relative to the "
                   "store root.")
POLICY_PORT = _s("local.policy.port", "0", P,
                 "Loopback TCP port policyd also listens on (127.0.0.1); 0: none.")
LMTP_MAX_SESSIONS = _s("local.lmtp.maxsessions", "200", N,
                       "LMTP connections each lmtpd worker serves at once; more are answered "
                       "421 4.3.2 (the MTA retries) and logged.", 1, 100000)
LMTP_LOCKWAIT = _s("local.lmtp.lockwait", "5", D,
                   "Seconds a delivery waits for a locked mailbox before it is deferred "
                   "(451 4.2.0).", 0, 600, "seconds")
LMTP_MAX_MESSAGE_SIZE = _s("local.lmtp.maxmessagesize", "52428800", N,
                           "Largest message delivered; larger ones are refused (552 5.3.4).",
                           1024, 2147483647, "bytes")
LMTP_DUPLICATE_WINDOW = _s("local.lmtp.duplicatewindow", "0", D,
                           "Seconds during which a second message with the same Message-ID for "
                           "the same recipient is not stored again (Cyrus's duplicate "
                           "suppression); 0: off.", 0, 2592000, "seconds")


def _expire(attr: str, default: str, kind: Kind, description: str, *rest) -> Setting:
    return _s(f"store.expirerule.{attr}", default, kind,
              description + " (the global expiry rule of configutil; unused when "
              "config/store.expirerule exists)", *rest)


EXPIRE_FOLDERPATTERN = _expire(
    "folderpattern", "", Kind.TEXT, "Mailboxes the rule expires in: IMAP pattern (user/%/Trash) "
    "or, with regexp, a regular expression; empty: every mailbox")
EXPIRE_REGEXP = _expire("regexp", "0", B, "1: folderpattern is a regular expression")
EXPIRE_MESSAGEDAYS = _expire("messagedays", "0", N, "Days after arrival a message is expired; "
                             "0: not a criterion", 0, 1000000, "days")
EXPIRE_MESSAGECOUNT = _expire("messagecount", "0", N, "Most messages a folder keeps (the oldest "
                              "go); 0: none", 0, 100000000)
EXPIRE_FOLDERSIZE = _expire("foldersize", "0", N, "Most bytes a folder keeps (the oldest "
                            "messages go); 0: none", 0, 1 << 50, "bytes")
EXPIRE_MESSAGESIZE = _expire("messagesize", "0", N, "Messages larger are expired after "
                             "messagesizedays; 0: none", 0, 1 << 40, "bytes")
EXPIRE_MESSAGESIZEDAYS = _expire("messagesizedays", "0", N, "Days an over-sized message stays "
                                 "(grace)", 0, 1000000, "days")
EXPIRE_SEEN = _expire("seen", "off", Kind.CHOICE, "and: only \\Seen messages expire; or: "
                      "\\Seen ones expire whatever else", None, None, "", ("off", "and", "or"))
EXPIRE_DELETED = _expire("deleted", "off", Kind.CHOICE, "and: only \\Deleted messages expire; "
                         "or: \\Deleted ones expire whatever else", None, None, "",
                         ("off", "and", "or"))
EXPIRE_ACTION = _expire("action", "discard", Kind.CHOICE, "What happens to an expired message: "
                        "discard (expunged), report (listed only)", None, None, "",
                        ("discard", "report"))
EXPIRE_RULE = (EXPIRE_FOLDERPATTERN, EXPIRE_REGEXP, EXPIRE_MESSAGEDAYS, EXPIRE_MESSAGECOUNT,
               EXPIRE_FOLDERSIZE, EXPIRE_MESSAGESIZE, EXPIRE_MESSAGESIZEDAYS, EXPIRE_SEEN,
               EXPIRE_DELETED, EXPIRE_ACTION)

ENABLE = {"store": STORE_ENABLE, "lmtp": LMTP_ENABLE, "imap": IMAP_ENABLE, "pop": POP_ENABLE,
          "policy": POLICY_ENABLE}
PORTS = {"imap": (IMAP_PORT, IMAP_SSL_PORT), "pop": (POP_PORT, POP_SSL_PORT)}


def partition_setting(partition: str) -> Setting:
    """The spool setting of a partition (`store.partition.<name>.path`)."""
    name = f"store.partition.{partition}.path"
    return SETTINGS.get(name) or lookup(name)


# Oracle Communications Messaging Server 8's names for settings the seeds name otherwise:
# taken everywhere a name is (configutil, store.conf), and stored under the seed's name
ALIASES = {"watcher.enable": "local.watcher.enable",
           "base.autorestart.enable": "local.autorestart",
           "base.autorestart.timeout": "local.autorestart.timeout",
           "schedule.task:msprobe.crontab": "local.schedule.msprobe",
           "schedule.task:msprobe.enable": "local.schedule.msprobe.enable"}


def lookup(name: str) -> Setting:
    """The setting of a name (or of an Oracle 8 alias), or SettingError."""
    if name in SETTINGS:
        return SETTINGS[name]
    if name in ALIASES:
        return SETTINGS[ALIASES[name]]
    m = PARTITION_RE.match(name)
    if m:
        return Setting(name, "", Kind.PATH, f"Spool directory of partition '{m.group(1)}'.")
    raise SettingError(f"unknown setting {name!r} (configutil -l lists them)")
