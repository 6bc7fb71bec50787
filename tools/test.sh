#!/usr/bin/env bash
# Set up (or refresh) the virtual environment; run the whole test suite (in parallel, pytest-xdist),
# then the linter, the layer contract and the type check against its baseline -- each of them even
# when one before it failed. Exits 1 when any of them failed, naming them.
source "$(dirname "$0")/venv.sh"
set +e
failed=()
python -m pytest -q -n "${TEST_WORKERS:-4}" -p no:cacheprovider --durations=10 "$@" || failed+=(pytest)
ruff check store tools tests || failed+=(ruff)
lint-imports || failed+=(lint-imports)
python tools/typecheck.py || failed+=(mypy)
if [ ${#failed[@]} -gt 0 ]; then
  echo "tools/test.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "tools/test.sh: tests, ruff, import contract and mypy baseline all passed"
