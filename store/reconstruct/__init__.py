"""The repair engine behind `reconstruct`. It returns findings; it never
prints and never exits.

  scan      read one mailbox directory (index, cache, store.exp, files)
  check     compare what scan read: findings, nothing changed
  rebuild   write a new index beside the old one from the message files
  dbsync    the mailbox database from the spool (-m), quota (-q), lright (-l)
  runner    choose mailboxes, spread work over processes, gather results
"""

from .findings import Finding, Summary, exit_code  # noqa: F401
