#!/usr/bin/env python3
"""Regenerate the settings table of docs/admin-guide.md from store/settings.py
(the text between its two markers); tests/test_config.py checks that they match."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from store.settings import SETTINGS  # noqa: E402

PATH = os.path.join(HERE, "..", "docs", "admin-guide.md")
BEGIN = "<!-- settings table: generated from store/settings.py by tools/gen_settings_reference.py -->"
END = "<!-- end of the settings table -->"


def table() -> str:
    rows = ["| name | default | kind | valid | meaning |", "|---|---|---|---|---|"]
    for s in SETTINGS.values():
        default = f"`{s.default}`" if s.default else "(empty)"
        rows.append(f"| `{s.name}` | {default} | {s.kind.value} | {s.valid()} | "
                    f"{s.description.replace('|', chr(92) + '|')} |")
    rows.append("| `store.partition.<name>.path` | (none) | path | path | spool directory of "
                "another partition (absolute, or relative to the store root) |")
    return "\n".join(rows) + "\n"


def render(page: str) -> str:
    """The page with its table between the markers made anew."""
    head, sep, rest = page.partition(BEGIN)
    _old, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"{PATH}: the settings table markers are missing")
    return f"{head}{BEGIN}\n{table()}{END}{tail}"


def main() -> None:
    with open(PATH, encoding="utf-8") as f:
        page = f.read()
    with open(PATH, "w", encoding="utf-8") as f:
        f.write(render(page))


if __name__ == "__main__":
    main()
