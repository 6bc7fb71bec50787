#!/usr/bin/env python3
"""Regenerate docs/log-messages.md from the registries: the log catalogue
(store/logmsg.py) and the reconstruct finding kinds (store/reconstruct/findings.py)."""

import logging
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from store.logmsg import catalogue  # noqa: E402
from store.logsetup import LOG_FILE  # noqa: E402
from store.reconstruct.findings import KINDS  # noqa: E402

INTRO = f"""# Log message reference

Every message an administrator may need to act on, from the catalogue in `store/logmsg.py`
(this page is generated from it: `python tools/gen_log_reference.py`). Messages go to
`<root>/log/{LOG_FILE}`, one line each:

```
2026-11-22 09:00:30,123 4711 store.index ERROR: Mailbox corrupted, missing fixed headers: user/joe/INBOX
```

Fields: time, process id, component (`store.<module>`), severity, message. The wording is
stable: scripts may match on it. Values in `{{braces}}` are filled in. Commands print the same
text on standard error when the damage stops them.

| code | severity | message | what to do |
|---|---|---|---|
"""


FINDINGS = """
## reconstruct findings

Each `reconstruct` line in the log and on standard output (`MAILBOX: DETAIL -> ACTION`) and
each `--json` finding (`kind`, `mailbox`, `detail`, `problem`, `action`, `applied`) has a kind,
from the registry in `store/reconstruct/findings.py`. `reconstruct -n` prints the action it
would take (`-> would drop record uid 3`); a repair prints the same finding once, with the
action done (`-> record uid 3 dropped`). A finding that is not a problem never makes the exit
code non-zero. `counts` names the summary figure the kind adds to. Kinds that are also log
messages (the index, cache and store.exp damage) have their text in the table above.

| kind | problem | counts | what it means, what to do |
|---|---|---|---|
"""


def render() -> str:
    """The whole page, from the two registries."""
    rows = []
    for code, m in catalogue().items():
        text = m.text.replace("|", "\\|").replace("!r", "")
        rows.append(f"| `{code}` | {logging.getLevelName(m.level)} | {text} | {m.action} |")
    kinds = [f"| `{k}` | {'yes' if v.problem else 'no'} | {v.counts or ''} | "
             f"{'(log message above) ' if v.log_code else ''}{v.meaning} |"
             for k, v in sorted(KINDS.items())]
    return INTRO + "\n".join(rows) + "\n" + FINDINGS + "\n".join(kinds) + "\n"


PATH = os.path.join(HERE, "..", "docs", "log-messages.md")


def main() -> None:
    with open(PATH, "w", encoding="utf-8") as f:
        f.write(render())


if __name__ == "__main__":
    main()
