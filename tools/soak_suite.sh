#!/usr/bin/env bash
# Run the whole test suite (pytest, as tools/test.sh runs it; ruff, the import contract and
# mypy are static and run once, not N times) N times in a row beside a CPU load, to show it does
# not flake: prints one line per run (passed / FAILED and its time) and the failures' names.
#   bash tools/soak_suite.sh 20                 # with stress-ng --cpu 4 beside it (Debian stress-ng)
#   LOAD=0 bash tools/soak_suite.sh 5           # no load
# Logs: $SOAK_DIR (default /tmp/soak-<pid>)/run-<i>.log. Exit 1 when any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."
source tools/venv.sh
set +e
n=${1:-20}
dir=${SOAK_DIR:-/tmp/soak-$$}
mkdir -p "$dir"
load_pid=
if [ "${LOAD:-1}" != 0 ]; then
  command -v stress-ng >/dev/null || { echo "soak_suite: stress-ng is not installed" >&2; exit 2; }
  stress-ng --cpu 4 --timeout 86400 >/dev/null 2>&1 &
  load_pid=$!
  trap 'kill $load_pid 2>/dev/null' EXIT
fi
failed=0
for i in $(seq 1 "$n"); do
  t0=$(date +%s)
  if python -m pytest -q -n "${TEST_WORKERS:-4}" -p no:cacheprovider --durations=10 \
      --basetemp="$dir/tmp" > "$dir/run-$i.log" 2>&1; then
    echo "run $i: passed in $(( $(date +%s) - t0 )) s"
  else
    failed=$((failed + 1))
    echo "run $i: FAILED in $(( $(date +%s) - t0 )) s: $(grep -E '^(FAILED|ERROR) tests/' "$dir/run-$i.log" | tr '\n' ' ')"
  fi
done
echo "$n runs, $failed failed (logs in $dir)"
[ "$failed" = 0 ]
