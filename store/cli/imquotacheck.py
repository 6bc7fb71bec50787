"""imquotacheck (Sun's name): quota usage per quota root, fullest first, and
from cron the warning to users over store.quotawarn whom a delivery has not
warned yet (a limit lowered with mboxutil --set-quota warns no one until the
next delivery)."""

from __future__ import annotations

import functools

import click

from .. import logmsg, settings
from ..delivery.agent import Agent, Policy
from ..locks import MAILBOX_TIMEOUT
from ..mailbox import quota_root_mailbox
from ..mailbox.messages import run_steps
from ..mailbox.quota import claim_warning
from .common import EXIT_CODES_HELP, emit_json, entry, open_store, render_table, store_root_option

EPILOG = """\b
Examples:
  imquotacheck                   every quota root, fullest first
  imquotacheck -u joe --json
  imquotacheck --over 90         only the roots at 90% of their limit or more
  imquotacheck --warn            also deliver the warning to those over store.quotawarn
                                 not warned yet (for cron)

""" + EXIT_CODES_HELP


def _percent(q: dict) -> int | None:
    """Of the fuller of the two limits (bytes, messages)."""
    parts = [q[used] * 100 // q[limit] for used, limit in (("used_bytes", "limit_bytes"),
                                                          ("used_messages", "limit_messages"))
             if q.get(limit)]
    return max(parts) if parts else None


@click.command(epilog=EPILOG)
@store_root_option
@click.option("-u", "user", metavar="USER", help="Only this user's quota root (user/USER).")
@click.option("--over", type=click.IntRange(0, 1000), metavar="PERCENT",
              help="Only the roots at PERCENT of their limit or more.")
@click.option("--warn", is_flag=True,
              help="Deliver the quota warning to the roots over store.quotawarn that have not "
                   "had it for this crossing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def cli(store_root, user, over, warn, as_json) -> int:
    """Quota usage per quota root, fullest first (roots without a limit last)."""
    with open_store(store_root, readonly=not warn) as store:
        rows = store.quotas(f"user/{user}" if user else None)
        for q in rows:
            q["percent"] = _percent(q)
        if over is not None:
            rows = [q for q in rows if q["percent"] is not None and q["percent"] >= over]
        rows.sort(key=lambda q: (q["percent"] is None, -(q["percent"] or 0), q["root"]))
        warned = []
        threshold = store.layout.config.get_int(settings.QUOTA_WARN)
        if warn and threshold:
            agent = Agent(store, Policy.from_config(store.layout.config), via="imquotacheck")
            for q in rows:
                root = q["root"]
                entry = store.db.write(functools.partial(claim_warning, root=root,
                                                         percent=threshold))
                if entry is None:
                    continue
                inbox = quota_root_mailbox(root)
                if not store.exists(inbox):  # no INBOX: said, and the others go on
                    logmsg.log("delivery", logmsg.QUOTA_WARNING_FAILED, mailbox=inbox,
                               error=f"mailbox {inbox} does not exist")
                    continue
                # the store's own message, as after a delivery: it goes in past the limit
                if run_steps(agent.warning_steps(root, entry, lock_timeout=MAILBOX_TIMEOUT)):
                    warned.append(root)
    if as_json:
        emit_json({"roots": rows, "warned": warned})
    else:
        render_table("Quota usage", ["root", "used bytes", "limit bytes", "used %", "messages",
                                     "limit messages"],
                     [(q["root"], q["used_bytes"],
                       "none" if q["limit_bytes"] is None else q["limit_bytes"],
                       "-" if q["percent"] is None else q["percent"], q["used_messages"],
                       "none" if q.get("limit_messages") is None else q["limit_messages"])
                      for q in rows])
        for root in warned:
            click.echo(f"warned {root}")
    return 0


main = entry(cli, "imquotacheck")
