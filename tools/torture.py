#!/usr/bin/env python3
"""Kill trials and race trials with an independent oracle.

Kill trials: each starts one operation as a real process on a small store,
SIGKILLs it at a seeded random moment, runs the recovery an administrator
would (for a command: `reconstruct -m`, `-r`, `-q`; for stored: start it
again until it is ready and its resync is done, with no reconstruct at all),
then `stored -r`, and checks the store against what the oracle recorded
outside it before and during the trial:

- every acknowledged delivery (the UID it answered) is there with the same
  bytes (SHA-256); a UID never names two different messages; a mailbox's
  UIDVALIDITY is unchanged (a rename keeps it under the new name);
- a mailbox renamed is listed under exactly one of its names, with all its
  folders and messages; a mailbox deleted is gone with its mail, or whole;
  every acknowledged create is listed; nothing appears from nowhere;
- an expunged message never comes back, not even after `reconstruct -r -f`;
- imapd killed under a client's APPEND/STORE/UID EXPUNGE: each APPENDUID
  answered is there with its bytes, each STORE answered has its flags,
  each UID EXPUNGE answered is gone (a command cut off may go either way);
- every snapshot listed verifies; no temp file is left after `stored -r`;
- `reconstruct -r -n`, `-n -m`, `-n -q` and `-n -l` are clean.

Race trials (`--races N`): workers, each owning one user, create, delete
and rename folders, deliver, flag and expunge, with seeded random pauses,
beside `-m`, `-q`, `-l` and stored's spool resync (the same engine) in a
loop; at the end the store must equal the workers' own record exactly
(names, UIDVALIDITY, every message's UID and bytes) and every check is clean.

    python tools/torture.py --trials 200 --seed 1          # every operation in turn
    python tools/torture.py --trials 20 --ops rename,delete
    python tools/torture.py --trials 0 --races 200 --seed 1

Prints one line per failure (with its seed and operation), then trials and
failures per operation. Exit 1 when anything failed. Bounded: each trial's
processes are killed or finish within seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from build_store import build  # noqa: E402

from store.crash import CRASH_EXIT  # noqa: E402
from store.crash import ENV as CRASH_ENV  # noqa: E402

OPS = ("deliver", "rename", "delete", "rebuild", "resync-m", "quota", "lright", "snapshot",
       "stored-recover", "expire", "create", "expunge", "stored-rebuild", "lmtpd", "imapd",
       "imsimport", "imsrestore")
STORED_OPS = ("stored-recover", "expire", "stored-rebuild")
# --crashpoints: the operations with named steps (store/crash.py), each stopped at each
CRASH_POINTS = {
    "deliver": ("append:after-file-sync@3", "append:after-records@2", "append:after-header@5"),
    "create": ("create:after-index@2",),
    "rename": ("rename:after-journal", "rename:after-move"),
    "delete": ("delete:after-mark", "delete:after-index"),
    "rebuild": ("batch:before-replace", "batch:after-replace@2"),
    "expunge": ("expunge:after-exp", "expunge:after-index"),
    "resync-m": ("resync:after-folders", "resync:after-quota-roots"),
    "quota": ("resync:after-quota-roots",),
    "snapshot": ("snapshot:after-copy", "snapshot:after-rename"),
    "imsimport": ("append:after-records@1", "import:before-uidnext"),
    "imsrestore": ("append:after-header@1", "restore:before-finish@2"),
}
TARGET = "user/user0000/INBOX"  # deliveries and expunges
DELETED = "user/user0001/Sent"  # the delete trials' mailbox


def _cmd(name: str) -> list[str]:
    return [sys.executable, "-c", f"from store.cli.{name} import main; main()"]


def _run(root: str, name: str, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(name) + list(args), env={**os.environ, "MSGSTORE_ROOT": root},
                          input=input, capture_output=True, timeout=120, cwd=ROOT)


def _popen(root: str, name: str, *args: str, point: str | None = None) -> subprocess.Popen:
    return subprocess.Popen(_cmd(name) + list(args), env=_armed({**os.environ, "MSGSTORE_ROOT": root},
                                                              point),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _armed(env: dict[str, str], point: str | None) -> dict[str, str]:
    """env with the named crash point armed (store/crash.py), or as it is."""
    return {**env, CRASH_ENV: point} if point else env


def _stop(proc: subprocess.Popen, delay: float, point: str | None) -> bool:
    """The operation's end: with a crash point, its own stop there (True when it
    reached the point); else a SIGKILL after `delay` s (True when it was still
    running then)."""
    if point:
        proc.wait(timeout=120)
        return proc.returncode == CRASH_EXIT or proc.returncode == 8  # 8: a -j worker's stop
    time.sleep(delay)
    alive = proc.poll() is None
    if alive:
        proc.kill()
    return alive


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store_state(root: str) -> dict[str, tuple[int, dict[int, str]]]:
    """Every listed mailbox: its UIDVALIDITY and each UID's SHA-256."""
    from store.mailbox import Store
    out = {}
    with Store.open(root, readonly=True) as s:
        for info in s.list():
            hashes = {}
            if info.error is None:
                for rec in s.read(info.name).records:
                    hashes[rec.uid] = _sha(s.message(info.name, rec.uid))
            out[info.name] = (info.uidvalidity, hashes)
    return out


def _kill_at(proc: subprocess.Popen, delay: float, point: str | None = None) -> bool:
    """SIGKILL after `delay` s, or its stop at a crash point; True when either landed."""
    landed = _stop(proc, delay, point)
    proc.communicate()
    return landed


def _stored_until_settled(root: str, timeout: float = 60) -> str | None:
    """The administrator's recovery for stored: start it, wait until it is
    ready with no resync pending, stop it. Returns what went wrong, or None."""
    p = subprocess.Popen(_cmd("stored"), env={**os.environ, "MSGSTORE_ROOT": root}, cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < timeout:
            if p.poll() is not None:
                return f"stored exited {p.returncode}: {p.stderr.read().decode()[-300:]}"
            r = _run(root, "stored", "-t", "--json")
            if r.returncode == 0 and not json.loads(r.stdout)["resync_pending"]:
                return None
            time.sleep(0.1)
        return "stored not settled in time"
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        p.stderr.close()


def _set(root: str, name: str, value: str) -> None:
    r = _run(root, "configutil", "-o", name, "-v", value)
    assert r.returncode == 0, r.stderr


def _leftovers(root: str) -> list[str]:
    from store.fsutil import TEMP_PREFIX
    found = []
    for dirpath, dirs, files in os.walk(root):
        found += [os.path.join(dirpath, n) for n in dirs + files if n.startswith(TEMP_PREFIX)]
    return found


def _snapshot_problems(root: str) -> list[str]:
    from store import snapshots
    from store.db import verify as dbverify
    from store.layout import Layout
    out = []
    for s in snapshots.list_snapshots(Layout.open(root)):
        if not s.suspect:
            v = dbverify.verify(s.path)
            if not v.ok:
                out.append(f"snapshot {s.name} is listed but fails verification: {v.reason}")
    return out


class Trial:
    """One kill trial: set-up, the operation killed, recovery, oracle."""

    def __init__(self, op: str, seed: int, base: str, point: str | None = None):
        self.op, self.seed, self.point = op, seed, point
        self.rng = random.Random(seed)
        self.root = os.path.join(base, f"t{seed}")
        self.acked: list[tuple[str, int, str]] = []  # (mailbox, uid, sha256)
        self.created: list[str] = []
        self.flagged: set[int] = set()  # uids of TARGET flagged \Deleted before the operation
        # imapd trials: uid -> the flag sets it may have (answered; and a cut-off STORE's)
        self.imap_flags: dict[int, set[int]] = {}
        self.imap_gone: set[int] = set()  # UID EXPUNGE answered
        self.imap_maybe_gone: set[int] = set()  # UID EXPUNGE cut off
        self.problems: list[str] = []

    def run(self) -> tuple[list[str], bool]:
        build(self.root, users=2, folders=4, messages=3, seed=self.seed)
        self.before = None
        getattr(self, f"setup_{self.op.replace('-', '_')}", lambda: None)()
        self.before = self.before or store_state(self.root)
        landed = self.kill()
        if self.op in STORED_OPS:
            why = _stored_until_settled(self.root)
            if why:
                return [f"recovery: {why}"], landed
        elif self.op in ("imsimport", "imsrestore") and self.rng.random() < 0.5:
            pass  # half the import and restore trials are run again at once, half after the
            # administrator's reconstruct (which adopts a killed run's files without flags)
        else:
            for args in (["-m"], ["-r"], ["-q"]):
                r = _run(self.root, "reconstruct", *args)
                if r.returncode not in (0, 1):
                    return [f"recovery reconstruct {' '.join(args)} exited {r.returncode}: "
                            f"{r.stderr.decode().strip()[:200]}"], landed
        finish = getattr(self, f"finish_{self.op}", None)
        if finish:  # the operation run again to its end, as an administrator would
            finish()
        r = _run(self.root, "stored", "-r")
        if r.returncode != 0:
            self.problems.append(f"stored -r exited {r.returncode}: {r.stderr.decode()[:200]}")
        self.problems += [f"temp file left after stored -r: {p}" for p in _leftovers(self.root)]
        self.problems += _snapshot_problems(self.root)
        self.after = store_state(self.root)
        self.check_names()
        self.check_messages()
        for args in (["-r", "-n"], ["-n", "-m"], ["-n", "-q"], ["-n", "-l"]):
            r = _run(self.root, "reconstruct", *args)
            if r.returncode != 0:
                self.problems.append(f"reconstruct {' '.join(args)} after recovery exited "
                                     f"{r.returncode}: {r.stdout.decode().strip()[:300]}")
        if self.flagged:
            self.check_expunged_stay_gone()
        if self.op == "imapd":
            self.check_imap()
        if self.op in ("imsimport", "imsrestore"):
            self.check_copy()
        shutil.rmtree(self.root, ignore_errors=True)
        return self.problems, landed

    # -- set-up -------------------------------------------------------------------
    def _fill_target(self, n: int) -> None:
        from store.index import FLAG_DELETED
        from store.mailbox import Store
        with Store.open(self.root) as s:
            for uid in s.append_many(TARGET, [f"Subject: {self.seed}-{i}\n\n{i}\n".encode()
                                              for i in range(n)]):
                if self.rng.random() < 0.5:
                    s.set_flags(TARGET, uid, FLAG_DELETED)
                    self.flagged.add(uid)

    def setup_expunge(self) -> None:
        self._fill_target(300)

    def setup_expire(self) -> None:
        self._fill_target(300)
        from store.mailbox import Store
        with Store.open(self.root) as s:
            s.expunge(TARGET)
        _set(self.root, "local.store.expirestart", "0")  # due at once: none ran today

    def setup_stored_recover(self) -> None:
        from store import snapshots
        from store.mailbox import Store
        with Store.open(self.root) as s:
            snapshots.take(s.layout, s.db)
            s.create("user/late")  # after the snapshot: only the resync brings it back
            s.append_many("user/late", [b"Subject: late\n\nlate\n"] * 3)
            s.set_acl("user/user0001/Lists", "anyone", "lrp")
        self.before = store_state(self.root)
        data = os.path.join(self.root, "mboxlist", "data.mdb")
        os.truncate(data, os.path.getsize(data) // 2)

    def setup_stored_rebuild(self) -> None:
        """No snapshot at all: stored rebuilds the database from the spool before READY."""
        from store.mailbox import Store
        with Store.open(self.root) as s:  # more mailboxes: a rebuild a kill can land in
            for i in range(40):
                s.create(f"user/extra{i:02d}")
        self.before = store_state(self.root)
        data = os.path.join(self.root, "mboxlist", "data.mdb")
        os.truncate(data, os.path.getsize(data) // 2)

    def setup_lright(self) -> None:
        from store.mailbox import Store
        with Store.open(self.root) as s:
            for n in ("user/user0000/Archive", "user/user0001/Drafts"):
                s.set_acl(n, "bob", "lrs")
        with Store.open(self.root) as s:  # lright lost: -l has work to do
            s.db.write(lambda t: [t.delete("lright", k) for k, _ in list(t.items("lright"))])

    def setup_delete(self) -> None:
        from store.mailbox import Store
        with Store.open(self.root) as s:  # enough files for a kill to land mid-delete
            s.append_many(DELETED, [f"Subject: d{i}\n\n{i}\n".encode() for i in range(500)])

    def setup_quota(self) -> None:
        from store.mailbox import Store
        with Store.open(self.root) as s:
            s.append_many(TARGET, [b"Subject: q\n\n" + b"q" * 1000] * 50)

    def setup_imsimport(self) -> None:
        """A Dovecot Maildir with UIDs (dovecot-uidlist), flags and keywords
        (dovecot-keywords) to go into user/copy."""
        src = self.root + ".src"
        for d in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(src, d), exist_ok=True)
        with open(os.path.join(src, "dovecot-keywords"), "w") as f:
            f.write("0 $Junk\n1 project\n")
        lines, self.want = [f"3 V{1234567 + self.seed} N99999\n"], {}
        self.want_flags: dict[int, tuple[int, list[str]]] = {}
        letters = {"S": 1, "R": 2, "F": 4, "T": 8, "D": 16}
        for i in range(2000):
            uid = 3 + 2 * i
            data = f"Subject: import {self.seed}-{i}\n\n{self.rng.random()}\n".encode()
            flags = "".join(c for c in "DFRST" if self.rng.random() < 0.4)
            kws = "".join(c for c in "ab" if self.rng.random() < 0.3)
            base = f"{1700000000 + i}.M{i}P1.torture"
            with open(os.path.join(src, "cur", f"{base}:2,{flags}{kws}"), "wb") as f:
                f.write(data)
            lines.append(f"{uid} :{base}\n")
            self.want[uid] = _sha(data)
            self.want_flags[uid] = (sum(letters[c] for c in flags),
                                    sorted({"a": "$junk", "b": "project"}[k] for k in kws))
        with open(os.path.join(src, "dovecot-uidlist"), "w") as f:
            f.writelines(lines)
        self.copy_args = ("imsimport", src, "user/copy")
        self.want_uidvalidity = 1234567 + self.seed
        self.want_limit = None

    def setup_imsrestore(self) -> None:
        """A backup of user/user0001 (with more mail, flags, keywords and a quota
        limit) to restore as user/copy, which exists already in half the trials."""
        from store.index import keyword_names
        from store.mailbox import FlagMode, Store
        with Store.open(self.root) as s:
            uids = s.append_many("user/user0001", [
                f"Subject: r{i}\n\n{self.rng.random()}\n".encode() for i in range(2000)])
            for bits, kws in ((1, []), (4, ["$Junk"]), (2 | 16, ["project"]), (8, [])):
                some = [u for u in uids if self.rng.random() < 0.3]
                s.store_flags("user/user0001", some, bits, kws, FlagMode.ADD)
            s.set_quota("user/user0001", 300_000_000)
            idx = s.read("user/user0001")
            self.want_flags = {r.uid: (r.flags, sorted(k.lower() for k in keyword_names(
                idx.header, r.keywords))) for r in idx.records}
            if self.rng.random() < 0.5:
                s.create("user/copy")
        path = self.root + ".msb"
        r = _run(self.root, "imsbackup", "-f", path, "user/user0001")
        state = store_state(self.root)["user/user0001/INBOX"]
        self.want_uidvalidity, self.want = state
        self.want_limit = 300_000_000
        self.copy_args = ("imsrestore", "-f", path, "--to", "user/copy", "user/user0001")
        if r.returncode != 0:
            self.problems.append(f"imsbackup exited {r.returncode}: {r.stderr.decode()[:200]}")

    def finish_imsimport(self) -> None:
        r = _run(self.root, *self.copy_args)
        if r.returncode != 0:
            self.problems.append(f"{self.op} run again exited {r.returncode}: "
                                 f"{r.stderr.decode().strip()[:200]}")

    finish_imsrestore = finish_imsimport

    def check_copy(self) -> None:
        """user/copy holds the source exactly: its UIDs, UIDVALIDITY, bytes,
        flags and keywords, and (a restore) the quota limit."""
        from store.index import keyword_names
        from store.mailbox import Store
        uv, got = self.after.get("user/copy/INBOX", (0, {}))
        if uv != self.want_uidvalidity:
            self.problems.append(f"{self.op}: UIDVALIDITY {uv}, the source's {self.want_uidvalidity}")
        if got != self.want:
            diff = sorted(set(got.items()) ^ set(self.want.items()))[:3]
            self.problems.append(f"{self.op}: {len(got)} messages, the source {len(self.want)}; "
                                 f"first differences {diff}")
        with Store.open(self.root, readonly=True) as s:
            if not s.exists("user/copy"):
                return
            idx = s.read("user/copy")
            flags = {r.uid: (r.flags, sorted(k.lower() for k in keyword_names(
                idx.header, r.keywords))) for r in idx.records}
            limit = next((q["limit_bytes"] for q in s.quotas("user/copy")), None)
        wrong = [(u, flags.get(u), f) for u, f in self.want_flags.items() if flags.get(u) != f]
        if wrong:
            self.problems.append(f"{self.op}: {len(wrong)} messages with other flags or keywords "
                                 f"than the source's, e.g. (uid, got, source) {wrong[:3]}")
        if self.want_limit is not None and limit != self.want_limit:
            self.problems.append(f"{self.op}: quota limit {limit}, the backup's {self.want_limit}")

    # -- the operation, killed --------------------------------------------------------
    def kill(self) -> bool:
        root, delay = self.root, self.rng.uniform(0.0, 0.6)
        op = self.op
        if op == "deliver":
            return self._kill_deliveries(delay)
        if op == "create":
            return self._kill_creates(delay)
        if op == "lmtpd":
            return self._kill_lmtpd(delay * 2)
        if op == "imapd":
            return self._kill_imapd(delay * 3)
        if op in ("imsimport", "imsrestore"):
            return _kill_at(_popen(root, *self.copy_args, point=self.point), 0.3 + delay * 2,
                            self.point)
        argv = {"rename": ("mboxutil", "-r", "user/user0001", "user/moved"),
                "delete": ("mboxutil", "-d", DELETED),
                "rebuild": ("reconstruct", "-r", "-f", "-i", "-j", "2"),
                "resync-m": ("reconstruct", "-m"),
                "quota": ("reconstruct", "-q"),
                "lright": ("reconstruct", "-l"),
                "snapshot": ("imdbverify", "-s", "-m"),
                "expunge": ("mboxutil", "-e", TARGET),
                "stored-recover": ("stored",),
                "expire": ("stored",),
                "stored-rebuild": ("stored",)}[op]
        scale = {"rename": 4, "delete": 4, "rebuild": 3, "resync-m": 4, "quota": 3, "lright": 3,
                 "snapshot": 2, "expunge": 2, "stored-recover": 0.5, "expire": 0.5,
                 "stored-rebuild": 0.5}[op]
        if op == "resync-m":
            os.unlink(os.path.join(root, "mboxlist", "data.mdb"))
        return _kill_at(_popen(root, *argv, point=self.point), delay / scale, self.point)

    def _kill_deliveries(self, delay: float) -> bool:
        msgs = [f"Subject: torture {self.seed}-{i}\n\n{self.rng.random()}\n" for i in range(200)]
        script = ("import sys\nfrom store.mailbox import Store\ns = Store.open(sys.argv[1])\n"
                  "for i, m in enumerate(sys.argv[2:]):\n"
                  "    uid = s.append('user/user0000', m.encode())\n"
                  "    print(uid, i, flush=True)\n")
        p = subprocess.Popen([sys.executable, "-c", script, self.root, *msgs],
                             stdout=subprocess.PIPE, cwd=ROOT, env=_armed(dict(os.environ), self.point))
        landed = _stop(p, delay, self.point)
        out, _ = p.communicate()
        for line in out.decode().splitlines():
            uid, i = map(int, line.split())
            self.acked.append((TARGET, uid, _sha(msgs[i].encode())))
        return landed

    def _kill_lmtpd(self, delay: float) -> bool:
        """lmtpd (one or two workers) killed -9 with all its processes while
        three LMTP sessions deliver; what got a 250 must be there once."""
        import threading

        from lmtp_harness import LMTPClient, socket_path, start_lmtpd, start_stored, stop
        stored = start_stored(self.root)
        lmtpd = start_lmtpd(self.root, "--workers", str(self.rng.choice((1, 2))),
                            new_session=True)
        replies: list[tuple[int, bytes]] = []

        def session(k: int) -> None:
            try:
                c = LMTPClient(socket_path(self.root))
                for i in range(200):
                    data = f"Subject: lmtp {self.seed}-{k}-{i}\n\n{self.rng.random()}\n".encode()
                    _, out = c.send("t@example.org", ["user0000@example.com"], data)
                    if out and out[0][0] == 250:
                        replies.append((int(out[0][1].split()[3]), data))
            except (OSError, ConnectionError, Exception):  # the kill cuts the session
                return
        threads = [threading.Thread(target=session, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        time.sleep(delay)
        landed = lmtpd.poll() is None
        os.killpg(lmtpd.pid, signal.SIGKILL)
        lmtpd.wait()
        for t in threads:
            t.join(30)
        stop(stored)
        for uid, data in replies:
            stored_bytes = (b"Return-Path: <t@example.org>\nDelivered-To: "
                            b"user0000@example.com\n" + data)
            self.acked.append((TARGET, uid, _sha(stored_bytes)))
        self.exactly_once = True
        return landed

    def _kill_imapd(self, delay: float) -> bool:
        """imapd killed -9 while a client APPENDs, STOREs flags and UID
        EXPUNGEs; what was answered OK must hold after the recovery."""
        import imaplib
        import re
        import threading

        from lmtp_harness import start_service, start_stored, stop

        from store import accounts
        from store.index import FLAG_DELETED, FLAG_FLAGGED, FLAG_SEEN, flags_to_names
        from store.layout import Layout
        accounts.set_password(Layout.open(self.root), "user0000", "pw")
        stored = start_stored(self.root)
        proc, port = start_service("imapd", self.root)
        rng = random.Random(self.seed)

        def client() -> None:
            try:
                c = imaplib.IMAP4("127.0.0.1", port)
                c.login("user0000", "pw")
                c.select("INBOX")
                mine: list[int] = []
                for i in range(300):
                    what = rng.random()
                    if what < 0.5 or not mine:
                        data = f"Subject: imap {self.seed}-{i}\r\n\r\n{rng.random()}\r\n".encode()
                        typ, resp = c.append("INBOX", None, None, data)
                        uid = int(re.search(rb"APPENDUID \d+ (\d+)", resp[0]).group(1))
                        self.acked.append((TARGET, uid, _sha(data)))
                        self.imap_flags[uid] = {0}
                        mine.append(uid)
                    elif what < 0.85:
                        uid = rng.choice(mine)
                        bits = rng.choice((FLAG_SEEN, FLAG_FLAGGED, FLAG_SEEN | FLAG_FLAGGED))
                        self.imap_flags[uid] |= {bits}  # either, until answered
                        c.uid("STORE", str(uid), "FLAGS", f"({' '.join(flags_to_names(bits))})")
                        self.imap_flags[uid] = {bits}
                    else:
                        uid = mine.pop(rng.randrange(len(mine)))
                        self.imap_flags[uid] |= {FLAG_DELETED}
                        self.imap_maybe_gone.add(uid)
                        c.uid("STORE", str(uid), "+FLAGS", "(\\Deleted)")
                        c.uid("EXPUNGE", str(uid))
                        self.imap_gone.add(uid)
            except (OSError, imaplib.IMAP4.abort, imaplib.IMAP4.error, AttributeError):
                return  # the kill cuts the session
        t = threading.Thread(target=client)
        t.start()
        time.sleep(delay)
        landed = proc.poll() is None
        proc.kill()
        proc.wait()
        t.join(30)
        stop(stored)
        self.acked = [a for a in self.acked if a[1] not in self.imap_maybe_gone]
        return landed

    def check_imap(self) -> None:
        from store.index import FLAG_DELETED
        from store.mailbox import Store
        with Store.open(self.root) as s:
            now = {r.uid: r.flags for r in s.read(TARGET).records}
        for uid in self.imap_gone & set(now):
            self.problems.append(f"imapd: UID EXPUNGE of {uid} answered, the message is there")
        for uid, may in self.imap_flags.items():
            if uid in now and uid not in self.imap_maybe_gone and now[uid] not in may:
                self.problems.append(f"imapd: uid {uid} has flags {now[uid]}, answered {may}")
            if uid in now and uid in self.imap_maybe_gone and uid not in self.imap_gone \
                    and now[uid] & ~FLAG_DELETED not in {m & ~FLAG_DELETED for m in may}:
                self.problems.append(f"imapd: uid {uid} has flags {now[uid]}")

    def _kill_creates(self, delay: float) -> bool:
        script = ("import sys\nfrom store.mailbox import Store\ns = Store.open(sys.argv[1])\n"
                  "for i in range(100):\n"
                  "    s.create(f'user/new{i:03d}')\n"
                  "    print(i, flush=True)\n")
        p = subprocess.Popen([sys.executable, "-c", script, self.root], stdout=subprocess.PIPE,
                             cwd=ROOT, env=_armed(dict(os.environ), self.point))
        landed = _stop(p, delay, self.point)
        out, _ = p.communicate()
        self.created = [f"user/new{int(i):03d}/INBOX" for i in out.decode().split()]
        return landed

    # -- the oracle ---------------------------------------------------------------------
    def check_names(self) -> None:
        before, after, op = self.before, self.after, self.op
        b, a = set(before), set(after)
        if op == "rename":
            old = {n for n in b if n.startswith("user/user0001/")}
            new = {n.replace("user/user0001/", "user/moved/", 1) for n in old}
            if old <= a and not new & a:
                moved = {n: n for n in old}
            elif new <= a and not old & a:
                moved = {n: n.replace("user/user0001/", "user/moved/", 1) for n in old}
            else:
                self.problems.append(f"rename: listed {sorted(a - b)} new, {sorted(b - a)} gone")
                return
            expect = {**{n: n for n in b - old}, **moved}
        elif op == "delete":
            expect = {n: n for n in b if n != DELETED or n in a}
        elif op in ("imsimport", "imsrestore"):
            expect = {n: n for n in b | {n for n in a if n.startswith("user/copy/")}}
        elif op == "create":
            extra = {n for n in a - b if n.startswith("user/new")}
            acked = set(self.created)
            inflight = {f"user/new{len(self.created):03d}/INBOX"}
            if not acked <= a or not extra <= acked | inflight:
                self.problems.append(f"create: acknowledged {sorted(acked - a)} missing, "
                                     f"{sorted(extra - acked - inflight)} from nowhere")
            expect = {n: n for n in b | extra}
        else:
            expect = {n: n for n in b}
        if set(expect.values()) != a:
            self.problems.append(f"{op}: listing {sorted(a ^ set(expect.values()))} differs")
        self.expect = {old: new for old, new in expect.items() if new in a}

    def check_messages(self) -> None:
        for old, new in self.expect.items():
            if old not in self.before:  # created by the operation
                continue
            if self.op in ("imsimport", "imsrestore") and old.startswith("user/copy/"):
                continue  # made empty by the set-up, to take the source's UIDVALIDITY: check_copy
            (uv_b, h_b), (uv_a, h_a) = self.before[old], self.after[new]
            if uv_b != uv_a:
                self.problems.append(f"{new}: uidvalidity {uv_a}, was {uv_b}")
            for uid, digest in h_b.items():
                if uid in h_a and h_a[uid] != digest:
                    self.problems.append(f"{new}: uid {uid} names another message")
                elif uid not in h_a and not (new == TARGET and uid in self.flagged):
                    self.problems.append(f"{new}: uid {uid} lost")
            if old == new and self.op == "delete" and old == DELETED and h_b != h_a:
                self.problems.append(f"delete: {new} came back with {len(h_a)} of {len(h_b)}")
        have = self.after.get(TARGET, (0, {}))[1]
        for name, uid, digest in self.acked:
            if have.get(uid) != digest:
                self.problems.append(f"deliver: acknowledged {name} uid {uid} "
                                     f"{'lost' if uid not in have else 'changed'}")
            elif getattr(self, "exactly_once", False) and \
                    sum(d == digest for d in have.values()) != 1:
                self.problems.append(f"deliver: acknowledged {name} uid {uid} stored "
                                     f"{sum(d == digest for d in have.values())} times")

    def check_expunged_stay_gone(self) -> None:
        gone = self.flagged - set(self.after[TARGET][1])
        if self.op == "expire" and gone != self.flagged:
            self.problems.append(f"expire: {len(self.flagged - gone)} expunged messages are back")
        r = _run(self.root, "reconstruct", "-r", "-f", TARGET)
        if r.returncode not in (0, 1):
            self.problems.append(f"reconstruct -r -f exited {r.returncode}")
        back = gone & set(store_state(self.root)[TARGET][1])
        if back:
            self.problems.append(f"{self.op}: expunged uids {sorted(back)[:5]} came back "
                                 f"after reconstruct -r -f")


# -- race trials ------------------------------------------------------------------------------

def _worker(root: str, k: int, seed: int, steps: int, out_path: str) -> None:
    """Random work on user/w<k>, with the record the oracle checks against:
    {mailbox: [uidvalidity, {uid: sha256}]} of what was acknowledged."""
    from store.index import FLAG_DELETED
    from store.mailbox import Store
    rng = random.Random(seed)
    user = f"user/w{k}"
    model: dict[str, list] = {}
    with Store.open(root) as s:
        e = s.create(user)
        model[f"{user}/INBOX"] = [e.uidvalidity, {}]
        n = 0
        for _ in range(steps):
            time.sleep(rng.uniform(0, 0.01))
            folders = sorted(m for m in model if m != f"{user}/INBOX")
            what = rng.choice(["create", "create", "delete", "rename", "deliver", "deliver",
                               "deliver", "expunge"])
            if what == "create" or (what in ("delete", "rename") and not folders):
                n += 1
                name = f"{user}/F{n}"
                model[name] = [s.create(name).uidvalidity, {}]
            elif what == "delete":
                name = rng.choice(folders)
                s.delete(name)
                del model[name]
            elif what == "rename":
                n += 1
                old, new = rng.choice(folders), f"{user}/R{n}"
                s.rename(old, new)
                model[new] = model.pop(old)
            elif what == "deliver":
                name = rng.choice(sorted(model))
                datas = [f"Subject: race {seed} {n} {i}\n\n{rng.random()}\n".encode()
                         for i in range(rng.randint(1, 4))]
                box = name[:-len("/INBOX")] if name.endswith("/INBOX") else name
                for uid, d in zip(s.append_many(box, datas), datas, strict=True):
                    model[name][1][uid] = _sha(d)
            else:
                name = rng.choice(sorted(model))
                box = name[:-len("/INBOX")] if name.endswith("/INBOX") else name
                for uid in list(model[name][1]):
                    if rng.random() < 0.3:
                        s.set_flags(box, uid, FLAG_DELETED)
                        del model[name][1][uid]
                s.expunge(box)
    with open(out_path, "w") as f:
        json.dump(model, f)


def _db_loop(root: str, seed: int, done) -> None:
    """-m, -q, -l and stored's spool resync in a seeded random order."""
    from store.daemon.recovery import resync_from_spool
    from store.errors import LockedError
    from store.mailbox import Store
    from store.reconstruct.runner import reconstruct_db
    rng = random.Random(seed)
    with Store.open(root) as s:
        while not done.is_set():
            what = rng.choice(["m", "m", "q", "l", "resync"])
            try:
                if what == "resync":
                    resync_from_spool(s.layout, s)
                else:
                    reconstruct_db(s, partition=None, user=None, apply=True, mode=what)
            except LockedError:  # the other loop's run: -m, -q, -l exclude each other
                pass
            time.sleep(rng.uniform(0, 0.02))


def race_trial(seed: int, base: str, workers: int = 3, steps: int = 25) -> list[str]:
    ctx = mp.get_context("fork")
    root = os.path.join(base, f"r{seed}")
    build(root, users=1, folders=1, messages=2, seed=seed)
    before = store_state(root)
    done = ctx.Event()
    outs = [os.path.join(base, f"r{seed}-w{k}.json") for k in range(workers)]
    procs = [ctx.Process(target=_worker, args=(root, k, seed * 10 + k, steps, outs[k]))
             for k in range(workers)]
    loops = [ctx.Process(target=_db_loop, args=(root, seed * 10 + 9 + j, done)) for j in range(2)]
    for p in loops + procs:
        p.start()
    for p in procs:
        p.join(120)
    done.set()
    for p in loops:
        p.join(120)
    problems = [f"race: a process exited {p.exitcode}" for p in procs + loops if p.exitcode]
    if problems:
        return problems
    want = {n: (uv, h) for n, (uv, h) in before.items()}
    for path in outs:
        with open(path) as f:
            for n, (uv, h) in json.load(f).items():
                want[n] = (uv, {int(u): d for u, d in h.items()})
    have = store_state(root)
    if set(have) != set(want):
        problems.append(f"race: listing differs: missing {sorted(set(want) - set(have))[:5]}, "
                        f"extra {sorted(set(have) - set(want))[:5]}")
    for n in set(have) & set(want):
        if have[n] != want[n]:
            problems.append(f"race: {n} differs (uidvalidity {have[n][0]} vs {want[n][0]}, "
                            f"{len(have[n][1])} vs {len(want[n][1])} messages)")
    for args in (["-r", "-n"], ["-n", "-m"], ["-n", "-q"], ["-n", "-l"]):
        r = _run(root, "reconstruct", *args)
        if r.returncode != 0:
            problems.append(f"race: reconstruct {' '.join(args)} exited {r.returncode}: "
                            f"{r.stdout.decode().strip()[:300]}")
    shutil.rmtree(root, ignore_errors=True)
    return problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20, help="kill trials")
    ap.add_argument("--races", type=int, default=0, help="race trials")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--crashpoints", action="store_true",
                    help="instead of timed kills: each operation of CRASH_POINTS stopped once at "
                         "each of its named steps (--trials and --ops are not used)")
    a = ap.parse_args()
    ops = a.ops.split(",")
    plan: list[tuple[str, str | None]] = [(ops[i % len(ops)], None) for i in range(a.trials)]
    if a.crashpoints:
        ops = list(CRASH_POINTS)
        plan = [(op, p) for op in ops for p in CRASH_POINTS[op]]
    counts = {op: [0, 0, 0] for op in ops}  # trials, failed, kills that landed mid-run
    t0 = time.monotonic()
    races_failed = 0
    with tempfile.TemporaryDirectory(prefix="torture-") as base:
        for i, (op, point) in enumerate(plan):
            seed = a.seed * 100_000 + i
            problems, landed = Trial(op, seed, base, point).run()
            counts[op][0] += 1
            counts[op][2] += landed
            if problems:
                counts[op][1] += 1
                for p in problems:
                    print(f"FAIL seed {seed} {op}{' at ' + point if point else ''}: {p}", flush=True)
        for i in range(a.races):
            seed = a.seed * 100_000 + i
            problems = race_trial(seed, base)
            races_failed += bool(problems)
            for p in problems:
                print(f"FAIL seed {seed} race: {p}", flush=True)
    for op, (n, bad, landed) in counts.items():
        if n:
            print(f"{op}: {n} kill trials ({landed} killed before the command exited), "
                  f"{bad} failed")
    if a.races:
        print(f"race: {a.races} race trials, {races_failed} failed")
    print(f"{len(plan)} trials, {a.races} race trials in {time.monotonic() - t0:.0f} s")
    sys.exit(1 if races_failed or any(bad for _n, bad, _l in counts.values()) else 0)


if __name__ == "__main__":
    main()
