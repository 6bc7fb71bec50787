"""Service supervision (seeds 000 and 001): the registry of services,
starting and stopping them in order (start-msg, stop-msg), and the watcher
that restarts them when one fails."""
