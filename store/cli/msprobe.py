"""msprobe: probe each running service and run the monitoring checks of the
seeds' 20.14.1, with Nagios plugin exit codes."""

from __future__ import annotations

import os
import re

import click

from .. import logmsg, logsetup, settings
from ..layout import Layout
from ..supervise import probe
from .common import emit_json, entry, render_table, resolve_root, store_root_option
from .msgctl import _ask

EPILOG = """\b
Examples:
  msprobe                       a table of every check; exit status the worst one
  msprobe --nagios              one line and performance data, for Nagios or Icinga
  msprobe --json
  msprobe --prometheus /var/lib/node_exporter/textfile/msgstore.prom

\b
Exit codes (Nagios plugin): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
With local.autorestart 1, a service that does not answer or is down is
restarted through the watcher (up to local.autorestart.count times within
local.autorestart.timeout; one an administrator stopped stays stopped).
"""


def _metric_name(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", text).lower()


def write_prometheus(path: str, checks: list[probe.Check]) -> None:
    """A node_exporter textfile, written by prometheus_client (to a temp
    name, then renamed: a scrape never sees half of it)."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
    reg = CollectorRegistry()
    status = Gauge("msgstore_check_status", "0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
                   ["check"], registry=reg)
    gauges: dict[str, Gauge] = {}
    for c in checks:
        status.labels(check=c.name).set(probe.RANK[c.status])
        for k, v in c.metrics.items():
            name = f"msgstore_{_metric_name(k)}"
            if name not in gauges:
                gauges[name] = Gauge(name, f"msprobe's {k}", ["check"], registry=reg)
            gauges[name].labels(check=c.name).set(v)
    write_to_textfile(path, reg)


@click.command(epilog=EPILOG)
@store_root_option
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option("--nagios", is_flag=True, help="One status line with performance data.")
@click.option("--prometheus", "prom", metavar="FILE",
              help="Also write the results as a node_exporter textfile.")
@click.option("--timeout", type=click.IntRange(1, 600), default=None,
              help="Seconds to wait for a service (default: local.msprobe.timeout).")
def cli(store_root, as_json, nagios, prom, timeout) -> int:
    """Probe stored, lmtpd, imapd and popd for responsiveness and check
    space, stored's stamp files, snapshots and the default log."""
    layout = Layout.open(resolve_root(store_root))
    logsetup.attach(layout.log_dir)
    timeout = timeout or layout.config.get_int(settings.MSPROBE_TIMEOUT)
    checks = probe.run_all(layout, timeout)
    watcher: list[str] = []
    _ask(layout, "status", watcher.append)
    for c in checks:  # what the watcher gave up on says so (seed 000's timeout)
        if c.status == probe.CRITICAL and any(
                line.startswith(f"{c.name.split()[-1]} server not restarted") for line in watcher):
            c.summary += ("; the watcher gave up restarting it (it failed again within "
                          "local.autorestart.timeout): fix the cause, then `start-msg`")
    for c in checks:
        if c.name.startswith("service ") and c.status == probe.CRITICAL:
            logmsg.log("msprobe", logmsg.PROBE_FAILED, check=c.name, summary=c.summary)
            # a hang, or a service that is down (the watcher restarts only the ones it
            # watches: not one an administrator stopped)
            if (("not responding" in c.summary or "is not running" in c.summary)
                    and layout.config.get_bool(settings.AUTORESTART)):
                _ask(layout, f"restart {c.name.split()[1]}")
    if prom:
        write_prometheus(os.path.abspath(prom), checks)
    worst = probe.worst(checks)
    if as_json:
        emit_json({"status": worst, "checks": [c.as_json() for c in checks]})
    elif nagios:
        bad = [c for c in checks if c.status != probe.OK]
        perf = " ".join(f"'{c.name} {k}'={v}" for c in checks for k, v in c.metrics.items())
        click.echo(f"MSGSTORE {worst} - {len(checks)} checks"
                   + (": " + "; ".join(f"{c.name}: {c.summary}" for c in bad) if bad else "")
                   + f" | {perf}")
    else:
        render_table("msprobe", ["check", "status", "summary"],
                     [(c.name, c.status, c.summary) for c in checks])
    return probe.RANK[worst]


main = entry(cli, "msprobe")
