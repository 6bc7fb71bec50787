"""The store daemon: state.py (state and stamp files, the daemon lock),
schedule.py (when each job is due), recovery.py (start-up check, snapshot
restore, spool resync), housekeeping.py (stale readers, temp files,
stored -r), daemon.py (the Daemon that runs them)."""
