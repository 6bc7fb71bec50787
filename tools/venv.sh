# Sourced by demo.sh and test.sh: create or refresh .venv with the package and its test tools.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python3 -m venv .venv
# compat: a plain path entry, not setuptools' import finder, which costs every command ~15 ms
# of start-up (deliver runs once per message)
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' \
  --config-settings editable_mode=compat
export PATH="$PWD/.venv/bin:$PATH"
