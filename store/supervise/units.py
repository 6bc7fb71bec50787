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


def writable_paths(layout: Layout) -> list[str]:
    """The store root and what the settings put outside it (partitions, the
    snapshots, the sockets' directories): all a service may write."""
    c = layout.config
    paths = [layout.root, *c.partitions().values(), c.resolve_path(settings.SNAPSHOT_PATH),
             os.path.dirname(c.resolve_path(settings.LMTP_SOCKET)),
             os.path.dirname(c.resolve_path(settings.POLICY_SOCKET))]
    out: list[str] = []
    for p in (os.path.abspath(p) for p in paths):
        if not any(p == o or p.startswith(o.rstrip("/") + "/") for o in out):
            out.append(p)
    return out


def hardening(layout: Layout, capabilities: str = "") -> str:
    """systemd's sandboxing for a service of the store: the file system
    read-only but for the store, no privilege gained, no devices, kernel
    settings or other users' homes, sockets of the families it uses, and the
    system calls of an ordinary service. (No MemoryDenyWriteExecute: cffi,
    which argon2 uses, may need writable executable memory.)"""
    rw = " ".join(f'"{p}"' if " " in p else p for p in writable_paths(layout))
    return ("NoNewPrivileges=yes\nProtectSystem=strict\n"
            f"ReadWritePaths={rw}\n"
            "ProtectHome=yes\nPrivateTmp=yes\nPrivateDevices=yes\nDevicePolicy=closed\n"
            "PrivateMounts=yes\n"
            "ProtectKernelTunables=yes\nProtectKernelModules=yes\nProtectKernelLogs=yes\n"
            "ProtectControlGroups=yes\nProtectClock=yes\nProtectHostname=yes\n"
            "ProtectProc=invisible\nRestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n"
            "RestrictNamespaces=yes\nRestrictRealtime=yes\nRestrictSUIDSGID=yes\n"
            "LockPersonality=yes\nRemoveIPC=yes\nKeyringMode=private\nUMask=0027\n"
            # a call outside the set fails (EPERM) instead of killing the service
            "SystemCallFilter=@system-service\nSystemCallErrorNumber=EPERM\n"
            "SystemCallArchitectures=native\n"
            f"CapabilityBoundingSet={capabilities}\n")


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
    caps = ""
    if svc.program in ("imapd", "popd"):  # 143, 993, 110, 995 are below 1024
        extra += "AmbientCapabilities=CAP_NET_BIND_SERVICE\nLimitNOFILE=65536\n"
        caps = "CAP_NET_BIND_SERVICE"
    extra += hardening(layout, caps)
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
        "SuccessExitStatus=1 2 3\n"  # its statuses are Nagios': the result, not a failure
        + hardening(layout))
    out[f"{PREFIX}msprobe.timer"] = (
        "[Unit]\nDescription=Run msprobe at 5, 15, ..., 55 past each hour (Sun's schedule)\n\n"
        f"[Timer]\nOnCalendar={MSPROBE_CALENDAR}\nPersistent=false\n\n"
        "[Install]\nWantedBy=timers.target\n")
    return out
