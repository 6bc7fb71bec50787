import json
import os

import pytest
from conftest import ROOT, ctrl_c_as_on_a_terminal

from store import logmsg


def test_listing_json_keys(cli, root):
    assert cli("deliver", "--store-root", root, "--create", "user/joe", input=b"Subject: a\n\nb").code == 0
    r = cli("mboxutil", "--store-root", root, "-l", "--json")
    rows = json.loads(r.out)
    assert {"name", "partition", "messages", "bytes", "uidvalidity", "acl"} <= set(rows[0])
    assert rows[0]["name"] == "user/joe/INBOX" and rows[0]["messages"] == 1
    r = cli("mboxutil", "--store-root", root, "-q", "--json")
    q = json.loads(r.out)
    assert q == [{"root": "user/joe", "used_bytes": 13, "used_messages": 1, "limit_bytes": None,
                  "limit_messages": None}]
    r = cli("imcheck", "--store-root", root, "-m", "user/joe", "--json")
    d = json.loads(r.out)
    assert {"name", "uidvalidity", "uidnext", "exists", "bytes"} <= set(d["header"])
    assert {"uid", "size", "flags", "internaldate", "guid"} <= set(d["records"][0])


def test_deliver_prints_mailbox_uid_and_reads_stdin(cli, root, tmp_path):
    f1, f2 = tmp_path / "1.eml", tmp_path / "2.eml"
    f1.write_bytes(b"Subject: 1\n\n1")
    f2.write_bytes(b"Subject: 2\n\n2")
    r = cli("deliver", "--store-root", root, "--create", "user/joe/Sent", str(f1), str(f2))
    assert r.out.splitlines() == ["user/joe/Sent 1", "user/joe/Sent 2"]
    r = cli("deliver", "--store-root", root, "--batch", "user/joe/Sent", str(f1), str(f2))
    assert r.out.splitlines() == ["user/joe/Sent 3", "user/joe/Sent 4"]
    r = cli("deliver", "--store-root", root, "user/joe/Sent", input=b"from stdin")
    assert r.out.strip() == "user/joe/Sent 5"
    r = cli("deliver", "--store-root", root, "user/joe/Nope", input=b"x")
    assert r.code == 67 and "does not exist" in r.err  # EX_NOUSER: the MTA bounces it


def test_mboxutil_lifecycle(cli, root):
    m = lambda *a: cli("mboxutil", "--store-root", root, *a)  # noqa: E731
    assert m("-c", "user/joe").code == 0
    assert m("-c", "user/joe/Old").code == 0
    assert m("-c", "user/joe/Old").code == 8
    cli("deliver", "--store-root", root, "user/joe/Old", input=b"x")
    assert m("--set-flags", "user/joe/Old", "1", "\\Deleted").code == 0
    r = m("-e", "user/joe/Old")
    assert r.code == 0 and "expunged 1" in r.out
    assert m("-r", "user/joe/Old", "user/joe/New").code == 0
    assert m("--set-quota", "user/joe", "1000").code == 0
    assert m("--set-quota", "user/joe", "lots").code == 16
    assert m("--set-acl", "user/joe/New", "bob", "lr").code == 0
    r = m("-l", "-p", "user/joe/*")
    assert [line.split("\t")[0] for line in r.out.splitlines()] == ["user/joe/INBOX", "user/joe/New"]
    assert "bob:lr" in r.out
    assert m("-d", "user/joe/New").code == 0
    assert m("-l").out.count("\n") == 1
    assert m("-l", "-c", "user/x").code == 16  # two actions
    assert m().code == 16


def test_errors_are_one_line_without_traceback(cli, root):
    cli("mboxutil", "--store-root", root, "-c", "user/joe")
    for args in (("imcheck", "-m", "user/nobody"), ("imcheck", "-d", "nosuchdb"),
                 ("imcheck", "-m", "user/joe", "-c", "99"), ("mboxutil", "-r", "user/joe"),
                 ("configutil", "-o", "x.y")):
        r = cli(args[0], "--store-root", root, *args[1:])
        assert r.code in (8, 16), (args, r)
        assert "Traceback" not in r.err and r.err.count("\n") == 1, (args, r)


def test_damaged_index_is_reported_with_exit_4(cli, root):
    cli("deliver", "--store-root", root, "--create", "user/joe", input=b"x")
    from store.mailbox import Store
    with Store.open(root) as s:
        path = os.path.join(s.mailbox_dir("user/joe"), "store.idx")
    os.truncate(path, 10)
    r = cli("imcheck", "--store-root", root, "-m", "user/joe")
    assert r.code == 4
    assert r.err.startswith("imcheck: Mailbox corrupted, missing fixed headers: user/joe/INBOX")
    r = cli("mboxutil", "--store-root", root, "-l", "--json")
    assert "missing fixed headers" in json.loads(r.out)[0]["error"]


def test_every_log_message_is_documented():
    doc = open(os.path.join(ROOT, "docs", "log-messages.md"), encoding="utf-8").read()
    for code, msg in logmsg.catalogue().items():
        assert f"`{code}`" in doc, code
        assert msg.text.split("{")[0].strip() in doc, code


def test_every_reconstruct_finding_kind_is_documented():
    """The reference is generated from the registries (log catalogue, finding
    kinds) and is up to date; every kind is in it with what to do; a kind
    that is also a log code is in the catalogue; a finding of a kind the
    registry lacks cannot be made."""
    from gen_log_reference import PATH, render

    from store.errors import ProgrammingError
    from store.reconstruct.findings import KINDS, Finding
    doc = open(PATH, encoding="utf-8").read()
    assert doc == render(), "docs/log-messages.md is stale: run python tools/gen_log_reference.py"
    assert len(KINDS) > 25
    codes = set(logmsg.catalogue())
    for code, kind in KINDS.items():
        assert kind.code == code and kind.meaning.strip()
        assert kind.log_code == (code in codes), code
        assert f"| `{code}` |" in doc, code
    with pytest.raises(ProgrammingError):
        Finding("user/joe/INBOX", "no-such-kind", "detail")


def test_a_truncated_database_is_refused_in_one_line_not_a_crash(cli, root):
    from store.mailbox import Store
    with Store.init(root) as s:
        for i in range(300):
            s.create(f"user/u{i:04d}")
    r = cli("imcheck", "--store-root", root, "-d", "folder", "--json")
    assert r.code == 0 and len(json.loads(r.out)) == 300, r
    assert cli("imcheck", "--store-root", root, "-s").code == 0
    path = os.path.join(root, "mboxlist", "data.mdb")
    size = os.path.getsize(path)
    os.truncate(path, size // 2)  # mapping it as it is dies of SIGBUS (dbverify's child does)
    for args in (("imcheck", "-d", "folder"), ("imcheck", "-s"), ("mboxutil", "-l"),
                 ("reconstruct", "-m"), ("reconstruct", "-r", "-n"), ("deliver", "user/u0001")):
        r = cli(args[0], "--store-root", root, *args[1:], input=b"Subject: x\n\nbody\n")
        if args[0] == "deliver":  # sysexits: 75, the MTA retries once it is repaired
            assert r.code == 75 and "store damaged: Mailbox database " in r.err, r
            assert "is damaged (" in r.err, r
            with open(os.path.join(root, "log", "default")) as f:  # and the log says so
                assert any("store.deliver ERROR: Mailbox database" in ln for ln in f), r
            continue
        assert r.code == 4, (args, r)
        assert r.err.startswith(f"{args[0]}: Mailbox database ") and "is damaged (" in r.err, r
        assert f"expected at least {size} bytes" in r.err and "reconstruct -m" in r.err, r
        assert "Traceback" not in r.err and r.err.count("\n") == 1, r
    assert os.path.getsize(path) == size // 2  # nothing wrote to it


def test_read_in_child_reports_a_reader_killed_by_a_signal(store):
    import signal

    from store.db import verify as dbverify
    from store.errors import CorruptionError, StoreError
    store.create("user/joe")
    store.close()
    path = store.layout.mboxlist_dir
    assert dbverify.read_in_child(path, lambda db: db.get("folder", "user/joe/INBOX")["acl"]) \
        == {"joe": "lrswipkxtecda"}
    with pytest.raises(CorruptionError, match="died of SIGBUS") as e:
        dbverify.read_in_child(path, lambda db: os.kill(os.getpid(), signal.SIGBUS))
    assert e.value.kind == "db-unusable" and e.value.exit_code == 4
    def fails(db):
        raise ValueError("boom")
    with pytest.raises(StoreError, match=f"mailbox database {path}: boom"):
        dbverify.read_in_child(path, fails)


def test_ctrl_c_while_a_command_starts_is_one_line_and_exit_32():
    import subprocess
    import sys
    code = ("import sys; sys.argv[0] = '/usr/bin/reconstruct'; import os, signal, time; "
            "import store.cli; os.kill(os.getpid(), signal.SIGINT); time.sleep(10)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=60, preexec_fn=ctrl_c_as_on_a_terminal)
    assert (r.returncode, r.stderr) == (32, "reconstruct: interrupted\n")
    # once the command runs, Ctrl-C is a KeyboardInterrupt again (its own clean-up, exit 32)
    code = ("import sys; sys.argv[0] = 'mboxutil'; import signal; "
            "from store.cli.mboxutil import main; import store.cli.common as c; "
            "c.run = lambda *a: print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
            " or 0; main([])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=60, preexec_fn=ctrl_c_as_on_a_terminal)
    assert (r.returncode, r.stdout) == (0, "True\n"), r
    # imported by anything else (tests, python -c), the handler is left alone
    code = "import signal, store.cli; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       preexec_fn=ctrl_c_as_on_a_terminal)
    assert r.stdout == "True\n", r


def test_a_database_with_zeroed_pages_is_reported_as_damage(cli, tmp_path):
    from build_store import build
    from damage import damage
    root = str(tmp_path / "store")
    build(root, users=30, folders=1, messages=1, seed=2)
    damage(root, "db_zeroed_page", "user/user0000")  # LMDB answers MDB_CORRUPTED, no crash
    for args in (("mboxutil", "-l"), ("reconstruct", "-m"), ("imcheck", "-d", "folder"),
                 ("deliver", "user/user0003")):
        r = cli(args[0], "--store-root", root, *args[1:], input=b"Subject: x\n\nbody\n")
        assert r.code == (75 if args[0] == "deliver" else 4), (args, r)  # deliver: sysexits
        assert "damaged (" in r.err and "MDB_CORRUPTED" in r.err and "reconstruct -m" in r.err, r
        assert "Traceback" not in r.err and r.err.count("\n") == 1, r


def test_reconstruct_m_reads_the_database_in_a_child_first(cli, root, monkeypatch):
    import signal

    from store.db import verify as dbverify
    from store.mailbox import Store
    with Store.init(root) as s:
        s.create("user/joe")
    path = os.path.join(root, "mboxlist", "data.mdb")
    before = open(path, "rb").read()
    # a damaged page that makes LMDB abort (an assertion) kills the child, not reconstruct
    monkeypatch.setattr(dbverify, "read_every_page", lambda db: os.kill(os.getpid(), signal.SIGABRT))
    r = cli("reconstruct", "--store-root", root, "-m")
    assert r.code == 4 and "is damaged (the process reading it died of SIGABRT)" in r.err, r
    assert open(path, "rb").read() == before
    monkeypatch.undo()
    assert cli("reconstruct", "--store-root", root, "-m").code == 0


@pytest.mark.parametrize("seed", range(3))
def test_random_database_damage_never_crashes_reconstruct_m(tmp_path, seed):
    import random
    import subprocess
    import sys

    from build_store import build
    from probe_db_damage import damaged
    root = str(tmp_path / "store")
    build(root, users=20, folders=1, messages=1, seed=seed)
    path = os.path.join(root, "mboxlist", "data.mdb")
    orig = open(path, "rb").read()
    rng = random.Random(seed)
    for _ in range(6):
        kind, data = damaged(orig, rng)  # tools/probe_db_damage.py runs many more
        with open(path, "wb") as f:
            f.write(data)
        r = subprocess.run([sys.executable, "-c", "from store.cli.reconstruct import main; main()",
                            "-m"], env={**os.environ, "MSGSTORE_ROOT": root}, cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode in (0, 1, 4), (kind, r)
        assert "Traceback" not in r.stderr, (kind, r.stderr)
        if r.returncode == 4:
            assert r.stderr.count("\n") == 1 and "is damaged" in r.stderr, (kind, r.stderr)


def test_deliver_streams_a_big_message_instead_of_reading_it_whole(tmp_path):
    """Issue 11, item 6: peak memory stays far below the message's size."""
    import hashlib
    import subprocess
    import sys

    from conftest import ROOT
    root = str(tmp_path / "store")
    big = tmp_path / "big.eml"
    with open(big, "wb") as f:
        f.write(b"Subject: big\r\nDate: 5 Feb 2024 10:00 +0000\r\n\r\n")
        line = b"x" * 76 + b"\r\n"
        for _ in range(160 * 1024 * 1024 // len(line)):
            f.write(line)
    size = big.stat().st_size
    # VmHWM: the peak of this process's own memory since its exec (ru_maxrss would carry
    # the RSS of the pytest process it was forked from)
    code = ("import sys\nfrom store.cli.common import run\n"
            "from store.cli.deliver import cli\n"
            "rc = run(cli, 'deliver', sys.argv[1:])\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
            "print(rc, int(hwm.split()[1]) * 1024)\n")
    r = subprocess.run([sys.executable, "-c", code, "--store-root", root, "--create",
                        "user/joe", str(big)], cwd=ROOT, capture_output=True, text=True)
    rc, peak = r.stdout.split()[-2:]
    assert rc == "0", r
    assert int(peak) < size / 2, (peak, size)  # was over the size: every input read whole
    from store.mailbox import Store
    with Store.open(root) as s:
        rec = s.read("user/joe").records[0]
        assert rec.size == size and rec.sentdate == 1707127200
        h = hashlib.sha256()
        with open(big, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        assert rec.guid == h.digest()


def test_deliver_refuses_an_empty_message_and_stdin_twice(cli, root, tmp_path):
    from store.fsutil import leftover_temp_files
    assert cli("mboxutil", "--store-root", root, "-c", "user/joe").code == 0
    empty = tmp_path / "empty.eml"
    empty.write_bytes(b"")
    ok = tmp_path / "ok.eml"
    ok.write_bytes(b"Subject: ok\n\nok\n")
    r = cli("deliver", "--store-root", root, "user/joe", str(ok), str(empty))
    # sysexits: 65 (EX_DATAERR) for the message, 64 (EX_USAGE) for the command line
    assert r.code == 65 and "empty.eml is empty; nothing was delivered" in r.err and r.out == "", r
    r = cli("deliver", "--store-root", root, "user/joe", input=b"")
    assert r.code == 65 and "empty" in r.err
    r = cli("deliver", "--store-root", root, "user/joe", "-", "-", input=b"Subject: x\n\nx\n")
    assert r.code == 64 and "standard input ('-') can be given once" in r.err
    r = cli("mboxutil", "--store-root", root, "-l", "--json")
    assert '"messages": 0' in r.out
    assert leftover_temp_files(root) == []


def test_deliver_defers_while_stored_checks_the_database(cli, root):
    assert cli("mboxutil", "--store-root", root, "-c", "user/joe").code == 0
    with open(os.path.join(root, "config", "stored.state"), "w") as f:
        f.write(f"{os.getpid()} init\n")  # a live stored, not yet ready
    r = cli("deliver", "--store-root", root, "user/joe", input=b"Subject: x\n\nx\n")
    assert r.code == 75 and "4.3.0 stored (pid" in r.err and "checking or recovering" in r.err, r
    r = cli("deliver", "--store-root", root, "-a", "joe@example.com", input=b"Subject: x\n\nx\n")
    assert r.code == 75 and "checking or recovering" in r.err, r


def test_mboxutil_o_lists_and_deletes_orphaned_mailboxes(cli, root, tmp_path):
    """Issue 25 (Sun's mboxutil -o): the mailboxes of users the user database
    no longer has; -w FILE writes them, -o -d deletes them after a yes."""
    from store import accounts
    from store.layout import Layout
    from store.mailbox import Store
    with Store.init(root) as s:
        for n in ("user/joe", "user/joe/Sent", "user/gone", "user/gone/Old", "shared"):
            s.create(n)
    r = cli("mboxutil", "--store-root", root, "-o")
    assert r.code == 8 and "holds no user" in r.err, r  # no user database: nothing is orphan
    accounts.set_password(Layout.open(root), "joe", "pw")
    out = str(tmp_path / "orphans")
    r = cli("mboxutil", "--store-root", root, "-o", "-w", out)
    assert r.code == 0 and r.out.split() == ["user/gone/INBOX", "user/gone/Old"], r
    assert open(out).read().split() == ["user/gone/INBOX", "user/gone/Old"]
    r = cli("mboxutil", "--store-root", root, "-o", "-d", input="n\n")
    assert r.code == 0 and "nothing deleted" in r.err, r
    r = cli("mboxutil", "--store-root", root, "-o", "-d", input="y\n")
    assert r.code == 0 and "deleted user/gone/Old" in r.out, r
    with Store.open(root) as s:
        assert [i.name for i in s.list()] == ["shared", "user/joe/INBOX", "user/joe/Sent"]
    assert cli("mboxutil", "--store-root", root, "-d").code == 16


def test_imquotacheck_reports_fullest_first_and_warns_from_cron(cli, root):
    """Issue 25: an imquotacheck-style report (usage per root, sorted, --json)
    and the warning run from cron for a root whose limit was lowered."""
    import json

    from store.mailbox import Store
    with Store.init(root) as s:
        for u, n in (("a", 1), ("b", 3), ("c", 0)):
            s.create(f"user/{u}")
            for i in range(n):
                s.append(f"user/{u}", b"Subject: %d\n\n" % i + b"x" * 1000)
        s.set_quota("user/a", 10_000)
        s.set_quota("user/b", 3_300)  # lowered past 90%: no delivery has warned
    r = cli("imquotacheck", "--store-root", root, "--json")
    assert r.code == 0, r
    got = json.loads(r.out)
    assert [q["root"] for q in got["roots"]] == ["user/b", "user/a", "user/c"]
    assert got["roots"][0]["percent"] >= 90 and got["roots"][2]["percent"] is None
    r = cli("imquotacheck", "--store-root", root, "--over", "50", "--json")
    assert [q["root"] for q in json.loads(r.out)["roots"]] == ["user/b"]
    r = cli("imquotacheck", "--store-root", root, "--warn")
    assert r.code == 0 and "warned user/b" in r.out, r
    r = cli("imquotacheck", "--store-root", root, "--warn")  # once per crossing
    assert "warned" not in r.out, r
    with Store.open(root) as s:
        last = s.read("user/b").records[-1]
        assert b"Subject: Your mailbox is" in s.message("user/b", last.uid)


def test_mboxutil_status_and_auth_test_as_doveadm_does(cli, root):
    """Issue 26: `doveadm mailbox status` and `doveadm auth test` equivalents."""
    from store import accounts
    from store.index import FLAG_SEEN
    from store.layout import Layout
    from store.mailbox import Store
    with Store.init(root) as s:
        s.create("user/joe")
        s.append("user/joe", b"Subject: a\n\nx\n")
        s.append("user/joe", b"Subject: b\n\ny\n", flags=FLAG_SEEN)
        h = s.header("user/joe")
    accounts.set_password(Layout.open(root), "joe", "sesame")
    r = cli("mboxutil", "--store-root", root, "--status", "user/joe", "--json")
    assert r.code == 0, r
    got = json.loads(r.out)
    assert (got["messages"], got["unseen"], got["uidnext"], got["uidvalidity"]) == \
        (2, 1, 3, h.uidvalidity) and got["bytes"] == 28 and got["highestmodseq"] >= 2, got
    assert cli("mboxutil", "--store-root", root, "--status", "user/nobody").code == 8
    r = cli("mboxutil", "--store-root", root, "--auth-test", "joe", input="sesame\n")
    assert r.code == 0 and r.out == "joe: password accepted\n", r
    r = cli("mboxutil", "--store-root", root, "--auth-test", "joe", input="wrong\n")
    assert r.code == 8 and "password refused" in r.err and "wrong" not in r.err + r.out, r
    r = cli("mboxutil", "--store-root", root, "--auth-test", "nobody", input="x\n")
    assert r.code == 8, r


def test_imcheck_fetch_and_search_one_mailbox(cli, root):
    """Issue 26: `doveadm fetch` / `doveadm search` equivalents for one mailbox."""
    from store.mailbox import Store
    with Store.init(root) as s:
        s.create("user/joe")
        a = s.append("user/joe", b"Subject: Invoice 7\nFrom: acme@example.com\n\nbody\n")
        b = s.append("user/joe", b"Subject: =?utf-8?q?R=C3=A9union?=\n\nx\n")
    r = cli("imcheck", "--store-root", root, "-m", "user/joe", "--fetch", str(a))
    assert r.code == 0 and r.out == "Subject: Invoice 7\nFrom: acme@example.com\n\nbody\n", r
    r = cli("imcheck", "--store-root", root, "-m", "user/joe", "--search", "subject: invoice")
    assert r.code == 0 and r.out.split() == [str(a)], r
    r = cli("imcheck", "--store-root", root, "-m", "user/joe", "--search", "Subject: réunion",
            "--json")
    assert json.loads(r.out)["uids"] == [b], r
    r = cli("imcheck", "--store-root", root, "-m", "user/joe", "--search", "acme@example")
    assert r.out.split() == [str(a)], r
    assert cli("imcheck", "--store-root", root, "-m", "user/joe", "--fetch", "99").code == 8
    assert cli("imcheck", "--store-root", root, "--fetch", "1").code == 16
