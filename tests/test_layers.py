"""The layer contract (pyproject.toml, [tool.importlinter]) holds, and a
deliberate upward import breaks it: the check that tools/test.sh runs in CI."""

import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

LINT = os.path.join(os.path.dirname(sys.executable), "lint-imports")


def _lint(tree: str) -> subprocess.CompletedProcess:
    return subprocess.run([LINT, "--no-cache"], cwd=tree, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": tree}, timeout=300)


@pytest.fixture
def tree(tmp_path):
    if not os.path.exists(LINT):
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    shutil.copytree(os.path.join(ROOT, "store"), tmp_path / "store",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), tmp_path)
    return str(tmp_path)


def test_the_layers_are_kept(tree):
    r = _lint(tree)
    assert r.returncode == 0 and "2 kept, 0 broken" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("module,upward", [
    ("mailbox/quota.py", "from ..reconstruct import findings"),  # mailbox -> reconstruct
    ("reconstruct/runner.py", "from ..daemon import state"),     # the old runner <-> stored cycle
    ("cli/imcheck.py", "import lmdb"),                           # the CLI reaching past db
])
def test_an_upward_import_breaks_the_build(tree, module, upward):
    path = os.path.join(tree, "store", module)
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"\n{upward}  # noqa\n")
    r = _lint(tree)
    assert r.returncode != 0 and "BROKEN" in r.stdout, r.stdout + r.stderr
