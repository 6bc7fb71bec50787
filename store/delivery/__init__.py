"""Local delivery: recipient addresses (address.py), the delivery itself
(agent.py), what each outcome means to an MTA (outcome.py) and lmtpd's
group commit (groupsync.py)."""
