"""tools/typecheck.py: a mypy error the baseline does not hold fails the
check (line numbers do not matter; one more of a known error does)."""

import collections

from typecheck import compare, errors

OUT = """store/a.py:10: error: Incompatible types in assignment (expression has type "str", \
variable has type "int")  [assignment]
store/a.py:12: note: By default the bodies of untyped functions are not checked  [annotation-unchecked]
store/b.py:3: error: Item "None" of "X | None" has no attribute "y"  [union-attr]
Found 2 errors in 2 files (checked 2 source files)
"""


def test_new_errors_fail_and_moved_ones_do_not():
    found = errors(OUT)
    assert sum(found.values()) == 2
    assert compare(found, found) == ([], 0)
    moved = errors(OUT.replace(":10:", ":99:"))
    assert compare(moved, found) == ([], 0)  # the same error on another line
    twice = errors(OUT + OUT.splitlines()[2] + "\n")
    new, _gone = compare(twice, found)
    assert new == ['store/b.py: [union-attr] Item "None" of "X | None" has no attribute "y"'] * 2
    reworded = errors(OUT.replace("has no attribute", "lacks attribute"))
    assert compare(reworded, found) == ([], 0)  # another mypy's wording: not new
    other_code = errors(OUT.replace("[union-attr]", "[attr-defined]"))
    assert compare(other_code, found)[0] != []
    fewer = errors(OUT.splitlines()[0])
    assert compare(fewer, found) == ([], 1)
    assert compare(collections.Counter(), found) == ([], 2)
