#!/usr/bin/env python3
"""Regenerate docs/log-messages.md from the catalogue in store/logmsg.py."""

import logging
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from store.logmsg import LOG_FILE, catalogue  # noqa: E402
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

Each `reconstruct` line in the log (`reconstruct: MAILBOX: DETAIL -> ACTION`) and each
`--json` finding has a kind. The kinds that are log codes are in the table above (the index,
cache and store.exp damage); the others:

| kind | what it means, what to do |
|---|---|
"""


def main() -> None:
    rows = []
    for code, m in catalogue().items():
        text = m.text.replace("|", "\\|").replace("!r", "")
        rows.append(f"| `{code}` | {logging.getLevelName(m.level)} | {text} | {m.action} |")
    kinds = [f"| `{k}` | {v} |" for k, v in sorted(KINDS.items())]
    path = os.path.join(HERE, "..", "docs", "log-messages.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(INTRO + "\n".join(rows) + "\n" + FINDINGS + "\n".join(kinds) + "\n")


if __name__ == "__main__":
    main()
