"""Database snapshots: take (hot), verify, list, prune, choose, restore.

A snapshot is a directory `<snapshotpath>/snap-YYYYmmddTHHMMSSZ/` holding a
copy of data.mdb and `manifest.json`. It is written as `.tmp-snap-...`,
verified in a child process, and only then renamed to its final name, so a
kill mid-way leaves a temp directory that is never listed or restored.
A copy that fails verification is kept as `snap-...-suspect`, never
restored, and never counted against the good ones.
"""

from __future__ import annotations

import calendar
import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass

from . import logmsg, settings
from .crash import crashpoint
from .db import lmdbfiles
from .db import verify as dbverify
from .errors import StoreError
from .fsutil import TEMP_PREFIX, fsync_dir, write_file_atomic
from .index import MAX_DATE
from .layout import Layout
from .proc import pid_alive

PREFIX = "snap-"
SUSPECT = "-suspect"
MANIFEST = "manifest.json"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"

log = logging.getLogger("store.snapshots")


@dataclass
class Snapshot:
    name: str
    path: str
    time: float
    verified: bool
    suspect: bool
    bytes: int
    sha256: str
    entries: dict
    data_mtime_ns: int | None = None  # of data.mdb when it was verified (older manifests: None)

    def as_json(self) -> dict:
        return {"name": self.name, "path": self.path,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.time)),
                "verified": self.verified, "suspect": self.suspect, "bytes": self.bytes}


def snapshot_dir(layout: Layout) -> str:
    return layout.config.resolve_path(settings.SNAPSHOT_PATH)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def list_snapshots(layout: Layout) -> list[Snapshot]:
    """Every complete snapshot (one with a manifest), oldest first."""
    d = snapshot_dir(layout)
    out = []
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return []
    for n in names:
        if not n.startswith(PREFIX):
            continue
        out.append(_read_manifest(n, os.path.join(d, n)))
    return sorted(out, key=lambda s: (s.time, s.name))


def _read_manifest(name: str, path: str) -> Snapshot:
    """The snapshot as its manifest describes it. A manifest missing,
    unreadable or holding anything but the fields and types it is written
    with makes the snapshot suspect, nothing more: it is listed (and
    pruned), never restored, and one damaged file cannot stop stored."""
    def finite(v: object) -> bool:
        # a time any date function takes: 0 to 9999-12-31 (a bigger one made imdbverify -l
        # die of OverflowError)
        return (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                and 0 <= v <= MAX_DATE)

    def refuse(_constant: str) -> None:
        raise ValueError("NaN or Infinity")

    try:
        with open(os.path.join(path, MANIFEST), "rb") as f:
            m = json.loads(f.read(1 << 20).decode("utf-8"), parse_constant=refuse)
        ok = (isinstance(m, dict) and finite(m.get("time"))
              and isinstance(m.get("verified"), bool) and isinstance(m.get("suspect"), bool)
              and isinstance(m.get("bytes"), int) and isinstance(m.get("sha256"), str)
              and isinstance(m.get("entries", {}), dict)
              and (m.get("data_mtime_ns") is None or isinstance(m["data_mtime_ns"], int)))
    except (OSError, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        ok = False
    if ok:
        return Snapshot(name, path, m["time"], m["verified"], m["suspect"], m["bytes"],
                        m["sha256"], m.get("entries", {}), m.get("data_mtime_ns"))
    try:
        when = float(calendar.timegm(time.strptime(name[len(PREFIX):len(PREFIX) + 16],
                                                   STAMP_FORMAT)))
    except ValueError:
        when = 0.0
    return Snapshot(name, path, when, False, True, 0, "", {})


def newest_time(layout: Layout) -> float | None:
    """The time of the newest snapshot that is not suspect, or None."""
    good = [s for s in list_snapshots(layout) if not s.suspect]
    return good[-1].time if good else None


def take(layout: Layout, db, *, now: float | None = None) -> Snapshot:
    """Hot copy of the open database `db` (a db.Database), verified in a
    child process, then given its final name; prunes old ones after."""
    now = time.time() if now is None else now
    d = snapshot_dir(layout)
    os.makedirs(d, exist_ok=True)
    stamp = time.strftime(STAMP_FORMAT, time.gmtime(now))
    tmp = os.path.join(d, f"{TEMP_PREFIX}{PREFIX}{stamp}-{os.getpid()}")
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    try:
        db.copy_to(tmp)  # a consistent copy through one read transaction
        data = lmdbfiles.data_path(tmp)
        lmdbfiles.fsync_data(tmp)
        crashpoint("snapshot:after-copy")
        verdict = dbverify.verify(tmp)
        st = os.stat(data)
        digest = _sha256(data)
        manifest = {"time": now, "bytes": st.st_size, "sha256": digest,
                    "entries": verdict.entries, "verified": verdict.ok, "suspect": not verdict.ok,
                    "verdict": verdict.reason, "data_mtime_ns": st.st_mtime_ns}
        write_file_atomic(os.path.join(tmp, MANIFEST), json.dumps(manifest, indent=1).encode())
        final = os.path.join(d, PREFIX + stamp + ("" if verdict.ok else SUSPECT))
        n = 1
        while os.path.exists(final):
            final = os.path.join(d, f"{PREFIX}{stamp}.{n}" + ("" if verdict.ok else SUSPECT))
            n += 1
        os.rename(tmp, final)
        fsync_dir(d)
        crashpoint("snapshot:after-rename")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    snap = Snapshot(os.path.basename(final), final, now, verdict.ok, not verdict.ok,
                    st.st_size, digest, verdict.entries, st.st_mtime_ns)
    if verdict.ok:
        logmsg.log("snapshots", logmsg.SNAPSHOT_TAKEN, name=snap.name, bytes=snap.bytes)
    else:
        logmsg.log("snapshots", logmsg.SNAPSHOT_SUSPECT, name=snap.name, reason=verdict.reason)
    prune(layout, layout.config.get_int(settings.SNAPSHOT_DIRS))
    check_free_space(layout, snap.bytes)
    return snap


def changed_since_verified(snap: Snapshot) -> bool:
    """Whether data.mdb is no longer the file that was verified (its size or
    mtime moved, or the manifest predates the record of its mtime)."""
    try:
        st = os.stat(lmdbfiles.data_path(snap.path))
    except OSError:
        return True
    return snap.data_mtime_ns is None or st.st_mtime_ns != snap.data_mtime_ns \
        or st.st_size != snap.bytes


def _update_manifest(snap: Snapshot, **changes) -> None:
    """Rewrite a snapshot's manifest (atomically) with some fields changed."""
    path = os.path.join(snap.path, MANIFEST)
    with open(path, encoding="utf-8") as f:
        m = json.load(f)
    m.update(changes)
    write_file_atomic(path, json.dumps(m, indent=1).encode())


def _record_verified(snap: Snapshot) -> None:
    """Note in the manifest the data.mdb just verified again (its mtime)."""
    _update_manifest(snap, data_mtime_ns=os.stat(lmdbfiles.data_path(snap.path)).st_mtime_ns)


def mark_suspect(layout: Layout, snap: Snapshot, reason: str) -> Snapshot:
    """Rename a snapshot that no longer verifies to `...-suspect`, so that it
    is never restored and no longer counts among the good ones."""
    _update_manifest(snap, suspect=True, verdict=reason)
    final = snap.path + SUSPECT
    os.rename(snap.path, final)
    fsync_dir(os.path.dirname(final))
    logmsg.log("snapshots", logmsg.SNAPSHOT_SUSPECT, name=os.path.basename(final), reason=reason)
    return Snapshot(os.path.basename(final), final, snap.time, snap.verified, True, snap.bytes,
                    snap.sha256, snap.entries, snap.data_mtime_ns)


def prune(layout: Layout, keep: int) -> list[str]:
    """Keep the newest `keep` good snapshots and the newest `keep` suspect
    ones; remove the rest and any temp directory a killed snapshot left. A
    good one whose file changed since it was verified is verified again
    first (and marked suspect when it fails), so that a snapshot damaged in
    place never pushes a good one out."""
    for s in list_snapshots(layout):
        if s.suspect or not changed_since_verified(s):
            continue
        if still_good(s):
            _record_verified(s)
        else:
            mark_suspect(layout, s, "data.mdb changed since it was verified and fails verification")
    snaps = list_snapshots(layout)
    removed = []
    for group in ([s for s in snaps if not s.suspect], [s for s in snaps if s.suspect]):
        for s in group[:-keep] if len(group) > keep else []:
            shutil.rmtree(s.path, ignore_errors=True)
            removed.append(s.name)
    d = snapshot_dir(layout)
    with contextlib.suppress(FileNotFoundError):
        for n in os.listdir(d):
            if n.startswith(TEMP_PREFIX + PREFIX) and not _owned_by_live_process(n):
                shutil.rmtree(os.path.join(d, n), ignore_errors=True)
    return removed


def _owned_by_live_process(tmpname: str) -> bool:
    pid = tmpname.rsplit("-", 1)[-1]
    return pid.isdigit() and pid_alive(int(pid))


def check_free_space(layout: Layout, db_bytes: int) -> None:
    """Log snapshot-space when less than five times the database is free where snapshots live."""
    d = snapshot_dir(layout)
    st = os.statvfs(d)
    free = st.f_bavail * st.f_frsize
    if free < 5 * db_bytes:
        logmsg.log("snapshots", logmsg.SNAPSHOT_SPACE, path=d, free=free, need=5 * db_bytes)


def still_good(snap: Snapshot) -> bool:
    """The copy on disk still matches its manifest and verifies."""
    data = lmdbfiles.data_path(snap.path)
    try:
        if os.path.getsize(data) != snap.bytes or _sha256(data) != snap.sha256:
            return False
    except OSError:
        return False
    return dbverify.verify(snap.path).ok


def best(layout: Layout) -> tuple[Snapshot | None, list[tuple[Snapshot, str]]]:
    """The newest snapshot that verifies, and those skipped with why."""
    skipped = []
    for s in reversed(list_snapshots(layout)):
        if s.suspect or not s.verified:
            skipped.append((s, "marked suspect"))
            continue
        if still_good(s):
            return s, skipped
        skipped.append((s, "failed verification"))
    return None, skipped


def restore_into(snap: Snapshot, mboxlist_dir: str) -> None:
    """Install a snapshot's data.mdb as the live database (lmdbfiles.install).
    The caller holds the daemon lock and has put any old environment aside."""
    lmdbfiles.install(snap.path, mboxlist_dir)


def find(layout: Layout, name: str) -> Snapshot:
    """The snapshot called `name`, or StoreError."""
    for s in list_snapshots(layout):
        if s.name == name:
            return s
    raise StoreError(f"no snapshot named {name!r} (imdbverify -l lists them)")
