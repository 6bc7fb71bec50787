# Sourced by demo.sh and test.sh: create or refresh .venv with the package and its test tools.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
# The install is editable: code changes need none. It is redone when pyproject.toml (the
# dependencies, the console scripts) changed since the last one, or the stamp is missing.
stamp=".venv/.installed-$(python3 -c 'import hashlib,sys; print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest()[:16])')"
if [ ! -e "$stamp" ]; then
  # compat: a plain path entry, not setuptools' import finder, which costs every command ~15 ms
  # of start-up (deliver runs once per message)
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' \
    --config-settings editable_mode=compat
  rm -f .venv/.installed-*
  touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
