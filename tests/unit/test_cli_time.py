"""cli.output.parse_time reads RFC 3339 by hand: it must agree with calendar.timegm."""

import calendar
import random
import time

from berth.cli.output import parse_time


def test_agrees_with_calendar_timegm():
    rng = random.Random(8)
    for _ in range(5000):
        t = (rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28),
             rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59))
        text = "%04d-%02d-%02dT%02d:%02d:%02d" % t
        assert parse_time(text + "Z") == calendar.timegm(time.strptime(text,
                                                                       "%Y-%m-%dT%H:%M:%S"))


def test_fractions_zones_and_bad_input():
    assert parse_time("1970-01-01T00:00:01.5Z") == 1.5
    assert parse_time("2024-02-29T12:00:00.123456789Z") == 1709208000.123456789
    assert parse_time("2024-02-29T12:00:00+02:00") == 1709200800
    assert parse_time("0001-01-01T00:00:00Z") == -62135596800
    for bad in ("", "garbage", "2024-13-01T00:00:00Z", "2024-01-01 00:00:00Z",
                "2024-01-01T00:00Z", "2024-01-01T24:00:00Z"):
        assert parse_time(bad) == 0.0
