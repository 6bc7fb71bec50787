"""msprobe's checks (seeds 000 and 002/003): each running service probed for
responsiveness with a timeout, and the monitoring procedures of 20.14.1 as
checks with a status. Every check returns a Check; the CLI renders them
(table, JSON, Nagios, a node_exporter textfile)."""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import settings, snapshots
from ..daemon import state
from ..errors import StoreError, UsageError
from ..fsutil import write_file_atomic
from ..layout import Layout
from .control import running_pid
from .registry import SERVICES, Service, enabled

OK, WARNING, CRITICAL, UNKNOWN = "OK", "WARNING", "CRITICAL", "UNKNOWN"
RANK = {OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3}  # Nagios plugin exit codes
STAMP_SLACK = 3  # a stamp older than this many intervals: the job is not running


@dataclass
class Check:
    name: str
    status: str
    summary: str
    metrics: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"name": self.name, "status": self.status, "summary": self.summary,
                "metrics": self.metrics}


# -- services -------------------------------------------------------------------------------

class Unresponsive(Exception):
    pass


def _expect(f, prefix: bytes) -> bytes:
    line = f.readline()
    if not line.startswith(prefix):
        raise Unresponsive(f"answered {line[:60]!r}, expected {prefix.decode()}...")
    return line


def _tagged(line: bytes, tag: bytes) -> bool:
    return line.startswith(tag + b" ")


def _until(f, stop: Callable[[bytes], bool]) -> None:
    while True:
        line = f.readline()
        if not line:
            raise Unresponsive("closed the connection")
        if stop(line):
            return


def _lmtp(s: socket.socket, f) -> None:
    _expect(f, b"220")
    s.sendall(b"LHLO msprobe\r\n")
    _until(f, lambda x: x.startswith(b"250 "))
    s.sendall(b"QUIT\r\n")


def _imap(s: socket.socket, f) -> None:
    _expect(f, b"* OK")
    for tag, cmd in ((b"p1", b"CAPABILITY"), (b"p2", b"NOOP"), (b"p3", b"LOGOUT")):
        s.sendall(tag + b" " + cmd + b"\r\n")
        _until(f, functools.partial(_tagged, tag=tag))


def _pop(s: socket.socket, f) -> None:
    _expect(f, b"+OK")
    s.sendall(b"CAPA\r\n")
    _expect(f, b"+OK")
    _until(f, lambda x: x.rstrip(b"\r\n") == b".")
    s.sendall(b"QUIT\r\n")


TALK = {"lmtpd": _lmtp, "imapd": _imap, "popd": _pop}


def probe_service(layout: Layout, svc: Service, timeout: float) -> Check:
    name = f"service {svc.name}"
    if svc.program == "stored":
        return _probe_stored(layout, timeout)
    if running_pid(layout, svc) is None and not svc.ready(layout):
        return Check(name, CRITICAL, f"{svc.program} is not running")
    family, address = svc.address(layout)
    t0 = time.monotonic()
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(address)
            with s.makefile("rb") as f:
                TALK[svc.program](s, f)
    except (OSError, Unresponsive) as e:
        took = time.monotonic() - t0
        what = "no answer" if isinstance(e, TimeoutError) else str(e)
        return Check(name, CRITICAL, f"{svc.program} not responding after {took:.3f} s "
                                     f"({what})", {"response_seconds": took})
    took = time.monotonic() - t0
    return Check(name, OK, f"{svc.program} answered in {took:.3f} s",
                 {"response_seconds": took})


def _probe_stored(layout: Layout, timeout: float) -> Check:
    """stored answers by renewing its heartbeat (the state file's mtime)
    every 2 s from a thread of its own: a stopped or hung stored stops."""
    st = state.running(layout)
    if st is None:
        return Check("service store", CRITICAL, "stored is not running")
    age = state.heartbeat_age(layout, time.time()) or 0.0
    if age > max(timeout, state.HEARTBEAT_STALE):
        return Check("service store", CRITICAL, f"stored (pid {st['pid']}) not responding: "
                     f"its heartbeat is {age:.1f} s old", {"response_seconds": age})
    if st["state"] != state.READY:
        return Check("service store", WARNING, f"stored (pid {st['pid']}) is {st['state']} "
                     "(checking or recovering the database)", {"response_seconds": age})
    return Check("service store", OK, f"stored ready, heartbeat {age:.1f} s old",
                 {"response_seconds": age})


def probe_services(layout: Layout, timeout: float) -> list[Check]:
    return [probe_service(layout, s, timeout) for s in enabled(layout, list(SERVICES))]


# -- the monitoring procedures -------------------------------------------------------------

def _disk(name: str, path: str, warn: int, crit: int) -> Check:
    try:
        v = os.statvfs(path)
    except OSError as e:
        return Check(f"space {name}", UNKNOWN, f"{path}: {e.strerror}")
    used = 100.0 * (1 - v.f_bavail / v.f_blocks) if v.f_blocks else 0.0
    inodes = 100.0 * (1 - v.f_favail / v.f_files) if v.f_files else 0.0
    worst = max(used, inodes)
    status = CRITICAL if worst >= crit else WARNING if worst >= warn else OK
    return Check(f"space {name}", status,
                 f"{path}: {used:.1f}% of space, {inodes:.1f}% of inodes used "
                 f"({v.f_bavail * v.f_frsize / 1e9:.2f} GB free)",
                 {"space_used_percent": round(used, 2), "inodes_used_percent": round(inodes, 2),
                  "bytes_free": v.f_bavail * v.f_frsize})


def disk_thresholds(layout: Layout, warn: int | None = None, crit: int | None = None
                    ) -> tuple[int, int]:
    """(warning, critical) percent of space or inodes used: msprobe's -w/-c, else the settings."""
    return (layout.config.get_int(settings.MSPROBE_DISKWARN) if warn is None else warn,
            layout.config.get_int(settings.MSPROBE_DISKCRIT) if crit is None else crit)


def check_space(layout: Layout, warn: int | None = None, crit: int | None = None
                ) -> list[Check]:
    warn, crit = disk_thresholds(layout, warn, crit)
    places = {f"partition {p}": path for p, path in layout.config.partitions().items()}
    places.update({"mboxlist": layout.mboxlist_dir, "log": layout.log_dir,
                   "snapshots": snapshots.snapshot_dir(layout)})
    return [_disk(n, p, warn, crit) for n, p in places.items() if os.path.exists(p)]


def check_stamps(layout: Layout) -> list[Check]:
    """stored's stamp files (20.14.1's table): older than a few intervals,
    the job is not running."""
    if state.running(layout) is None:
        return []  # the store probe says it
    c = layout.config
    intervals = {"stored.ckp": c.get_int(settings.CHECKPOINT_INTERVAL),
                 "stored.lcu": c.get_int(settings.CLEANUP_INTERVAL),
                 "stored.per": c.get_int(settings.PERUSER_INTERVAL)}
    out = []
    for f, age in state.stamp_ages(layout, time.time()).items():
        limit = intervals[f] * STAMP_SLACK
        if age is None:
            out.append(Check(f"stamp {f}", OK, f"{f} not written yet"))
        else:
            out.append(Check(f"stamp {f}", WARNING if age > limit else OK,
                             f"{f} {age:.0f} s old (interval {intervals[f]} s)",
                             {"age_seconds": round(age, 1)}))
    return out


def check_snapshot(layout: Layout) -> Check:
    suspect = [s.name for s in snapshots.list_snapshots(layout) if s.suspect]
    if suspect:
        return Check("snapshot", WARNING, f"{len(suspect)} suspect snapshots (they failed "
                     f"verification and are kept for a look: {', '.join(suspect[:3])}); "
                     "imdbverify -l lists them", {"suspect": len(suspect)})
    newest = snapshots.newest_time(layout)
    interval = layout.config.get_int(settings.SNAPSHOT_INTERVAL) * 60
    if newest is None:
        return Check("snapshot", WARNING, "no snapshot of the database yet "
                     "(stored takes one every local.store.snapshotinterval minutes)")
    age = time.time() - newest
    return Check("snapshot", WARNING if age > 2 * interval else OK,
                 f"newest snapshot {age / 3600:.1f} h old (interval {interval / 3600:.1f} h)",
                 {"age_seconds": round(age)})


_REFUSED = re.compile(rb"ERROR: (?:imapd|popd): mailbox (.+?) refused to .*?: "
                      rb"damaged \(")


def check_log(layout: Layout, last: dict) -> list[Check]:
    """Errors in the default log since the last run (`last["log_offset"]`;
    a rotated log is read from its start), and the mailboxes imapd or popd
    refused as damaged meanwhile (each needs a reconstruct)."""
    path = os.path.join(layout.log_dir, "default")
    size = os.path.getsize(path) if os.path.exists(path) else 0
    start = last.get("log_offset", 0)
    start = 0 if not isinstance(start, int) or start > size else start
    errors, first = 0, ""
    refused: dict[str, None] = {}
    if size:
        with open(path, "rb") as f:
            f.seek(start)
            for line in f:
                if b" ERROR: " in line or b" CRITICAL: " in line:
                    errors += 1
                    first = first or line.decode("utf-8", "replace").strip()
                    m = _REFUSED.search(line)
                    if m:
                        refused[m.group(1).decode("utf-8", "replace")] = None
    last["log_offset"] = size
    if errors:
        out = [Check("log errors", WARNING, f"{errors} errors in the default log since the "
                     f"last run; the first: {first[:200]}", {"errors": errors})]
    else:
        out = [Check("log errors", OK, "no errors in the default log since the last run",
                     {"errors": 0})]
    if refused:
        names = list(refused)
        shown = " ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        out.append(Check("refused mailboxes", WARNING,
                         f"{len(names)} mailboxes refused to users as damaged since the last "
                         f"run: {shown}; run reconstruct on each", {"refused": len(names)}))
    else:
        out.append(Check("refused mailboxes", OK, "no mailbox refused as damaged since the "
                         "last run", {"refused": 0}))
    return out


def _health(path: str) -> dict:
    from ..db import Database
    db = Database(path, readonly=True)
    try:
        return db.health()
    finally:
        db.close()


def check_database(layout: Layout, last: dict) -> Check:
    """The database's use of its map, its reader slots (stale ones: a
    process died with a read open; stored's cleanup clears them) and its
    growth since the last run. Read in a child: a damaged file that kills
    its reader is a verdict, not a crash of msprobe."""
    from ..db.lmdbfiles import has_data
    from ..proc import ChildDied, run_isolated
    if not has_data(layout.mboxlist_dir):
        return Check("database", UNKNOWN, "no database yet")
    try:
        h = run_isolated(_health, layout.mboxlist_dir, timeout=30)
    except (ChildDied, StoreError, OSError) as e:
        return Check("database", CRITICAL, f"the database cannot be read: {e}; see stored's "
                                           "log lines (it recovers it at its next start)")
    free = _free_pages(layout.mboxlist_dir)
    if free is not None:
        h["free_pages"] = free
    grown = h["used_bytes"] - last.get("db_used", h["used_bytes"])
    last["db_used"] = h["used_bytes"]
    metrics = {**{k: float(v) for k, v in h.items()}, "growth_bytes": float(grown)}
    text = (f"{h['used_bytes'] / 1e6:.1f} MB used of a {h['map_bytes'] / 1e6:.0f} MB map "
            f"({grown / 1e6:+.1f} MB since the last run), "
            + (f"{free} free pages, " if free is not None else "")
            + f"{h['readers']} readers")
    if h["stale_readers"]:
        return Check("database", WARNING, f"{text}, {h['stale_readers']} of them stale (a "
                     "process died reading; stored's cleanup clears them: `stored -r` now)",
                     metrics)
    if h["readers"] > 0.8 * h["max_readers"]:
        return Check("database", WARNING, f"{text}: near the {h['max_readers']} slots", metrics)
    return Check("database", OK, text, metrics)


def check_reconstruct(layout: Layout) -> Check:
    """The last `reconstruct -r -n` (the seeds' "Check User Folders")."""
    from ..reconstruct import lastcheck
    rec = lastcheck.last(layout)
    if rec is None:
        return Check("reconstruct check", OK, "no `reconstruct -r -n` recorded yet (run it "
                                              "weekly from cron: docs/operations.md)")
    age = time.time() - rec["time"]
    text = (f"last `reconstruct -r -n` {age / 86400:.1f} days ago: {rec.get('mailboxes')} "
            f"mailboxes, {rec.get('with_problems')} with problems")
    metrics = {"age_seconds": round(age), "with_problems": float(rec.get("with_problems") or 0)}
    if rec.get("exit_code") not in (0, None):
        return Check("reconstruct check", WARNING, text + ": run `reconstruct -r` on them",
                     metrics)
    return Check("reconstruct check", OK, text, metrics)


def check_cores(layout: Layout) -> list[Check]:
    """Core files in local.msprobe.coredir (none configured: no check)."""
    d = layout.config.get(settings.MSPROBE_COREDIR)
    if not d:
        return []
    try:
        cores = [e for e in os.scandir(d) if e.name.startswith("core") and e.is_file()]
    except OSError as e:
        return [Check("core files", UNKNOWN, f"{d}: {e.strerror}")]
    if not cores:
        return [Check("core files", OK, f"no core files in {d}", {"cores": 0})]
    newest = max(cores, key=lambda e: e.stat().st_mtime)
    return [Check("core files", WARNING, f"{len(cores)} core files in {d}, the newest "
                  f"{newest.name}: a process crashed; keep it for a look, then remove it",
                  {"cores": len(cores)})]


def _free_pages(path: str) -> int | None:
    """The freelist's page count, from LMDB's own mdb_stat (lmdb-utils; py-lmdb
    does not show the freelist); None without it."""
    import shutil
    import subprocess
    tool = shutil.which("mdb_stat")
    if tool is None:
        return None
    try:
        out = subprocess.run([tool, "-f", path], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.stdout.splitlines():
        if line.strip().startswith("Free pages:"):
            return int(line.split(":")[1])
    return None


STATE_FILE = "run/msprobe.state"  # what the next run compares with (JSON)
STATE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def state_path(layout: Layout, consumer: str = "") -> str:
    """The mark of one consumer (`--state NAME`: run/msprobe-NAME.state), so that
    Nagios, a cron job and the watcher do not eat each other's news."""
    if consumer and not STATE_NAME.fullmatch(consumer):
        raise UsageError(f"--state {consumer!r}: letters, digits, - and _ only (at most 64)")
    name = STATE_FILE if not consumer else STATE_FILE.replace(".state", f"-{consumer}.state")
    return os.path.join(layout.root, name)


def run_all(layout: Layout, timeout: float, *, consumer: str = "", warn: int | None = None,
            crit: int | None = None) -> list[Check]:
    path = state_path(layout, consumer)
    try:
        with open(path, encoding="utf-8") as f:
            last = json.load(f)
        last = last if isinstance(last, dict) else {}
    except (OSError, ValueError):
        last = {}
    checks = (probe_services(layout, timeout) + check_space(layout, warn, crit)
              + check_stamps(layout)
              + [check_database(layout, last), check_snapshot(layout)] + check_log(layout, last)
              + [check_reconstruct(layout)] + check_cores(layout))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_file_atomic(path, json.dumps(last).encode(), durable=False)
    return checks


def _unit(metric: str) -> str:
    """The unit of a metric, as the Nagios plugin guidelines spell it."""
    if metric.endswith("_seconds"):
        return "s"
    if metric.endswith("_percent"):
        return "%"
    if metric.endswith("bytes") or metric.endswith("_free"):
        return "B"
    return ""


def perfdata(checks: list[Check], warn: int, crit: int) -> str:
    """Nagios performance data: 'label'=value[UOM];[warn];[crit];[min];[max]."""
    out = []
    for c in checks:
        for k, v in c.metrics.items():
            unit = _unit(k)
            value = f"{v:g}" if isinstance(v, float) else str(v)
            limits = f";{warn};{crit};0;100" if unit == "%" else ";;;0;" if unit else ""
            out.append(f"'{c.name} {k}'={value}{unit}{limits}")
    return " ".join(out)


def worst(checks: list[Check]) -> str:
    return max((c.status for c in checks), key=RANK.__getitem__, default=OK)
