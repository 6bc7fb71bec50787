import hashlib
import os
import sys

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, settings

# The suite's property tests draw the same examples every run (a failure is the code's, and
# shows again the next run); a loaded machine makes an example slower, never a failure.
# HYPOTHESIS_PROFILE=explore draws new random examples (and more of them).
settings.register_profile("suite", derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", deadline=None, max_examples=2000,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
CORPORA = os.path.join(SHARED, "corpora")
sys.path.insert(0, os.path.join(ROOT, "tools"))

from store.cli.common import run  # noqa: E402
from store.mailbox import Store  # noqa: E402


class Result:
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out, err

    def __repr__(self):
        return f"Result(code={self.code}, out={self.out!r}, err={self.err!r})"


@pytest.fixture
def cli():
    """Run a command in-process through the same exit-code map as the console script."""
    import importlib

    def invoke(prog, *args, input=None):
        mod = importlib.import_module(f"store.cli.{prog}")
        runner = CliRunner()
        with runner.isolation(input=input) as outs:
            code = run(mod.cli, prog, list(args))
            out, err = outs[0].getvalue(), outs[1].getvalue()
        return Result(code, out.decode(), err.decode())
    return invoke


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / "store")


@pytest.fixture
def store(root):
    s = Store.init(root)
    yield s
    s.close()


def sha1_of(path):
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def msg_hashes(root):
    """Multiset (sorted list) of SHA-1 of every *.msg file under root."""
    out = []
    for d, _s, fs in os.walk(root):
        out.extend(sha1_of(os.path.join(d, f)) for f in fs if f.endswith(".msg"))
    return sorted(out)


def ctrl_c_as_on_a_terminal() -> None:
    """preexec_fn for a child that must get Ctrl-C as a terminal delivers it:
    a test run started in the background (`bash tools/test.sh &`, nohup)
    inherits SIGINT ignored, and Python then keeps it ignored."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def corpus(*parts):
    path = os.path.join(CORPORA, *parts)
    if not os.path.isdir(path):
        pytest.skip(f"corpus {path} not present")
    return path


def crash_at(point, argv, *, env=None, **kw):
    """Run argv with the named crash point armed (store/crash.py); it must
    stop there, as a kill -9 at that step would leave it."""
    import subprocess

    from store.crash import CRASH_EXIT, ENV
    r = subprocess.run(argv, env={**(env or os.environ), ENV: point}, capture_output=True,
                       cwd=ROOT, **kw)
    err = r.stderr.decode(errors="replace") if isinstance(r.stderr, bytes) else r.stderr
    assert r.returncode == CRASH_EXIT, (point, r.returncode, err[-2000:])
    assert f"crashpoint {point.partition('@')[0]}" in err, err[-2000:]
    return r


# -- every process a test started is gone at the end ------------------------------------
# Each pytest process (the run, or each xdist worker) marks its environment with its
# pid; every process started under it inherits the mark, even one that daemonizes.
OWNER_ENV = "MSGSTORE_TEST_OWNER"
os.environ[OWNER_ENV] = str(os.getpid())


def processes_marked(name, value):
    """pid -> command line of every live process whose environment has name=value."""
    mark = f"{name}={value}".encode()
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if mark not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue  # exited, its parent not yet told: gone
        except OSError:  # exited meanwhile, or not ours to read
            continue
        found[int(pid)] = cmd
    return found


def _stop_all(pids):
    import signal
    for pid in pids:
        for kill in (lambda p: os.killpg(p, signal.SIGKILL), lambda p: os.kill(p, signal.SIGKILL)):
            try:
                kill(pid)  # its process group, when it leads one (lmtpd's workers with it)
            except OSError:
                pass


def _outlived(started, what):
    """Waits (a process told to stop may be on its way out) until none of the
    processes started() lists is running; else kills them and fails naming them."""
    try:
        wait_for(lambda: not started(), 10, what)
    except AssertionError:
        left = started()
        _stop_all(left)
        pytest.fail(f"processes {what} are still running (killed now): {left}")


@pytest.fixture(autouse=True)
def no_process_outlives_its_test():
    """Fails the test (at teardown, after its own fixtures stopped what they
    started) when a process it started is still running, and kills it. What
    module or session fixtures keep running was started before the test."""
    mark = os.environ[OWNER_ENV]
    before = set(processes_marked(OWNER_ENV, mark))
    yield
    _outlived(lambda: {p: c for p, c in processes_marked(OWNER_ENV, mark).items()
                       if p not in before}, "this test started")


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_suite():
    """Fails the run when a process a test started is still alive at its end
    (and kills it, so that nothing is left behind)."""
    yield
    _outlived(lambda: processes_marked(OWNER_ENV, os.getpid()), "the tests started")


def wait_for(condition, timeout=30.0, what="the condition", every=0.05):
    """Wait until condition() is true (polled every `every` s); fail naming
    `what` after `timeout` s. Tests wait on conditions with a deadline, never
    on a fixed sleep: a loaded machine is slower, not wrong."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


# -- tests over 20 s are marked slow (listed in the README); this names any that is not --
SLOW_SECONDS = 20
_unmarked_slow: list[tuple[str, float]] = []


def pytest_collection_modifyitems(items):
    """Slow tests first: each starts at once on a worker of its own instead of last, when it
    would keep the run going alone (the order is the same in every xdist worker)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_runtest_logreport(report):
    if report.when == "call" and report.duration > SLOW_SECONDS and "slow" not in report.keywords:
        _unmarked_slow.append((report.nodeid, report.duration))


def pytest_terminal_summary(terminalreporter):
    if _unmarked_slow:  # a note, not a failure: a loaded machine is slower, not wrong
        terminalreporter.write_line(
            f"tests over {SLOW_SECONDS} s not marked slow (mark them, list them in the README): "
            + ", ".join(f"{n} ({d:.0f} s)" for n, d in _unmarked_slow))
