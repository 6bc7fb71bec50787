"""The catalogue of messages an administrator acts on.

Each entry: stable wording (a format string), severity, and the action it
calls for. docs/log-messages.md is generated from it (tools/gen_log_reference.py);
a test keeps the two in step. Where the log goes is logsetup's business.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass


@dataclass(frozen=True)
class Msg:
    code: str
    level: int
    text: str
    action: str

    def format(self, **kw) -> str:
        return self.text.format(**kw)


_ALL: dict[str, Msg] = {}


def _m(code: str, level: int, text: str, action: str) -> Msg:
    msg = Msg(code, level, text, action)
    _ALL[code] = msg
    return msg


IDX_MISSING_HEADER = _m(
    "idx-missing-header", logging.ERROR, "Mailbox corrupted, missing fixed headers: {mailbox}",
    "Run `reconstruct {mailbox}`.")
IDX_START_BEYOND_EOF = _m(
    "idx-start-beyond-eof", logging.ERROR, "Mailbox corrupted, start_offset beyond EOF: {mailbox}",
    "Run `reconstruct {mailbox}`.")
IDX_HEADER_CHECKSUM = _m(
    "idx-header-checksum", logging.ERROR,
    "Mailbox corrupted, bad header checksum (expected {expected:08x}, found {found:08x}): {mailbox}",
    "Run `reconstruct {mailbox}`.")
IDX_RECORD_CHECKSUM = _m(
    "idx-record-checksum", logging.ERROR,
    "Mailbox corrupted, bad checksum in record {recno} at offset {offset} "
    "(expected {expected:08x}, found {found:08x}): {mailbox}",
    "Run `reconstruct {mailbox}`.")
IDX_PARTIAL_RECORD = _m(
    "idx-partial-record", logging.ERROR,
    "Mailbox corrupted, {extra} trailing bytes after the last record at offset {offset}: {mailbox}",
    "Run `reconstruct {mailbox}`.")
IDX_UID_ORDER = _m(
    "idx-uid-order", logging.ERROR,
    "Mailbox corrupted, UIDs out of order at record {recno} (uid {uid} after {prev}): {mailbox}",
    "Run `reconstruct {mailbox}`.")
IDX_UIDNEXT = _m(
    "idx-uidnext", logging.ERROR,
    "Mailbox corrupted, UIDNEXT {uidnext} not above highest UID {uid}: {mailbox}",
    "Run `reconstruct {mailbox}`.")
IDX_COUNT_MISMATCH = _m(
    "idx-count-mismatch", logging.ERROR,
    "Mailbox corrupted, header says {expected} messages but {found} records found: {mailbox}",
    "Run `reconstruct {mailbox}`.")
IDX_SIZE_MISMATCH = _m(
    "idx-size-mismatch", logging.ERROR,
    "Mailbox corrupted, header says {expected} bytes but records add up to {found}: {mailbox}",
    "Run `reconstruct {mailbox}`.")
IDX_ROLLED_FORWARD = _m(
    "idx-rolled-forward", logging.WARNING,
    "Mailbox {mailbox}: completed an interrupted append ({adopted} records adopted, "
    "{dropped} torn bytes cut off)",
    "None needed. If it repeats, look for crashes of the delivering process.")
CACHE_INVALID = _m(
    "cache-invalid", logging.ERROR,
    "Invalid cache data for msg {uid} in mailbox {mailbox}. Needs reconstruct",
    "Run `reconstruct {mailbox}`.")
EXP_CORRUPT = _m(
    "exp-corrupt", logging.ERROR,
    "Mailbox corrupted, bad store.exp ({detail}): {mailbox}",
    "Run `reconstruct {mailbox}`; `-e` discards store.exp and brings expunged messages back.")
MSG_UNPARSABLE = _m(
    "msg-unparsable", logging.WARNING,
    "Message {uid} in mailbox {mailbox} has an unreadable header; indexed with what could be read",
    "None needed: the message is stored byte-identical. Inspect it with `imcheck -m {mailbox} -c {uid}`.")
UIDVALIDITY_NEW = _m(
    "uidvalidity-new", logging.WARNING,
    "Mailbox {mailbox}: UIDVALIDITY lost with its index and database entry; new value "
    "{uidvalidity}",
    "None possible: IMAP clients will resynchronise this mailbox. Check why both copies were lost.")
RECONSTRUCT_FINDING = _m(
    "reconstruct", logging.WARNING, "reconstruct: {line}",
    "Read the line: `MAILBOX: what was found -> what was done`. `-> would ...` means found and "
    "not changed (a -n run); `-> left alone` (or advice) means reconstruct leaves it to the "
    "administrator; anything else was done. The finding kinds are listed below.")
SNAPSHOT_TAKEN = _m(
    "snapshot-taken", logging.INFO, "Database snapshot {name} taken and verified ({bytes} bytes)",
    "None.")
SNAPSHOT_SUSPECT = _m(
    "snapshot-suspect", logging.ERROR,
    "Database snapshot {name} failed verification ({reason}); kept as suspect, older snapshots "
    "kept. Run imdbverify, then reconstruct -m",
    "The live database is probably damaged: run `imdbverify`; restart stored to recover it, or "
    "run `reconstruct -m`. The suspect copy is never restored.")
SNAPSHOT_SPACE = _m(
    "snapshot-space", logging.WARNING,
    "Only {free} bytes free where snapshots live ({path}); advice is five times the database "
    "({need} bytes)",
    "Free space, or move local.store.snapshotpath to a larger (preferably separate) disk.")
DB_DAMAGED = _m(
    "db-damaged", logging.WARNING, "Database check failed: {reason}",
    "None: stored recovers it automatically; read the lines that follow.")
DB_RECOVER_SNAPSHOT = _m(
    "db-recover-snapshot", logging.WARNING,
    "Recovering database from snapshot. Run reconstruct -m soon after startup to resync "
    "redundant data",
    "stored brings the restored database up to date from the spool right after it is ready "
    "(`Database resync from the spool` lines follow); run `reconstruct -m` after that to "
    "confirm, and `reconstruct -q`.")
DB_SNAPSHOT_SKIPPED = _m(
    "db-snapshot-skipped", logging.WARNING, "Snapshot {name} not used: {why}",
    "None; an older snapshot is tried.")
DB_RECOVER_EMPTY = _m(
    "db-recover-empty", logging.WARNING,
    "No usable snapshot: database rebuilt from the spool. Run reconstruct -m soon after startup "
    "to resync redundant data",
    "Run `reconstruct -m` and `reconstruct -q` after startup; set quota limits again "
    "(`mboxutil --set-quota`), they are not kept in the spool.")
DB_REMOVED_COPY = _m(
    "db-removed-copy", logging.WARNING, "Damaged database moved to {path}",
    "Keep it for diagnosis; it is replaced at most once a week.")
DB_REMOVED_KEPT = _m(
    "db-removed-kept", logging.WARNING,
    "Damaged database discarded: the copy in {path} is less than a week old and is kept",
    "None.")
DB_RECOVERY_FAILED = _m(
    "db-recovery-failed", logging.CRITICAL,
    "Database recovery failed ({error}): the damaged database is back in place, untouched",
    "Fix what the error names, then start stored again (it tries the recovery again); "
    "`imdbverify -l` lists the snapshots.")
DB_RESYNC = _m(
    "db-resync", logging.WARNING, "Database resync from the spool: {line}",
    "None; for the record. Each change is the `reconstruct` line logged just before.")
STORED_READY = _m(
    "stored-ready", logging.INFO, "stored ready (pid {pid}) in {seconds:.1f} s", "None.")
STORED_STOPPED = _m(
    "stored-stopped", logging.INFO, "stored stopped (pid {pid})", "None.")
STORED_REBUILD_UNFINISHED = _m(
    "stored-rebuild-unfinished", logging.WARNING,
    "A rebuild of the database from the spool was cut off; finishing it before readiness",
    "None: stored finishes it. If stored was killed, find out why (the journal).")
STORED_STOPPED_STARTING = _m(
    "stored-stopped-starting", logging.WARNING, "stored {why}",
    "None: start stored again when you want it; it finishes what was cut off before READY.")
FD_LIMIT_LOW = _m(
    "fd-limit-low", logging.WARNING,
    "{service}: Not enough file descriptors for {sessions} sessions ({setting}): the limit is "
    "{limit}. Recommend ulimit -n {need}",
    "Raise it: LimitNOFILE={need} in the service's systemd unit (or `ulimit -n {need}` before "
    "start-msg), or lower {setting}. Until then connections past the limit are refused "
    "(connection-refused lines).")
CONNECTION_REFUSED = _m(
    "connection-refused", logging.WARNING,
    "{service}: connection from {peer} refused: {reason}",
    "The client was told to try later. Many of these: raise {setting} or the descriptor limit "
    "(fd-limit-low says how far).")
MAILBOX_REFUSED_DAMAGED = _m(
    "mailbox-refused-damaged", logging.ERROR,
    "{service}: mailbox {mailbox} refused to {user}: damaged ({error})",
    "Run `reconstruct {mailbox}` (it repairs what it can read and says what it did); the "
    "user's client gets the mailbox again at once. msprobe reports these lines as errors.")
QUOTA_TEMPLATE_BAD = _m(
    "quota-template-bad", logging.WARNING,
    "quota warning template {path} not used: {error}; the built-in text was sent",
    "Fix the file: a whole message in UTF-8, with only {root}, {used}, {limit}, {percent} and "
    "{date} in braces (write {{ and }} for a brace).")
INTERNAL_ERROR = _m(
    "internal-error", logging.CRITICAL,
    "{program}: internal error {error_type}: {error}; traceback: {traceback}",
    "A bug: the operation stopped where the traceback shows, and what it had not finished was "
    "not committed. Report this line. Then run `reconstruct -r -n` to see whether anything "
    "needs repair.")
LOG_UNWRITABLE = _m(
    "log-unwritable", logging.WARNING,
    "log {path} cannot be written ({error}): logging to standard error",
    "On a read-only store, nothing: read-only commands work and log there. Otherwise fix "
    "what the error names (permissions of log/, free space) so that the log is kept.")
STORED_FAILED = _m(
    "stored-failed", logging.ERROR, "stored failed and stopped: {error}",
    "Fix what the error names (the snapshot path, permissions, free space, a damaged "
    "database that could not be recovered) and start stored again. Until it is ready, "
    "deliveries are refused (the MTA retries).")
STORED_RELOAD_FAILED = _m(
    "stored-reload-failed", logging.ERROR,
    "Settings not reloaded, the running settings are kept: {error}",
    "Correct the line the message names (`configutil -o NAME -v VALUE` validates), then reload "
    "again.")
STORED_RESYNC_PENDING = _m(
    "stored-resync-pending", logging.WARNING,
    "Database resync from the spool pending since a snapshot was restored; it runs now",
    "None: stored runs the resync (again) at every start until it has completed.")
INDEXES_UPGRADED = _m(
    "indexes-upgraded", logging.INFO,
    "Upgraded the index files of {count} mailboxes to format version {version}, in place",
    "Nothing to do: older versions stay readable; this runs once after an upgrade of the "
    "software.")
UPGRADE_SKIPPED = _m(
    "upgrade-skipped", logging.WARNING,
    "Index of {mailbox} not upgraded to the current format: {error}",
    "The mailbox keeps working: the old format is read, and its next change writes the new "
    "one. stored tries again in a minute; if the error says damaged, run "
    "`reconstruct {mailbox}`.")
EXPIRE_SKIPPED = _m(
    "expire-skipped", logging.ERROR,
    "Expunged message files of {mailbox} not erased: {error}",
    "Run `reconstruct {mailbox}`; the other mailboxes were erased, this one is tried again at "
    "the next erase.")
STORED_JOB_FAILED = _m(
    "stored-job-failed", logging.ERROR, "stored: {job} failed: {error}",
    "Read the error; the job is retried at its next interval.")
MAILBOX_CREATED = _m(
    "mailbox-created", logging.INFO, "Created mailbox {mailbox} on partition {partition}",
    "None.")
MAILBOX_DELETED = _m(
    "mailbox-deleted", logging.INFO, "Deleted mailbox {mailbox}", "None.")
MAILBOX_RENAMED = _m(
    "mailbox-renamed", logging.INFO, "Renamed mailbox {old} to {new} on partition {partition}",
    "None.")
RENAME_FINISHED = _m(
    "rename-finished", logging.WARNING,
    "Rename of {old} to {new} was cut off; finished from its journal",
    "None: the mailboxes are under their new names. If it repeats, look for what kills mboxutil.")
RENAME_FORGOTTEN = _m(
    "rename-forgotten", logging.WARNING,
    "Rename of {old} to {new} was cut off before anything moved; nothing to finish",
    "None: the mailboxes are under their old names; run the rename again if it is wanted.")
DB_MAP_GROWN = _m(
    "db-map-grown", logging.WARNING,
    "Mailbox database map full; grown from {old} to {new} bytes",
    "None needed; watch the free space of the file system holding mboxlist/.")
DB_VALUE_CORRUPT = _m(
    "db-value-corrupt", logging.ERROR,
    "Database value corrupted in {db} key {key!r}: {detail}. Run reconstruct -m",
    "Run `reconstruct -m` (and `reconstruct -l` for lright).")
DB_UNUSABLE = _m(
    "db-unusable", logging.ERROR,
    "Mailbox database {path} is damaged ({detail}); stored recovers it from the best snapshot "
    "when it starts; or restore one (imdbverify -l, imdbverify --restore NAME), or move "
    "data.mdb aside and run reconstruct -m and reconstruct -q to rebuild it from the spool",
    "Start stored (it verifies the database, sets the damaged one aside and recovers from the "
    "best snapshot, else from the spool), or do one of the steps the message names by hand. "
    "Mail is not lost: deliveries are refused (the MTA retries) until it is repaired.")
QUOTA_UNCOUNTED = _m(
    "quota-uncounted", logging.WARNING,
    "Quota root {root}: usage of {mailbox} not counted ({error})",
    "Run `reconstruct {mailbox}`, then `reconstruct -q` to count it again.")
EXPUNGED_ERASED = _m(
    "expunged-erased", logging.INFO, "Erased {count} expunged message files in {mailbox}", "None.")

MAILBOX_EXPIRED = _m(
    "mailbox-expired", logging.INFO,
    "Expired in {mailbox}: {discarded} discarded, {filed} filed, {reported} reported",
    "None; the expiry rules (store.expirerule) chose them. `imexpire -n` shows what the "
    "next run would take.")
EXPIRE_FAILED = _m(
    "expire-failed", logging.ERROR, "Expiry of {mailbox} failed: {error}",
    "Act on the error (run `reconstruct {mailbox}` for damage); the other mailboxes were "
    "expired, this one is tried again at the next run.")
EXPIRE_RULES_BAD = _m(
    "expire-rules-bad", logging.ERROR, "Expiry rules not applied: {error}",
    "Mend the line named (`imexpire -n` checks the rules); nothing was expired, expunged "
    "files were still erased.")
MOVE_FINISHED = _m(
    "move-finished", logging.WARNING,
    "A move of {count} messages from {source} to {target} cut off earlier was finished",
    "None; each message is in {target} once and no longer in {source}.")
MOVE_TARGET_GONE = _m(
    "move-target-gone", logging.WARNING,
    "A move from {source} to {target} cut off earlier was not finished: {target} no longer "
    "exists; its {count} messages stay in {source}",
    "None, or move them again (mboxutil --move) to where they should go.")

DELIVERED = _m(
    "delivered", logging.INFO,
    "delivered: from=<{sender}> to=<{rcpt}> mailbox={mailbox} uid={uid} size={size} via={via}",
    "None.")
DELIVERY_DEFERRED = _m(
    "delivery-deferred", logging.WARNING,
    "delivery deferred: from=<{sender}> to=<{rcpt}> reply=\"{reply}\" reason={reason}",
    "The MTA keeps the message and retries. By reason: over-quota, the user must make room or "
    "get a larger quota (mboxutil --set-quota) before store.quotagraceperiod ends; locked, look "
    "for what holds the mailbox lock (mboxutil --locks) if it repeats; not-ready, start stored "
    "(stored -t says why it is not ready); damaged, see the damage message logged before it; "
    "disk-full, free space on the partition; config, correct the setting it names.")
DELIVERY_REFUSED = _m(
    "delivery-refused", logging.INFO,
    "delivery refused: from=<{sender}> to=<{rcpt}> reply=\"{reply}\" reason={reason}",
    "None for unknown-user, bad-address, too-big and empty: the MTA returns the message to its "
    "sender. over-quota-expired: the grace period ran out; the user's mail bounces until there "
    "is room.")
DUPLICATE_SUPPRESSED = _m(
    "duplicate-suppressed", logging.INFO,
    "duplicate not stored: to=<{rcpt}> mailbox={mailbox} message-id={msgid}",
    "None (local.lmtp.duplicatewindow is set; the first copy was stored).")
QUOTA_WARNING_SENT = _m(
    "quota-warning-sent", logging.INFO,
    "quota warning delivered to {mailbox}: root {root} uses {used} of {limit} bytes ({percent}%)",
    "None; the user was told. Raise the quota if the user should not have to act.")
QUOTA_WARNING_FAILED = _m(
    "quota-warning-failed", logging.WARNING,
    "quota warning for {mailbox} not delivered: {error}",
    "The message itself was delivered. Act on the error (its INBOX may need `reconstruct`).")
PASSWORD_SET = _m(
    "password-set", logging.INFO, "Password of {user} {what}", "None.")
PASSWORD_REMOVED = _m(
    "password-removed", logging.INFO, "Password of {user} removed: it can no longer log in",
    "None.")
LOGIN = _m(
    "login", logging.INFO, "{service}: {user} logged in from {peer}", "None.")
LOGIN_FAILED = _m(
    "login-failed", logging.WARNING, "{service}: login failed for {user} from {peer}",
    "None for one; many for one user or from one place: someone is guessing passwords.")
LOGOUT = _m(
    "logout", logging.INFO, "{service}: {user} logged out", "None.")
WATCHED_EXITED = _m(
    "watched-exited", logging.ERROR,
    "Watched '{program}' process {pid} exited abnormally (status {status})",
    "See log/{program}.stderr and this log just before. With local.autorestart the watcher "
    "restarts the store services; without it, run `start-msg` once the cause is fixed.")
PROBE_FAILED = _m(
    "probe-failed", logging.ERROR, "msprobe: {check}: {summary}",
    "A service that is not running: `start-msg`. One that does not answer: with "
    "local.autorestart the watcher restarts the services; otherwise `stop-msg` and `start-msg`.")
IMPORT_DONE = _m(
    "import-done", logging.INFO,
    "Imported {imported} messages ({skipped} already there) from {source} into {mailboxes} "
    "mailboxes under {mailbox}", "None.")
RESTORE_DONE = _m(
    "restore-done", logging.INFO,
    "Restored {messages} messages into {mailboxes} mailboxes from backup {source}", "None.")
RESTORE_DAMAGED = _m(
    "restore-damaged", logging.ERROR,
    "Restore from {source} stopped at offset {offset}: {why}; {messages} messages before it "
    "were restored",
    "The backup is damaged or cut off there. Restore what is missing from an older backup "
    "(imsrestore skips what is already there), and check the backup medium: imsrestore into a "
    "scratch store verifies a backup.")
UTILITY_EXITED = _m(
    "utility-exited", logging.WARNING,
    "Watched utility '{program}' process {pid} exited abnormally; stored cleans up after it",
    "None for the store: its locks died with it and `stored -r` removed what it left. Run the "
    "command again (a reconstruct or mboxutil -r/-d finishes the work it cut off).")
SERVICES_RESTARTING = _m(
    "services-restarting", logging.WARNING,
    "Restarting the store services after a failure: {services}",
    "None: the watcher stops them, starts stored, waits until it is ready, then starts the "
    "rest (log/watcher has each step).")
RESTART_GIVEN_UP = _m(
    "restart-given-up", logging.CRITICAL,
    "'{program}' failed again within {seconds} s of its restart: not restarted",
    "Find the cause (log/{program}.stderr, this log), fix it, then `start-msg`; the other "
    "services keep running. local.autorestart.timeout sets the period.")
TELEMETRY_FAILED = _m(
    "telemetry-failed", logging.WARNING,
    "Telemetry of a session of {user} not captured: {error}",
    "Make the telemetry directory a real directory (no symlink on the way) writable by the "
    "services' user, or remove it to turn the capture off.")
SERVICE_READY = _m(
    "service-ready", logging.INFO, "{service} ready: listening on {where}", "None.")
SERVICE_STOPPED = _m(
    "service-stopped", logging.INFO, "{service} stopped ({where})", "None.")
LMTPD_WAITING = _m(
    "lmtpd-waiting", logging.WARNING,
    "lmtpd: stored is not ready on {root}; deliveries are deferred (451 4.3.0) until it is",
    "Start stored, or see why it is not ready (`stored -t`, its log). lmtpd goes on by itself "
    "once stored is ready.")
LMTPD_READY = _m(
    "lmtpd-ready", logging.INFO, "lmtpd ready: listening on {where}", "None.")
LMTPD_STOPPED = _m(
    "lmtpd-stopped", logging.INFO,
    "lmtpd stopped ({why}); {delivered} messages delivered, {rounds} filesystem syncs for "
    "{requests} sync requests",
    "None. Many more requests than syncs: group commit at work.")
LMTPD_SUPERVISOR_STOPPED = _m(
    "lmtpd-supervisor-stopped", logging.INFO, "lmtpd stopped ({why}) with its {workers} workers",
    "None.")
LMTPD_WORKER_DIED = _m(
    "lmtpd-worker-died", logging.ERROR,
    "lmtpd worker {pid} died (exit status {status}); started another",
    "Look for its traceback or the signal that ended it in the journal; deliveries it had "
    "under way got no reply and the MTA retries them.")


def catalogue() -> dict[str, Msg]:
    return dict(_ALL)


def log_internal(component: str, program: str, exc: BaseException,
                 trace: str | None = None) -> str:
    """INTERNAL_ERROR for `exc`, its traceback (or `trace`) on the same line
    (the formatter escapes its line ends)."""
    import traceback
    if trace is None:
        trace = "".join(traceback.format_exception(exc))
    return log(component, INTERNAL_ERROR, program=program, error_type=type(exc).__name__,
               error=exc, traceback=trace)


def log(component: str, msg: Msg, **kw) -> str:
    text = msg.format(**kw)
    logging.getLogger(f"store.{component}").log(msg.level, text)
    return text
