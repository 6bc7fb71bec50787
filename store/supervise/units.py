"""systemd units for the services, made from the registry and the settings:
the systemd form of start-msg and the watcher. Each service `Requires=` and
`PartOf=` stored (a restart of stored restarts them: the seeds' "restart all
store services"); `Restart=on-failure` with local.autorestart, limited to
local.autorestart.count restarts per local.autorestart.timeout (StartLimitBurst
= the count + the first start, within StartLimitIntervalSec), as the watcher
limits it; msprobe runs from a timer
on the seeds' schedule."""

from __future__ import annotations

import os

from .. import settings
from ..layout import Layout
from .registry import SERVICES, STORE, Service

PREFIX = "msgstore-"
DESCRIPTIONS = {"stored": "Message store daemon (stored)",
                "lmtpd": "Message store LMTP delivery service (lmtpd)",
                "imapd": "Message store IMAP service (imapd)",
                "popd": "Message store POP3 service (popd)"}
# the seeds' msprobe schedule, 5,15,25,35,45,55 * * * *
MSPROBE_CALENDAR = "*-*-* *:05,15,25,35,45,55:00"


def unit_name(svc: Service) -> str:
    return f"{PREFIX}{svc.program}.service"


def _service(layout: Layout, svc: Service, bindir: str, user: str, group: str) -> str:
    c = layout.config
    restart = "on-failure" if c.get_bool(settings.AUTORESTART) else "no"
    after = "After=local-fs.target\n" if svc is STORE else (
        f"Requires={unit_name(STORE)}\nAfter={unit_name(STORE)}\nPartOf={unit_name(STORE)}\n")
    # a recovery from a snapshot on 1,000,000 mailboxes took under 3 s here: room to spare
    extra = "TimeoutStartSec=300\n"
    if svc is STORE:
        extra += "NotifyAccess=main\nExecReload=/bin/kill -HUP $MAINPID\nWatchdogSec=60\n"
    if svc.program in ("imapd", "popd"):
        extra += "AmbientCapabilities=CAP_NET_BIND_SERVICE\nLimitNOFILE=65536\n"
    if svc.program == "lmtpd":
        extra += "NotifyAccess=main\nWatchdogSec=30\n"
    return (f"[Unit]\nDescription={DESCRIPTIONS.get(svc.program, svc.program)}\n{after}"
            f"StartLimitIntervalSec={c.get_int(settings.AUTORESTART_TIMEOUT)}\n"
            f"StartLimitBurst={c.get_int(settings.AUTORESTART_COUNT) + 1}\n\n"
            f"[Service]\nType=notify\nUser={user}\nGroup={group}\n"
            f"Environment=MSGSTORE_ROOT={layout.root}\n"
            f"ExecStart={os.path.join(bindir, svc.program)}\n"
            f"Restart={restart}\nRestartSec=2\nTimeoutStopSec=30\n{extra}\n"
            "[Install]\nWantedBy=multi-user.target\n")


def units(layout: Layout, bindir: str, user: str, group: str) -> dict[str, str]:
    """File name -> text, for every enabled service and msprobe's timer."""
    out = {unit_name(s): _service(layout, s, bindir, user, group) for s in SERVICES
           if layout.config.get_bool(s.enable)}
    out[f"{PREFIX}msprobe.service"] = (
        "[Unit]\nDescription=Message store probe (msprobe)\n"
        f"After={unit_name(STORE)}\n\n"
        f"[Service]\nType=oneshot\nUser={user}\nGroup={group}\n"
        f"Environment=MSGSTORE_ROOT={layout.root}\n"
        f"ExecStart={os.path.join(bindir, 'msprobe')} --nagios --restart --state timer\n"
        "SuccessExitStatus=1 2 3\n")  # its statuses are Nagios': the result, not a failure
    out[f"{PREFIX}msprobe.timer"] = (
        "[Unit]\nDescription=Run msprobe at 5, 15, ..., 55 past each hour (Sun's schedule)\n\n"
        f"[Timer]\nOnCalendar={MSPROBE_CALENDAR}\nPersistent=false\n\n"
        "[Install]\nWantedBy=timers.target\n")
    return out
