"""Every command option and setting the documents and the log's advice name
exists (issue 25: `mboxutil --locks`, `imdbverify -s "lists them"` and
`local.store.snapshotcount` were named and did not exist). Options are
checked against each console script's --help, settings against the table
(aliases included)."""

import glob
import importlib
import os
import re
import tomllib

from click.testing import CliRunner
from conftest import ROOT

from store import logmsg
from store.errors import SettingError
from store.settings import lookup

# dotted names in the documents that are files, loggers, modules or patterns, not settings
NOT_SETTINGS = {"store.idx", "store.cache", "store.exp", "store.conf", "store.deleted",
                "store.move", "store.expirerule",
                "store.partition", "store.stored", "store.db", "store.py", "store.dbverify",
                "store.cli.deliver", "store.cli.reconstruct", "local.lmtp", "schedule.py",
                "watcher.py"}
SETTING = re.compile(r"(?<![\w/.-])((?:local|service|lmtp|imap|pop|store|base|watcher|schedule)"
                     r"\.[a-z][a-z0-9_.:-]*[a-z0-9])")


def _texts() -> dict[str, str]:
    out = {os.path.relpath(f, ROOT): open(f, encoding="utf-8").read()
           for f in glob.glob(os.path.join(ROOT, "docs", "*.md")) + [os.path.join(ROOT,
                                                                                  "README.md")]}
    out["the log catalogue"] = "\n".join(f"{m.text}\n{m.action}" for m in logmsg._ALL.values())
    return out


def _helps() -> dict[str, str]:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    helps = {}
    for name, target in scripts.items():
        module, fn = target.split(":")
        mod = importlib.import_module(module)
        command = getattr(mod, "cli" if fn == "main" else fn.replace("_main", "_cli"))
        helps[name] = CliRunner().invoke(command, ["--help"], prog_name=name).output
    return helps


def test_every_setting_named_exists():
    missing = set()
    for where, text in _texts().items():
        for span in re.findall(r"`([^`\n]+)`", text) + ([text] if "catalogue" in where else []):
            for name in SETTING.findall(span):
                if name in NOT_SETTINGS:
                    continue
                try:
                    lookup(name)
                except SettingError:
                    missing.add((where, name))
    assert not missing, sorted(missing)


def test_every_option_named_exists():
    helps = _helps()
    names = "|".join(re.escape(c) for c in sorted(helps, key=len, reverse=True))
    mention = re.compile(rf"(?<![\w/.,-])({names})((?:[ \t]+(?:-{{1,2}}[A-Za-z][\w-]*|[A-Z][A-Z_.]*"
                         rf"|\[[^\]\n]*\]|<[^>\n]*>|[\w/.]+))*)")
    missing = set()
    for where, text in _texts().items():
        # a tool's command line names the commands it drives (tools/torture.py --ops imapd ...),
        # sometimes wrapped over two lines
        text = re.sub(r"--ops[ \t\n]+[\w,-]+", "", text)
        for line in text.splitlines():
            for m in mention.finditer(line):
                for option in re.findall(r"(?<![\w])(--?[A-Za-z][\w-]*)", m.group(2)):
                    if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])",
                                     helps[m.group(1)]):
                        missing.add((where, m.group(1), option))
    assert not missing, sorted(missing)


def test_the_seeds_table_names_tests_and_tools_that_exist():
    """docs/seeds.md names, for each requirement, the test that holds it:
    each file and test function named must be there."""
    text = open(os.path.join(ROOT, "docs", "seeds.md"), encoding="utf-8").read()
    missing = []
    for name, func in re.findall(r"`(test_\w+\.py)(?:::(\w+))?`", text):
        path = os.path.join(ROOT, "tests", name)
        if not os.path.exists(path):
            missing.append(name)
        elif func and f"def {func}(" not in open(path, encoding="utf-8").read():
            missing.append(f"{name}::{func}")
    missing += [t for t in re.findall(r"`(tools/\w+\.py)`", text)
                if not os.path.exists(os.path.join(ROOT, t))]
    assert not missing, missing
    rows = re.findall(r"^\| (\d{3}-\d+) \|", text, re.M)
    assert len(rows) == len(set(rows)) and len(rows) >= 80, len(rows)
