"""start-msg, stop-msg and the watcher as real processes (seeds 000, 001):
the order of starts and stops, the seeds' output and watcher log, what is
already running, one service alone, stored that cannot become ready, and
the automatic restart after kill -9 (once within local.autorestart.timeout)."""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT
from lmtp_harness import free_port

from store.layout import Layout
from store.mailbox import Store
from store.proc import pid_alive


def command(main: str, root: str, *args: str) -> subprocess.CompletedProcess:
    """A console script (`module:function`) as its own process, on `root`."""
    module, fn = main.split(":")
    return subprocess.run([sys.executable, "-c", f"from {module} import {fn}; {fn}()",
                           "--store-root", root, *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=180)


def start(root, *names):
    r = command("store.cli.msgctl:start_main", root, *names)
    return r.returncode, r.stdout.splitlines()


def stop(root, *names):
    r = command("store.cli.msgctl:stop_main", root, *names)
    return r.returncode, r.stdout.splitlines()


def pid(root, program):
    try:
        return int(open(os.path.join(root, "run", f"{program}.pid")).read())
    except OSError:
        return None


def watcher_log(root):
    return open(os.path.join(root, "log", "watcher"), encoding="utf-8").read().splitlines()


STORED_T = [sys.executable, "-c", "from store.cli.stored import main; main()", "-t"]


def until(cond, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def root(tmp_path):
    root = str(tmp_path / "store")
    with Store.init(root) as s:
        s.create("user/joe")
    Layout.open(root).config.save({"service.imap.port": str(free_port()),
                                   "service.pop.port": str(free_port()),
                                   "local.autorestart": "1",
                                   "local.autorestart.timeout": "600",
                                   # Oracle 8's one restart per period: the kill test's second
                                   # kill is the one not restarted (Sun's default is 2)
                                   "local.autorestart.count": "1",
                                   # no TCP status port: tests run side by side (its own test
                                   # gives it a free port)
                                   "local.watcher.port": "0",
                                   # the seeds' schedule would run msprobe (which may ask for
                                   # restarts) at :05, :15... in the middle of a test; the
                                   # schedule's own test turns it on
                                   "local.schedule.msprobe.enable": "0"})
    yield root
    stop(root)


PROGRAMS = ("stored", "lmtpd", "imapd", "popd")


def test_start_and_stop_in_order(root):
    code, out = start(root)
    assert code == 0, out
    assert out[0] == "Connecting to watcher ..." and out[1].startswith("Launching watcher ... ")
    assert [x.split(" ....")[0] for x in out[2:]] == [
        "Starting store server", "Checking store server status", "Starting lmtp server",
        "Starting imap server", "Starting pop server"]
    assert out[3].endswith(" ready")
    pids = {p: pid(root, p) for p in PROGRAMS}
    assert all(pid_alive(n) for n in pids.values())
    code, out = start(root)  # again: what runs is reported and left alone
    assert code == 0 and out[1:] == [f"{name} server is already running ({pids[p]})" for name, p
                                     in zip(("store", "lmtp", "imap", "pop"), PROGRAMS,
                                            strict=True)]
    code, out = stop(root, "imap")  # one service
    assert out == [f"Stopping imap server {pids['imapd']} .... done"]
    assert not pid_alive(pids["imapd"]) and pid_alive(pids["popd"])
    code, out = start(root, "imap")
    assert code == 0 and out[1].startswith("Starting imap server .... ")
    code, out = stop(root)
    assert [x.split(" ")[1] for x in out[:4]] == ["pop", "imap", "lmtp", "store"]
    assert out[4].startswith("Stopping watcher process") and code == 0
    assert until(lambda: not any(pid_alive(pid(root, p) or pids[p]) for p in PROGRAMS), 60)
    assert until(lambda: " stopped at " in watcher_log(root)[-1], 60)
    assert watcher_log(root)[0].startswith("watcher process ") and " started at " in \
        watcher_log(root)[0]


def test_nothing_starts_after_a_stored_that_cannot_be_ready(root):
    os.rename(os.path.join(root, "mboxlist"), os.path.join(root, "mboxlist.away"))
    with open(os.path.join(root, "mboxlist"), "w") as f:
        f.write("not a directory\n")
    code, out = start(root)
    assert code == 8
    assert out[-1].startswith("Checking store server status") and out[-1].endswith("not ready")
    assert pid(root, "lmtpd") is None and pid(root, "imapd") is None


def test_kill_9_restarts_the_services_once_within_the_timeout(root):
    assert start(root)[0] == 0
    old = {p: pid(root, p) for p in PROGRAMS}
    os.kill(old["imapd"], signal.SIGKILL)
    assert until(lambda: pid(root, "popd") not in (None, old["popd"])
                 and pid_alive(pid(root, "popd")))
    log = watcher_log(root)
    i = log.index(f"Watched 'imapd' process {old['imapd']} exited abnormally")
    assert log[i + 1] == "Received request to restart: store lmtp imap pop"
    assert log[i + 2].startswith("Stopping pop server") and log[i + 3] == "imap server is not running"
    assert log[i + 6].startswith("Starting store server") and log[i + 7].endswith("ready")
    assert [x.split(" ....")[0] for x in log[i + 8:i + 11]] == [
        "Starting lmtp server", "Starting imap server", "Starting pop server"]
    new = {p: pid(root, p) for p in PROGRAMS}
    assert all(pid_alive(n) and n != old[p] for p, n in new.items())  # stored restarted too
    os.kill(new["imapd"], signal.SIGKILL)  # again, within local.autorestart.timeout
    # (the first restart may still be waiting for popd to listen: that can take a while under load)
    assert until(lambda: any("failed again within 600 s" in x for x in watcher_log(root))), \
        "\n".join(watcher_log(root))  # what the watcher did instead
    time.sleep(1)
    assert not pid_alive(new["imapd"]) and pid_alive(new["popd"])  # not restarted
    default = open(os.path.join(root, "log", "default"), encoding="utf-8").read()
    assert "'imapd' failed again within 600 s of its restart: not restarted" in default
    code, out = msprobe(root, "--nagios")  # msprobe says so
    assert code == 2 and "the watcher gave up restarting it" in out
    code, out = start(root, "imap")  # and start-msg, which starts it again
    assert code == 0 and "imap server was not restarted after it failed again" in out[1]
    assert out[2].startswith("Starting imap server .... ")
    new["imapd"] = pid(root, "imapd")
    os.kill(new["lmtpd"], signal.SIGKILL)  # another service: restarted (imapd with it)
    assert until(lambda: pid(root, "lmtpd") != new["lmtpd"] and pid_alive(pid(root, "lmtpd"))
                 and pid_alive(pid(root, "imapd") or 0))
    stored = pid(root, "stored")
    os.kill(stored, signal.SIGKILL)  # and stored itself
    assert until(lambda: pid(root, "stored") != stored and pid_alive(pid(root, "stored") or 0)
                 and all(pid_alive(pid(root, p) or 0) for p in PROGRAMS))
    assert f"Watched 'stored' process {stored} exited abnormally" in watcher_log(root)


def test_a_utility_killed_is_logged_and_cleaned_up_without_a_restart(root):
    assert start(root)[0] == 0
    before = {p: pid(root, p) for p in PROGRAMS}
    ok = subprocess.run([sys.executable, "-c", "from store.cli.reconstruct import main; main()",
                         "--store-root", root, "-n", "-r"], cwd=ROOT, capture_output=True)
    assert ok.returncode == 0  # a utility that ends well: nothing in the watcher log
    with Store.open(root) as s, s.lock("user/joe/INBOX"):  # the rebuild waits: killed there
        p = subprocess.Popen([sys.executable, "-c", "from store.cli.reconstruct import main; "
                              "main()", "--store-root", root, "-r", "-f", "-j", "1"], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # registered with the watcher (its socket open) and waiting for the lock: killed there
        assert until(lambda: p.poll() is None and _registered_and_waiting(p.pid), 120), \
            "reconstruct never registered and waited for the mailbox lock"
        p.kill()
        p.wait()
    assert until(lambda: any(x.startswith("Cleanup after 'reconstruct'")
                             for x in watcher_log(root)), 30)
    log = watcher_log(root)
    assert f"Watched utility 'reconstruct' process {p.pid} exited abnormally" in log
    assert sum("Watched utility" in x for x in log) == 1
    assert f"Cleanup after 'reconstruct' process {p.pid} (stored -r): exit status 0" in log
    assert {q: pid(root, q) for q in PROGRAMS} == before  # no service restarted
    assert not any("Received request to restart" in x for x in log)


def _open_files(pid):
    try:
        return [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return []


def _registered_and_waiting(pid):
    """pid has a socket open (its registration with the watcher) and a mailbox
    lock file (the lock it is trying to take: the wait polls, so /proc/locks has
    no blocked entry)."""
    files = _open_files(pid)
    return (any(f.startswith("socket:") for f in files)
            and any("/lock/mbox-" in f for f in files))


def msprobe(root, *args):
    r = command("store.cli.msprobe:main", root, *args)
    return r.returncode, r.stdout


def test_msprobe_all_ok_json_nagios_and_prometheus(root, tmp_path):
    import json

    from prometheus_client.parser import text_string_to_metric_families
    assert start(root)[0] == 0
    code, out = msprobe(root, "--json", "--prometheus", str(tmp_path / "ms.prom"))
    got = json.loads(out)
    names = {c["name"]: c for c in got["checks"]}
    assert code == 0 and got["status"] == "OK", out
    assert names["reconstruct check"]["status"] == "OK"
    if shutil.which("mdb_stat"):
        assert "free_pages" in names["database"]["metrics"]
    assert {"service store", "service lmtp", "service imap", "service pop", "snapshot",
            "space partition primary", "log errors"} <= set(names)
    assert names["service imap"]["metrics"]["response_seconds"] < 5
    fams = {f.name: f for f in text_string_to_metric_families((tmp_path / "ms.prom").read_text())}
    status = {s.labels["check"]: s.value for s in fams["msgstore_check_status"].samples}
    assert status["service pop"] == 0 and len(status) == len(names)
    assert any(s.labels["check"] == "space partition primary"
               for s in fams["msgstore_space_used_percent"].samples)
    code, out = msprobe(root, "--nagios")
    assert code == 0 and out.startswith("MSGSTORE OK - ") and " | 'service store " in out
    reader = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from store.mailbox import Store\n"
                               "s = Store.open(sys.argv[1])\n"
                               "with s.db.env.begin():\n"
                               "    print('reading', flush=True); time.sleep(60)", root],
                              cwd=ROOT, stdout=subprocess.PIPE)
    assert reader.stdout.readline() == b"reading\n"
    reader.kill()  # dies with its read open: a stale reader slot
    reader.wait()
    code, out = msprobe(root, "--json")
    db = next(c for c in json.loads(out)["checks"] if c["name"] == "database")
    assert code == 1 and db["status"] == "WARNING" and "1 of them stale" in db["summary"]
    stop(root, "pop")
    code, out = msprobe(root, "--nagios")
    assert code == 2 and "service pop: popd is not running" in out


@pytest.mark.slow  # stored's heartbeat takes 15 s to go stale
def test_msprobe_finds_a_stopped_stored_and_the_watcher_restarts_it(root):
    assert start(root)[0] == 0
    old = pid(root, "stored")
    os.kill(old, signal.SIGSTOP)
    try:
        def stale() -> bool:  # stored's heartbeat goes stale after 15 s
            return subprocess.run(STORED_T + ["--store-root", root], cwd=ROOT,
                                  capture_output=True).returncode == 2
        assert until(stale, 90)
        code, out = msprobe(root, "--nagios", "--timeout", "5", "--restart")
    finally:
        with contextlib.suppress(ProcessLookupError):  # restarted: gone already
            os.kill(old, signal.SIGCONT)
    assert code == 2 and "not responding: its heartbeat is" in out
    log = watcher_log(root)
    assert "msprobe: 'stored' not responding or down" in log
    assert until(lambda: pid(root, "stored") != old and pid_alive(pid(root, "stored") or 0))
    def services_ok():
        import json
        checks = json.loads(msprobe(root, "--json")[1])["checks"]
        return all(c["status"] == "OK" for c in checks if c["name"].startswith("service "))
    assert until(services_ok, 30)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_msprobe_reports_a_nearly_full_partition(root, tmp_path):
    part = tmp_path / "small"
    part.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(part)]).returncode:
        pytest.skip("tmpfs cannot be mounted here")
    try:
        cfg = Layout.open(root).config
        cfg.save({**{k: cfg.get(k) for k in ("service.imap.port", "service.pop.port")},
                  "store.partition.small.path": str(part)})
        (part / "fill").write_bytes(b"x" * int(1024 * 1024 * 0.92))
        code, out = msprobe(root, "--json")
        import json
        small = next(c for c in json.loads(out)["checks"] if c["name"] == "space partition small")
        assert small["status"] == "WARNING" and code >= 1
        (part / "fill2").write_bytes(b"x" * int(1024 * 1024 * 0.05))
        code, out = msprobe(root, "--nagios")
        assert code == 2 and "space partition small:" in out
    finally:
        subprocess.run(["umount", str(part)])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_written_systemd_units_verify(root, tmp_path):
    Layout.open(root).config.save({**{k: Layout.open(root).config.get(k) for k in
                                      ("service.imap.port", "service.pop.port")},
                                   "local.autorestart": "1", "local.autorestart.timeout": "900"})
    r = subprocess.run([sys.executable, "-c", "from store.cli.msgctl import start_main; "
                        "start_main()", "--store-root", root, "--write-units", str(tmp_path / "u")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    files = sorted(os.listdir(tmp_path / "u"))
    assert files == ["msgstore-imapd.service", "msgstore-lmtpd.service",
                     "msgstore-msprobe.service", "msgstore-msprobe.timer",
                     "msgstore-popd.service", "msgstore-stored.service"]
    imapd = (tmp_path / "u" / "msgstore-imapd.service").read_text()
    assert "PartOf=msgstore-stored.service" in imapd and "Restart=on-failure" in imapd
    assert "StartLimitIntervalSec=900" in imapd and f"MSGSTORE_ROOT={root}" in imapd
    v = subprocess.run(["systemd-analyze", "verify", *[str(tmp_path / "u" / f) for f in files]],
                       capture_output=True, text=True)
    assert v.returncode == 0, v.stderr
    assert f"ReadWritePaths={root}\n" in imapd and "ProtectSystem=strict\n" in imapd
    for f in files:  # issue 26: hardened, "OK" (at most 3.0) in systemd's own measure
        if not f.endswith(".service"):
            continue
        sec = subprocess.run(["systemd-analyze", "security", "--offline=true",
                              str(tmp_path / "u" / f)], capture_output=True, text=True)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", sec.stdout)
        if m is None and "--offline" in sec.stderr:
            pytest.skip("this systemd-analyze has no --offline")
        assert m and float(m.group(1)) <= 3.0, (f, sec.stdout[-500:])
    bad = tmp_path / "bad.service"  # the check can fail: a relative ExecStart
    bad.write_text("[Service]\nExecStart=relative/x\n")
    assert subprocess.run(["systemd-analyze", "verify", str(bad)],
                          capture_output=True).returncode != 0


def test_the_watcher_runs_msprobe_on_its_schedule(root):
    cfg = Layout.open(root).config
    cfg.save({**{k: cfg.get(k) for k in ("service.imap.port", "service.pop.port")},
              "local.schedule.msprobe": "* * * * *"})
    assert start(root)[0] == 0
    assert until(lambda: any(x.startswith("msprobe process ") for x in watcher_log(root)), 20)
    assert until(lambda: os.path.exists(os.path.join(root, "run", "msprobe-watcher.state")), 30)


def test_msprobe_reports_the_last_check_and_core_files(tmp_path, cli):
    from build_store import build
    from damage import damage

    from store.supervise import probe
    root = str(tmp_path / "store")
    build(root, users=1, folders=0, messages=4, seed=2)
    assert probe.check_reconstruct(Layout.open(root)).summary.startswith("no `reconstruct")
    damage(root, "bad_record_checksum", "user/user0000/INBOX")
    assert cli("reconstruct", "--store-root", root, "-r", "-n").code == 4
    c = probe.check_reconstruct(Layout.open(root))
    assert c.status == probe.WARNING and "1 with problems" in c.summary
    assert cli("reconstruct", "--store-root", root, "-r", "user/user0000/INBOX").code == 1
    assert cli("reconstruct", "--store-root", root, "-r", "-n").code == 0
    assert probe.check_reconstruct(Layout.open(root)).status == probe.OK
    cores = tmp_path / "crash"
    cores.mkdir()
    Layout.open(root).config.save({"local.msprobe.coredir": str(cores)})
    assert probe.check_cores(Layout.open(root))[0].status == probe.OK
    (cores / "core.1234").write_bytes(b"\0")
    c = probe.check_cores(Layout.open(root))[0]
    assert c.status == probe.WARNING and "core.1234" in c.summary


def test_a_port_another_server_holds_fails_the_start(root):
    """Issue 25: a port taken by another server was reported as started (the
    other server answered the readiness check), exit 0."""
    import socket
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        Layout.open(root).config.set("service.imap.port", str(busy.getsockname()[1]))
        code, out = start(root)
        assert code == 8, out
        assert out[-1] == (f"imap server did not start: 127.0.0.1:{busy.getsockname()[1]} is "
                           "taken by another process"), out
        assert pid(root, "imapd") is None
    finally:
        busy.close()


def test_restarts_per_period_follow_local_autorestart_count(root, monkeypatch):
    """Issue 25: Sun 6.3 restarts a failed service up to two times within
    local.autorestart.timeout (the default); 1 is Oracle 8's rule."""
    from store.supervise.registry import by_name
    from store.supervise.watcher import Watcher
    imap = by_name(["imap"])[0]
    for count, restarts in (("2", 2), ("1", 1), ("3", 3)):
        Layout.open(root).config.set("local.autorestart.count", count)
        w = Watcher(Layout.open(root))
        calls = []
        monkeypatch.setattr(w, "restart_all", lambda calls=calls: calls.append(1))
        for _ in range(5):
            w._restart_for(imap)
        assert len(calls) == restarts and "imap" in w.given_up, count
        w._log.close()


def test_the_watcher_alone_stops_and_starts_and_adopts_the_running_services(root):
    """Issue 25 (seed 000): `stop-msg watcher` / `start-msg watcher`, and a
    relaunched watcher watches the services that already run (they are
    restarted when they fail)."""
    assert start(root)[0] == 0
    pids = {p: pid(root, p) for p in PROGRAMS}
    code, out = stop(root, "watcher")
    assert code == 0 and out[0].startswith("Stopping watcher process"), out
    assert until(lambda: " stopped at " in watcher_log(root)[-1])
    assert all(pid_alive(n) for n in pids.values())  # the services run on
    code, out = start(root, "watcher")
    assert code == 0 and out[0].startswith("Launching watcher ... "), out
    assert until(lambda: f"watcher adopted 'popd' process {pids['popd']}" in watcher_log(root))
    os.kill(pids["imapd"], signal.SIGKILL)
    assert until(lambda: pid(root, "imapd") not in (None, pids["imapd"])
                 and pid_alive(pid(root, "imapd")), 120), "\n".join(watcher_log(root))
    code, out = start(root, "watcher", "imap")
    assert code == 16, out


def test_the_watcher_follows_configutil_without_a_restart(root, monkeypatch):
    """Issue 25: a change of local.autorestart needed a watcher restart."""
    from store.supervise.registry import by_name
    from store.supervise.watcher import Watcher
    imap = by_name(["imap"])[0]
    w = Watcher(Layout.open(root))  # local.autorestart 1 (the fixture)
    calls = []
    monkeypatch.setattr(w, "restart_all", lambda: calls.append(1))
    Layout.open(root).config.set("local.autorestart", "0")  # as configutil, another process
    w._restart_for(imap)
    assert calls == [] and "settings read again (store.conf changed)" in watcher_log(root)
    Layout.open(root).config.set("local.autorestart", "1")
    w._restart_for(imap)
    assert calls == [1]
    w._log.close()


def test_msprobe_restarts_a_service_that_is_down_but_not_one_an_administrator_stopped(root):
    """Issue 25: msprobe restarted only a service that hangs; one that is
    down (and that the watcher did not restart) stayed down."""
    assert start(root)[0] == 0
    code, out = stop(root, "pop")  # the administrator's: stays stopped
    assert code == 0
    code, out = msprobe(root, "--nagios", "--restart")
    assert code == 2 and "popd is not running" in out
    assert pid(root, "popd") is None or not pid_alive(pid(root, "popd"))
    assert "msprobe: 'popd' not responding or down" not in watcher_log(root)


def test_the_watcher_log_follows_logrotate(root):
    """Issue 25: log/watcher was opened once; after logrotate moved it, the
    watcher went on writing into the moved file."""
    from store.supervise.watcher import Watcher
    w = Watcher(Layout.open(root))
    w.wlog("before")
    path = os.path.join(root, "log", "watcher")
    os.rename(path, path + ".1")
    w.wlog("after")
    assert open(path).read() == "after\n" and open(path + ".1").read().endswith("before\n")
    w._log.close()


def test_the_watcher_answers_status_on_its_loopback_port(root):
    """Issue 25 (seed 000): local.watcher.port (Sun's 49994) on loopback;
    there only `status` is answered (changes come over run/watcher, 0600)."""
    import socket
    port = free_port()
    Layout.open(root).config.set("local.watcher.port", str(port))
    assert start(root, "watcher")[0] == 0

    def ask(line):
        with socket.create_connection(("127.0.0.1", port), 10) as s, s.makefile("rb") as f:
            s.sendall(line + b"\n")
            return [x.decode().rstrip("\n") for x in f]
    assert until(lambda: bool(ask(b"status")))
    got = ask(b"status")
    assert got[-1] == "OK" and "store server not running" in got, got
    got = ask(b"stop")
    assert got[-1] == "FAILED" and "status only" in got[0], got
    assert stop(root, "watcher")[0] == 0


def test_sighup_makes_the_watcher_read_its_settings_and_does_not_end_it(root):
    """Issue 25: the watcher re-reads its settings on SIGHUP (an
    administrator's habit); SIGHUP's default action would have ended it."""
    for svc in ("store.enable", "lmtp.enable", "imap.enable", "pop.enable"):
        Layout.open(root).config.set(svc, "0")  # the watcher alone: nothing to start
    w = subprocess.Popen([sys.executable, "-c", "from store.cli.msgctl import watcher_main; "
                          "watcher_main()", "--store-root", root], cwd=ROOT,
                         stderr=subprocess.PIPE)
    try:
        assert until(lambda: os.path.exists(os.path.join(root, "log", "watcher"))
                     and any(" started at " in x for x in watcher_log(root)))
        os.kill(w.pid, signal.SIGHUP)
        assert until(lambda: "settings read again (SIGHUP)" in watcher_log(root)), \
            watcher_log(root)
        assert w.poll() is None
    finally:
        w.terminate()
        w.wait(30)


def test_msprobe_follows_the_monitoring_conventions(root, tmp_path):
    """Issue 26: UNKNOWN (3) with one line on a settings or usage error; -w/-c
    and performance data with units and thresholds; a mark per consumer
    (--state); nothing restarted without --restart; a Prometheus textfile a
    configured group may read."""
    import grp
    for svc in ("store.enable", "lmtp.enable", "imap.enable", "pop.enable"):
        Layout.open(root).config.set(svc, "0")  # nothing to probe: msprobe logs no errors
    code, out = msprobe(root, "--nagios", "-w", "85", "-c", "97")
    assert re.search(r"'space partition primary space_used_percent'=[0-9.]+%;85;97;0;100", out), out
    # each consumer sees an error of the log once, whoever else looked
    with open(os.path.join(root, "log", "default"), "a") as f:
        f.write("2026-12-08 01:00:00,000 1 store.x ERROR: something broke\n")
    for consumer in ("nagios", "cron"):
        first = json.loads(msprobe(root, "--json", "--state", consumer)[1])
        again = json.loads(msprobe(root, "--json", "--state", consumer)[1])
        errs = [next(c for c in r["checks"] if c["name"] == "log errors")["metrics"]["errors"]
                for r in (first, again)]
        assert errs == [1, 0], (consumer, errs)
    assert msprobe(root, "--state", "../x")[0] == 3
    assert msprobe(root, "--no-such-option")[0] == 3
    group = grp.getgrgid(os.getgid()).gr_name
    Layout.open(root).config.set("local.msprobe.prometheusgroup", group)
    prom = tmp_path / "ms.prom"
    msprobe(root, "--prometheus", str(prom))
    st = os.stat(prom)
    assert st.st_mode & 0o777 == 0o640 and st.st_gid == os.getgid()
    with open(os.path.join(root, "config", "store.conf"), "a") as f:
        f.write("local.msprobe.timeout = soon\n")  # a typo
    code, out = msprobe(root, "--nagios")
    assert code == 3 and out.startswith("MSGSTORE UNKNOWN - ") and len(out.splitlines()) == 1, out


@pytest.mark.skipif(os.geteuid() != 0, reason="as root, as an administrator runs it")
def test_write_units_as_root_for_a_store_of_the_mail_user(root, tmp_path):
    """Issue 26: `start-msg --write-units /etc/systemd/system` run as root
    became the store's user first and could not write there; the units'
    User=/Group= are the store root's owner by default."""
    import grp
    import pwd
    nobody = pwd.getpwnam("nobody")
    for d, _dirs, files in os.walk(root):
        for n in [d] + [os.path.join(d, f) for f in files]:
            os.lchown(n, nobody.pw_uid, nobody.pw_gid)
    target = tmp_path / "etc-systemd"
    target.mkdir(mode=0o755)  # root's, as /etc/systemd/system
    r = subprocess.run([sys.executable, "-c", "from store.cli.msgctl import start_main; "
                        "start_main()", "--store-root", root, "--write-units", str(target)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    stored = (target / "msgstore-stored.service").read_text()
    assert "User=nobody\n" in stored
    assert f"Group={grp.getgrgid(nobody.pw_gid).gr_name}\n" in stored
