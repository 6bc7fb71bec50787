"""The crontab schedules of local.schedule.msprobe, against a brute-force
reading of the same fields."""

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store import cron


def at(text):
    return time.strptime(text, "%Y-%m-%d %H:%M")


def test_the_seeds_schedule():
    s = cron.parse("5,15,25,35,45,55 * * * *")
    assert [m for m in range(60) if cron.matches(s, at(f"2026-12-03 13:{m:02d}"))] == \
        [5, 15, 25, 35, 45, 55]


def test_ranges_steps_days_and_sunday_as_0_or_7():
    s = cron.parse("*/20 9-17 * * 1-5")  # weekdays, office hours
    assert cron.matches(s, at("2026-12-03 09:40"))  # a Thursday
    assert not cron.matches(s, at("2026-12-06 09:40"))  # a Sunday
    assert cron.matches(cron.parse("0 0 * * 7"), at("2026-12-06 00:00"))
    assert cron.matches(cron.parse("0 0 * * 0"), at("2026-12-06 00:00"))
    either = cron.parse("0 0 1 * 4")  # day 1 or a Thursday, as cron reads both set
    assert cron.matches(either, at("2026-12-03 00:00")) and cron.matches(either, at("2027-01-01 00:00"))


@pytest.mark.parametrize("bad", ["* * * *", "60 * * * *", "*/0 * * * *", "a * * * *",
                                 "5-1 * * * *", "* 24 * * *", "* * 0 * *"])
def test_bad_schedules_are_refused_with_a_reason(bad):
    with pytest.raises(ValueError, match=bad.split()[0] if bad[0] != "*" else "'"):
        cron.parse(bad)


@given(st.sets(st.integers(0, 59), min_size=1), st.integers(0, 59))
def test_minute_lists_match_exactly_their_minutes(minutes, m):
    s = cron.parse(",".join(map(str, sorted(minutes))) + " * * * *")
    assert cron.matches(s, at(f"2026-12-03 10:{m:02d}")) == (m in minutes)
