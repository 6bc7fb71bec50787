import os

from store.config import SETTINGS, config_path


def test_snapshotinterval_validation(cli, store):
    root = store.layout.root
    before = open(config_path(root), "rb").read()
    r = cli("configutil", "--store-root", root, "-o", "local.store.snapshotinterval", "-v", "0")
    assert r.code == 16 and "out of range" in r.err and r.err.count("\n") == 1
    assert open(config_path(root), "rb").read() == before
    assert cli("configutil", "--store-root", root, "-o", "local.store.snapshotinterval",
               "-v", "60").code == 0
    r = cli("configutil", "--store-root", root, "-o", "local.store.snapshotinterval")
    assert r.code == 0 and r.out.strip() == "60"


def test_unknown_and_bad_values_leave_file_unchanged(cli, store):
    root = store.layout.root
    before = open(config_path(root), "rb").read()
    for name, value in (("no.such.setting", "1"), ("local.store.snapshotdirs", "1"),
                        ("local.store.snapshotdirs", "368"), ("local.store.snapshotdirs", "x"),
                        ("local.store.expirestart", "24")):
        r = cli("configutil", "--store-root", root, "-o", name, "-v", value)
        assert r.code == 16, (name, value, r)
    assert open(config_path(root), "rb").read() == before
    assert not [f for f in os.listdir(os.path.dirname(config_path(root))) if f.startswith(".tmp")]


def test_list_shows_every_setting_with_source(cli, store):
    root = store.layout.root
    cli("configutil", "--store-root", root, "-o", "local.store.snapshotdirs", "-v", "7")
    r = cli("configutil", "--store-root", root, "-l", "--json")
    import json
    rows = {x["name"]: x for x in json.loads(r.out)}
    assert set(SETTINGS) <= set(rows)
    assert rows["local.store.snapshotdirs"] == {**rows["local.store.snapshotdirs"], "value": "7",
                                                "source": "file"}
    assert rows["local.store.snapshotpath"]["value"] == "dbdata/snapshots"
    assert rows["local.store.snapshotpath"]["source"] == "default"


def test_partitions_are_settings(cli, store, tmp_path):
    root = store.layout.root
    assert cli("configutil", "--store-root", root, "-o", "store.partition.second.path",
               "-v", str(tmp_path / "p2")).code == 0
    from store.mailbox import Store
    s = Store.open(root)
    assert s.layout.config.partitions() == {"primary": os.path.join(root, "partition/primary"),
                                            "second": str(tmp_path / "p2")}


def test_a_bad_settings_line_names_file_and_line_and_configutil_l_still_lists(cli, tmp_path):
    """Issue 11, items 8 and 10: a typo or bytes that are not UTF-8 give a
    one-line error with file:line from every command; configutil -l lists
    the settings anyway and marks the bad lines (exit 16)."""
    import json
    import os
    root = str(tmp_path / "store")
    assert cli("mboxutil", "--store-root", root, "-c", "user/joe").code == 0
    conf = os.path.join(root, "config", "store.conf")
    with open(conf, "ab") as f:
        f.write(b"local.store.snapshotinterval = 60\nlocal.store.snapshotdirz = 3\n\xff\xfe = 1\n")
    for prog, args in (("mboxutil", ["-l"]), ("reconstruct", ["-n", "-r"]), ("stored", ["-t"]),
                       ("configutil", ["-o", "local.store.snapshotdirs"])):
        r = cli(prog, "--store-root", root, *args)
        assert r.code == 16, (prog, r)
        assert r.err.count("\n") == 1 and f"{conf}:" in r.err, (prog, r)
    r = cli("configutil", "--store-root", root, "-l")
    assert r.code == 16
    assert "local.store.snapshotinterval\t60\tfile" in r.out
    n = open(conf, "rb").read().count(b"\n")  # the last line: the bytes that are not UTF-8
    assert f"{conf}:{n - 1}: unknown setting 'local.store.snapshotdirz'" in r.err
    assert f"{conf}:{n}: not UTF-8 text" in r.err
    rows = json.loads(cli("configutil", "--store-root", root, "-l", "--json").out)
    assert [e["error"].split(": ")[0] for e in rows if "error" in e] == [f"{conf}:{n - 1}",
                                                                        f"{conf}:{n}"]


def test_every_kind_validates_as_documented():
    import pytest

    from store import settings
    from store.errors import SettingError
    good = {settings.AUTORESTART: [("yes", "1"), ("Off", "0"), (" 1 ", "1")],
            settings.QUOTA_WARN: [("85%", "85"), ("0", "0")],
            settings.IMAP_PORT: [("993", "993"), ("0", "0")],
            settings.LISTEN_ADDRESS: [("::1", "::1"), ("0.0.0.0", "0.0.0.0"),
                                      ("Mail.Example.com", "mail.example.com")],
            settings.SNAPSHOT_INTERVAL: [("60", "60")],
            settings.LMTP_DOMAINS: [("Example.com, b.org", "example.com,b.org"), ("", "")],
            settings.TLS_CERT_FILE: [("", ""), ("/etc/ssl/x.pem", "/etc/ssl/x.pem")]}
    for s, pairs in good.items():
        for raw, stored in pairs:
            assert s.validate(raw) == stored, (s.name, raw)
    bad = {settings.AUTORESTART: ["2", "maybe"], settings.QUOTA_WARN: ["101", "-1", "9.5"],
           settings.IMAP_PORT: ["65536", "http"], settings.LISTEN_ADDRESS: ["300.1.1.1/8", "a b"],
           settings.SNAPSHOT_INTERVAL: ["0", "1h"], settings.SNAPSHOT_PATH: [""],
           settings.MSPROBE_SCHEDULE: ["61 * * * *"]}
    for s, raws in bad.items():
        for raw in raws:
            with pytest.raises(SettingError):
                s.validate(raw)


def test_every_default_is_valid_and_every_constant_is_in_the_table():
    from store import settings
    for s in settings.SETTINGS.values():
        assert s.validate(s.default) == s.default, s.name
    constants = {v.name for v in vars(settings).values() if isinstance(v, settings.Setting)}
    assert constants == set(settings.SETTINGS)


def test_the_admin_guides_settings_table_is_the_generated_one():
    from gen_settings_reference import PATH, render
    page = open(PATH, encoding="utf-8").read()
    assert render(page) == page, "run: python tools/gen_settings_reference.py"


def test_no_code_reads_a_setting_by_its_name():
    """settings.X, not "local.x": a misspelt name is caught by mypy, not at run time."""
    import re

    from conftest import ROOT

    from store.settings import SETTINGS
    names = "|".join(re.escape(n) for n in SETTINGS)
    found = []
    for d, _s, fs in os.walk(os.path.join(ROOT, "store")):
        for f in fs:
            if f.endswith(".py") and f != "settings.py":
                for i, line in enumerate(open(os.path.join(d, f), encoding="utf-8"), 1):
                    if re.search(rf"""\b(get|get_int|get_bool|resolve_path)\(\s*["']({names})""",
                                 line):
                        found.append(f"{f}:{i}")
    assert found == []


def test_the_seeds_spellings_and_oracle_8_names_are_taken(cli, root):
    """Issue 25: booleans as on/off, yes/no, true/false in any case; the seed's
    full msprobe crontab value; Oracle Messaging Server 8's names as aliases,
    shown and stored under the seed's names."""
    from store.mailbox import Store
    Store.init(root).close()
    for name, value, want in (("local.autorestart", "YES", "1"),
                              ("local.watcher.enable", "Off", "0"),
                              ("local.schedule.msprobe.enable", "NO", "0"),
                              ("local.schedule.msprobe", "5,15,25,35,45,55 * * * * lib/msprobe",
                               "5,15,25,35,45,55 * * * *"),
                              ("base.autorestart.enable", "true", "1"),
                              ("base.autorestart.timeout", "300", "300"),
                              ("watcher.enable", "on", "1"),
                              ("schedule.task:msprobe.crontab", "0 * * * * msprobe", "0 * * * *"),
                              ("schedule.task:msprobe.enable", "false", "0")):
        r = cli("configutil", "--store-root", root, "-o", name, "-v", value)
        assert r.code == 0 and r.out.strip() == want, (name, r)
    r = cli("configutil", "--store-root", root, "-o", "base.autorestart.timeout", "--json")
    assert '"name": "local.autorestart.timeout"' in r.out
    r = cli("configutil", "--store-root", root, "-o", "local.schedule.msprobe",
            "-v", "0 * * * * lib/imsbackup")
    assert r.code == 16 and "five fields" in r.err, r
    with open(f"{root}/config/store.conf") as f:
        text = f.read()
    assert "base.autorestart" not in text and "watcher.enable = 1" not in text.replace(
        "local.watcher.enable = 1", "")


def test_a_partition_added_while_a_service_runs_is_found_without_a_restart(root, tmp_path):
    """Issue 25: a partition added by configutil was `unknown partition` (LMTP
    451, IMAP NO [CANNOT]) in running services until they were restarted."""
    from store.layout import Layout
    from store.mailbox import Store
    with Store.init(root) as running:  # a service's store, settings read at its start
        running.create("user/joe")
        Layout.open(root).config.set("store.partition.second.path", str(tmp_path / "second"))
        running.create("user/joe/Archive", "second")
        assert running.entry("user/joe/Archive").partition == "second"
        import pytest

        from store.errors import StoreError
        with pytest.raises(StoreError, match="unknown partition 'third'"):
            running.create("user/joe/Other", "third")
