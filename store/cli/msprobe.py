"""msprobe: probe each running service and run the monitoring checks of the
seeds' 20.14.1, with Nagios plugin exit codes."""

from __future__ import annotations

import os
import re

import click

from .. import logmsg, logsetup, settings
from ..errors import SettingError, StoreError
from ..layout import Layout
from ..supervise import probe
from .common import emit_json, entry, one_line, render_table, resolve_root, store_root_option
from .msgctl import _ask

EPILOG = """\b
Examples:
  msprobe                       a table of every check; exit status the worst one
  msprobe --nagios              one line and performance data, for Nagios or Icinga
  msprobe --json
  msprobe --prometheus /var/lib/node_exporter/textfile/msgstore.prom
  msprobe --nagios --state nagios -w 85 -c 95
  msprobe --restart             as the watcher and the timer run it

\b
Exit codes (Nagios plugin): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (also for
a bad option, a settings error or any fault of msprobe's own: one line).
With --restart and local.autorestart 1, a service that does not answer or is
down is restarted through the watcher (up to local.autorestart.count times
within local.autorestart.timeout; one an administrator stopped stays
stopped); without --restart msprobe only looks.
"""


def _metric_name(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", text).lower()


def write_prometheus(path: str, checks: list[probe.Check], group: str = "") -> None:
    """A node_exporter textfile, written by prometheus_client (to a temp
    name, then renamed: a scrape never sees half of it); readable by
    `group` (local.msprobe.prometheusgroup) when one is set."""
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
    if group:
        import grp
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise SettingError(f"local.msprobe.prometheusgroup: no group {group!r}") from None
        os.chown(path, -1, gid)
        os.chmod(path, 0o640)


@click.command(epilog=EPILOG)
@store_root_option
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option("--nagios", is_flag=True, help="One status line with performance data.")
@click.option("--prometheus", "prom", metavar="FILE",
              help="Also write the results as a node_exporter textfile.")
@click.option("--timeout", type=click.IntRange(1, 600), default=None,
              help="Seconds to wait for a service (default: local.msprobe.timeout).")
@click.option("-w", "--warning", "warn", type=click.IntRange(1, 100), default=None,
              metavar="PERCENT", help="Space or inodes used for WARNING (default: "
                                      "local.msprobe.diskwarn).")
@click.option("-c", "--critical", "crit", type=click.IntRange(1, 100), default=None,
              metavar="PERCENT", help="Space or inodes used for CRITICAL (default: "
                                      "local.msprobe.diskcrit).")
@click.option("--state", "consumer", metavar="NAME", default="",
              help="Keep this consumer's own mark of what it has seen (errors since ITS last "
                   "run): run/msprobe-NAME.state.")
@click.option("--restart", is_flag=True,
              help="Restart a service that hangs or is down (with local.autorestart 1).")
def cli(store_root, as_json, nagios, prom, timeout, warn, crit, consumer, restart) -> int:
    """Probe stored, lmtpd, imapd, popd and policyd for responsiveness and check
    space, stored's stamp files, snapshots and the default log."""
    try:
        return _probe(store_root, as_json, nagios, prom, timeout, warn, crit, consumer, restart)
    except StoreError as e:  # a settings error, no store: Nagios's UNKNOWN, one line
        click.echo(f"MSGSTORE UNKNOWN - {one_line(str(e))}")
        return probe.RANK[probe.UNKNOWN]


def _probe(store_root, as_json, nagios, prom, timeout, warn, crit, consumer, restart) -> int:
    layout = Layout.open(resolve_root(store_root))
    logsetup.attach(layout.log_dir)
    timeout = timeout or layout.config.get_int(settings.MSPROBE_TIMEOUT)
    warn, crit = probe.disk_thresholds(layout, warn, crit)
    checks = probe.run_all(layout, timeout, consumer=consumer, warn=warn, crit=crit)
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
            if (restart and ("not responding" in c.summary or "is not running" in c.summary)
                    and layout.config.get_bool(settings.AUTORESTART)):
                _ask(layout, f"restart {c.name.split()[1]}")
    if prom:
        write_prometheus(os.path.abspath(prom), checks,
                         layout.config.get(settings.MSPROBE_PROMETHEUS_GROUP))
    worst = probe.worst(checks)
    if as_json:
        emit_json({"status": worst, "checks": [c.as_json() for c in checks]})
    elif nagios:
        bad = [c for c in checks if c.status != probe.OK]
        perf = probe.perfdata(checks, warn, crit)
        click.echo(f"MSGSTORE {worst} - {len(checks)} checks"
                   + (": " + "; ".join(f"{c.name}: {c.summary}" for c in bad) if bad else "")
                   + f" | {perf}")
    else:
        render_table("msprobe", ["check", "status", "summary"],
                     [(c.name, c.status, c.summary) for c in checks])
    return probe.RANK[worst]


# whatever else ends it (a bad option, an interrupt, a bug) is UNKNOWN to a monitoring system
cli.exit_map = {4: 3, 8: 3, 16: 3, 32: 3}  # type: ignore[attr-defined]
main = entry(cli, "msprobe")
