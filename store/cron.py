"""Crontab schedules (`5,15,25,35,45,55 * * * *`), as the seeds' imsched
takes them (Table 20-10): minute, hour, day of month, month, day of week
(0 or 7 Sunday); `*`, lists, ranges and `/step`. Written here rather than
taken from croniter: this is all of it, and that library's future was
uncertain when this was written."""

from __future__ import annotations

import time

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
           ("day of week", 0, 7))


def _field(text: str, name: str, lo: int, hi: int) -> frozenset[int] | None:
    """The values of one field; None for `*` (any)."""
    if text == "*":
        return None
    out: set[int] = set()
    for part in text.split(","):
        rng, _, step = part.partition("/")
        try:
            if rng == "*":
                a, b = lo, hi
            elif "-" in rng:
                a_s, b_s = rng.split("-", 1)
                a, b = int(a_s), int(b_s)
            else:
                a = b = int(rng)
            n = int(step) if step else 1
        except ValueError:
            raise ValueError(f"{name} {part!r} is not a number, range or step") from None
        if not (lo <= a <= b <= hi) or n < 1:
            raise ValueError(f"{name} {part!r} is outside {lo}-{hi}")
        out.update(range(a, b + 1, n))
    return frozenset(out)


def parse(expr: str) -> tuple:
    """The schedule's five fields; ValueError with what is wrong."""
    parts = expr.split()
    if len(parts) != 5:
        raise ValueError(f"{expr!r}: a schedule has five fields (minute hour day month weekday)")
    try:
        fields = [_field(p, n, lo, hi) for p, (n, lo, hi) in zip(parts, _FIELDS, strict=True)]
    except ValueError as e:
        raise ValueError(f"{expr!r}: {e}") from None
    if fields[4] is not None and 7 in fields[4]:
        fields[4] = fields[4] | {0}
    return tuple(fields)


def matches(schedule: tuple, t: time.struct_time) -> bool:
    minute, hour, mday, month, wday = schedule
    cron_wday = (t.tm_wday + 1) % 7
    day_ok = (mday is None or t.tm_mday in mday) and (wday is None or cron_wday in wday)
    if mday is not None and wday is not None:  # cron: either day field may match
        day_ok = t.tm_mday in mday or cron_wday in wday
    return ((minute is None or t.tm_min in minute) and (hour is None or t.tm_hour in hour)
            and (month is None or t.tm_mon in month) and day_ok)
