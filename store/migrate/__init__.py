"""Migration into and out of the store: imsimport's sources and engine,
imsexport's writers, imsbackup's stream and imsrestore."""


def per_second(count: int, seconds: float) -> float:
    """The rate every summary reports (0 for a run too short to time)."""
    return round(count / seconds, 1) if seconds else 0
