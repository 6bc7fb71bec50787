#!/usr/bin/env bash
# Alternate a reconstruct command between two source trees on one store, wall time per run.
#   tools/ab_reconstruct.sh BEFORE_TREE AFTER_TREE STORE_ROOT RUNS -- ARGS...
# e.g.  git worktree add /tmp/before <rev>
#       tools/ab_reconstruct.sh /tmp/before . /tmp/bench-rec-100k 6 -- -r -f -i -j 2
set -euo pipefail
before=$(cd "$1" && pwd); after=$(cd "$2" && pwd); root=$3; runs=$4; shift 5
py=${PYTHON:-$(dirname "$0")/../.venv/bin/python}
for _ in $(seq "$runs"); do
  for tree in "$before" "$after"; do
    s=$(date +%s.%N)
    PYTHONPATH=$tree MSGSTORE_ROOT=$root "$py" -c "from store.cli.reconstruct import main; main()" \
      "$@" >/dev/null 2>&1 || true
    e=$(date +%s.%N)
    echo "$([ "$tree" = "$before" ] && echo before || echo after) $(echo "$e - $s" | bc)"
  done
done | sort | awk '{v[$1] = v[$1] " " $2} END {for (k in v) print k ":" v[k]}'
