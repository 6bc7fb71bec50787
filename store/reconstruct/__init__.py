"""The repair engine behind `reconstruct`. It returns findings; it never
prints and never exits.

  scan      read one mailbox directory (index, cache, store.exp, files)
  plan      scan + folder entry -> a Plan: every decision, each with its finding
  apply     write what a Plan decided (the rebuilt index)
  select    which mailboxes a run visits
  dbsync    the mailbox database from the spool (-m), quota (-q), lright (-l)
  runner    spread the work over processes, gather results, keep the database in step
  findings  Finding, the Kind registry, Summary, exit codes
"""

from .findings import Finding, Summary, exit_code  # noqa: F401
