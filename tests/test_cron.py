"""Tests for qualitylab.cron, with croniter as the reference.

croniter answers two questions here: which minutes a cron expression fires at
(``croniter.match``, ``croniter.expanded``), and at which instants a schedule
fires over a year (iterating it on a zone's wall clock). The acceptance
property checks that the lines :func:`qualitylab.cron.to_zone` writes for a
host clock, each guarded line filtered by :func:`qualitylab.cron.matches`,
fire at exactly the instants the local schedule fires at -- and never twice.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import CroniterBadDateError, croniter
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from qualitylab.cron import CronError, CronExpr, CronLine, due, matches, parse, to_zone
from qualitylab.errors import QualityLabError

MARKETS = [
    "Asia/Singapore",
    "Asia/Jakarta",
    "Asia/Manila",
    "Asia/Bangkok",
    "Asia/Ho_Chi_Minh",
    "Asia/Kuala_Lumpur",
    "Asia/Tokyo",
    "Asia/Seoul",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Sydney",
    "Australia/Adelaide",
    "Australia/Brisbane",
    "Australia/Perth",
    "Pacific/Auckland",
]
# UTC, a host with daylight saving, one west of every market and one east of
# most (Tokyo is ahead of Singapore, so the day also shifts forward).
HOSTS = ["UTC", "Europe/London", "America/New_York", "Asia/Tokyo"]


# --- reference firing sets --------------------------------------------------


def _wall_ok(zone: ZoneInfo, t: datetime) -> bool:
    """Whether the wall time of instant ``t`` in ``zone`` occurs exactly once."""
    w = t.astimezone(zone).replace(tzinfo=None)
    return w.replace(tzinfo=zone, fold=0).utcoffset() == w.replace(tzinfo=zone, fold=1).utcoffset()


def _fires(expr: str, zone: ZoneInfo, lo: datetime, hi: datetime) -> list[datetime]:
    """UTC instants in [lo, hi) at which croniter fires ``expr`` on ``zone``'s wall clock.

    croniter iterates the wall clock (naive datetimes); each wall time that
    exists exactly once is then placed in the zone by zoneinfo. Wall times that
    daylight saving skips or repeats are dropped: croniter's own aware mode
    moves a skipped 02:30 to 03:00, which is a choice, not cron semantics.
    """
    wall = lo.astimezone(zone).replace(tzinfo=None) - timedelta(days=1)
    end = hi.astimezone(zone).replace(tzinfo=None) + timedelta(days=1)
    it = croniter(expr, wall)
    out = []
    while True:
        try:
            w = it.get_next(datetime)
        except CroniterBadDateError:  # never fires (31 February)
            return out
        if w > end:
            return out
        fold0, fold1 = w.replace(tzinfo=zone), w.replace(tzinfo=zone, fold=1)
        if fold0.utcoffset() != fold1.utcoffset():
            continue
        t = fold0.astimezone(UTC)
        if lo <= t < hi:
            out.append(t)


def _compare(
    expr: str, tz: str, host_tz: str, lines: tuple[CronLine, ...], year: int
) -> tuple[list[datetime], list[datetime]]:
    """Local firing instants of ``expr`` and those of ``lines`` (guards applied), one year.

    Only instants whose wall time occurs exactly once in both zones are kept.
    The second list is not deduplicated, so a minute covered by two lines shows.
    """
    zone, host = ZoneInfo(tz), ZoneInfo(host_tz)
    lo = datetime(year, 1, 1, tzinfo=UTC)
    hi = lo + timedelta(days=365)

    def keep(t: datetime) -> bool:
        return _wall_ok(zone, t) and _wall_ok(host, t)

    expected = [t for t in _fires(expr, zone, lo, hi) if keep(t)]
    got = [
        t
        for line in lines
        for t in _fires(line.cron, host, lo, hi)
        if keep(t) and (not line.guarded or matches(expr, t, tz))
    ]
    return expected, sorted(got)


def _check(expr: str, tz: str, host_tz: str, year: int) -> tuple[CronLine, ...]:
    lines = to_zone(expr, tz, host_tz, start=date(year, 1, 1), days=365)
    assert len({line.cron for line in lines}) == len(lines)
    expected, got = _compare(expr, tz, host_tz, lines, year)
    assert len(got) == len(set(got)), f"a minute fires on two lines: {lines}"
    missing = sorted(set(expected) - set(got))[:3]
    extra = sorted(set(got) - set(expected))[:3]
    assert got == expected, f"{expr} {tz}->{host_tz} {lines}: missing {missing} extra {extra}"
    return lines


# --- strategies ---------------------------------------------------------------


def _join(values: list[int]) -> str:
    return ",".join(map(str, values))


def _ranges(lo: int, hi: int, max_width: int) -> st.SearchStrategy[str]:
    return st.integers(lo, hi - 1).flatmap(
        lambda a: st.integers(a + 1, min(hi, a + max_width)).map(lambda b: f"{a}-{b}")
    )


def _stepped(lo: int, hi: int, min_step: int) -> st.SearchStrategy[str]:
    """``a-b/s``, ``*/s`` and ``a/s`` over [lo, hi]."""
    top = hi if hi != 7 else 6  # day of week: croniter's '*' and 'a/s' end at 6
    return st.one_of(
        st.tuples(st.integers(lo, hi - 1), st.integers(min_step, min_step + 12)).flatmap(
            lambda a_s: st.integers(a_s[0] + 1, hi).map(lambda b: f"{a_s[0]}-{b}/{a_s[1]}")
        ),
        st.integers(min_step, min_step + 12).map(lambda s: f"*/{s}"),
        st.tuples(st.integers(lo, top), st.integers(min_step, min_step + 12)).map(
            lambda a_s: f"{a_s[0]}/{a_s[1]}"
        ),
    )


MINUTE = st.one_of(
    st.integers(0, 59).map(str),
    st.lists(st.integers(0, 59), min_size=2, max_size=2, unique=True).map(_join),
    _stepped(0, 59, 20),
)
HOUR = st.one_of(
    st.integers(0, 23).map(str),
    st.sampled_from(["0", "1", "22", "23", "0,23", "0,22-23"]),  # midnight: the day shifts
    st.lists(st.integers(0, 23), min_size=2, max_size=3, unique=True).map(_join),
    _ranges(0, 23, 3),
    _stepped(0, 23, 6),
    st.just("*"),
)
DOM = st.one_of(
    st.just("*"),
    st.integers(1, 31).map(str),
    st.sampled_from(["1", "28", "29", "30", "31", "28-31", "1,15", "1,31", "30,31"]),
    st.lists(st.integers(1, 31), min_size=2, max_size=3, unique=True).map(_join),
    _ranges(1, 31, 6),
    _stepped(1, 31, 2),
)
MONTH = st.one_of(
    st.just("*"),
    st.integers(1, 12).map(str),
    st.lists(st.integers(1, 12), min_size=2, max_size=4, unique=True).map(_join),
    _ranges(1, 12, 4),
    _stepped(1, 12, 2),
    st.sampled_from(["jan", "feb", "mar-may", "DEC"]),
)
DOW = st.one_of(
    st.just("*"),
    st.integers(0, 7).map(str),
    st.lists(st.integers(0, 7), min_size=2, max_size=3, unique=True).map(_join),
    _ranges(0, 7, 4),
    _stepped(0, 7, 2),
    st.sampled_from(["1-5", "5-7", "6,0", "0,7", "mon-fri", "sun"]),
)
EXPR = st.tuples(MINUTE, HOUR, DOM, MONTH, DOW).map(" ".join)
# croniter's edge cases of "restricted": full sets written without a star, a
# bare star inside a list, steps over a star
QUIRKS_DOM = st.sampled_from(["1-31", "*/1", "*,5", "*/2", "1/1", "1-31/2"])
QUIRKS_DOW = st.sampled_from(["0-6", "*/1", "*,1", "*/2", "1-7", "0-7", "0/1"])
ANY_EXPR = st.one_of(
    EXPR,
    st.tuples(MINUTE, HOUR, st.one_of(DOM, QUIRKS_DOM), MONTH, st.one_of(DOW, QUIRKS_DOW)).map(
        " ".join
    ),
    st.tuples(st.just("*"), st.just("*"), st.one_of(DOM, QUIRKS_DOM), st.just("*"), QUIRKS_DOW).map(
        " ".join
    ),
)


def _firings_per_year(expr: str) -> int:
    """Roughly how often ``expr`` fires in a year (keeps the property test fast)."""
    e = parse(expr)
    days = parse(f"0 12 {' '.join(expr.split()[2:])}")
    noons = [datetime(2024, 1, 1, 12, tzinfo=UTC) + timedelta(days=i) for i in range(366)]
    return len(e.minutes) * len(e.hours) * sum(matches(days, t, "UTC") for t in noons)


# --- parse -------------------------------------------------------------------


def test_parse_sets_and_flags() -> None:
    e = parse("0,30 6-8 1,15 */3 1-5")
    assert isinstance(e, CronExpr)
    assert e.minutes == {0, 30} and e.hours == {6, 7, 8}
    assert e.days == {1, 15} and e.months == {1, 4, 7, 10} and e.weekdays == {1, 2, 3, 4, 5}
    assert (e.dom_star, e.dow_star, e.text) == (False, False, "0,30 6-8 1,15 */3 1-5")
    numeric = parse("0 6 * 1-3 1-5")
    assert dataclasses.replace(parse("0 6 * JAN-Mar mon-FRI"), text=numeric.text) == numeric
    assert parse("0 0 * * 7").weekdays == {0}
    assert parse("10/20 * * * *").minutes == {10, 30, 50}
    assert parse("59/15 * * * *").minutes == {59}


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 6 * * *", "minute field '61': value 61 out of range 0-59"),
        ("0 24 * * *", "hour field '24': value 24 out of range 0-23"),
        ("0 6 0 * *", "day-of-month field '0': value 0 out of range 1-31"),
        ("0 6 * 13 *", "month field '13': value 13 out of range 1-12"),
        ("0 6 * * 8", "day-of-week field '8': value 8 out of range 0-7"),
        ("0 6 * * 1-9", "day-of-week field '1-9': value 9 out of range 0-7"),
        ("0 6 * *", "cron expression '0 6 * *': expected 5 fields"),
        ("@daily", "cron expression '@daily': expected 5 fields"),
        ("*/0 * * * *", "minute field '*/0': step '0' is not a positive whole number"),
        ("5-3 * * * *", "minute field '5-3': range 5-3 runs backwards"),
        ("5-5 * * * *", "minute field '5-5': range 5-5 has equal ends"),
        ("0 6 L * *", "day-of-month field 'L': 'L' is not a number"),
        ("0 6 1,,2 * *", "day-of-month field '1,,2': empty list item"),
        ("0 6 ? * 1", "day-of-month field '?': cannot read '?'"),
        ("0 6 * * 1#2", "day-of-week field '1#2': cannot read '1#2'"),
        ("mon 6 * * *", "minute field 'mon': 'mon' is not a number"),
        ("0 6 * * 7/2", "day-of-week field '7/2': start 7 is past the field's end 6"),
    ],
)
def test_parse_rejects_bad_fields(expr: str, message: str) -> None:
    with pytest.raises(CronError, match="^" + re.escape(message)):
        parse(expr)
    with pytest.raises(ValueError):
        parse(expr)
    with pytest.raises(QualityLabError):
        parse(expr)


def test_unknown_zone_and_naive_instant() -> None:
    with pytest.raises(CronError, match="unknown time zone 'Asia/Singapur'"):
        to_zone("0 6 * * *", "Asia/Singapur")
    with pytest.raises(CronError, match="unknown time zone 'Mars/Base'"):
        matches("0 6 * * *", datetime(2026, 1, 1, tzinfo=UTC), "Mars/Base")
    with pytest.raises(ValueError, match="time-zone aware"):
        matches("0 6 * * *", datetime(2026, 1, 1), "UTC")


@settings(max_examples=300, deadline=None)
@given(expr=ANY_EXPR)
def test_parse_agrees_with_croniter_expansion(expr: str) -> None:
    e = parse(expr)
    expanded = croniter(expr).expanded
    fulls = [range(60), range(24), range(1, 32), range(1, 13), range(7)]
    ours = [e.minutes, e.hours, e.days, e.months, e.weekdays]
    for mine, theirs, full in zip(ours, expanded, fulls, strict=False):
        assert mine == (set(full) if "*" in theirs else set(theirs)), (expr, theirs)
    # croniter's day rule: OR only when neither expanded day field starts with '*'
    assert e.dom_star == (expanded[2][0] == "*"), (expr, expanded[2])
    assert e.dow_star == (expanded[4][0] == "*"), (expr, expanded[4])


# --- matches ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "day", "fires"),
    [
        ("0 6 1 * 1", date(2026, 6, 1), True),  # Monday the 1st
        ("0 6 1 * 1", date(2026, 6, 8), True),  # OR: any Monday
        ("0 6 1 * 1", date(2026, 7, 1), True),  # OR: any 1st (a Wednesday)
        ("0 6 1 * 1", date(2026, 6, 9), False),
        ("0 6 */2 * 1", date(2026, 6, 3), True),  # croniter: */2 restricts -> OR
        ("0 6 */2 * 1", date(2026, 6, 8), True),
        ("0 6 */1 * 1", date(2026, 6, 9), True),  # full set, no '*' in dow -> every day
        ("0 6 1-31 * */2", date(2026, 6, 9), True),  # Tuesday (2)
        ("0 6 1-31 * */2", date(2026, 6, 10), False),  # AND: Wednesday
        ("0 6 * * 1-5", date(2026, 6, 6), False),  # Saturday
    ],
)
def test_matches_day_rule(expr: str, day: date, fires: bool) -> None:
    when = datetime(day.year, day.month, day.day, 6, 0, 59, tzinfo=UTC)
    assert matches(expr, when, "UTC") is fires
    assert croniter.match(expr, when.replace(tzinfo=None)) is fires  # the reference agrees


@settings(max_examples=300, deadline=None)
@given(
    expr=ANY_EXPR,
    t=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1)),
    tz=st.sampled_from(MARKETS + HOSTS),
)
def test_matches_agrees_with_croniter(expr: str, t: datetime, tz: str) -> None:
    when = t.replace(tzinfo=UTC)
    wall = when.astimezone(ZoneInfo(tz)).replace(tzinfo=None)
    assert matches(expr, when, tz) == croniter.match(expr, wall)
    try:
        nxt = croniter(expr, wall).get_next(datetime)
    except CroniterBadDateError:
        return
    assert matches(parse(expr), nxt.replace(tzinfo=UTC), "UTC")


def test_due_uses_now() -> None:
    assert due("0 6 * * 1", "Asia/Singapore", datetime(2026, 3, 1, 22, 0, 30, tzinfo=UTC))
    assert not due("0 6 * * 1", "Asia/Singapore", datetime(2026, 3, 1, 22, 1, tzinfo=UTC))
    assert due("* * * * *", "Asia/Singapore")


# --- to_zone: the examples from issue #15 ---------------------------------------


@pytest.mark.parametrize(
    ("expr", "tz", "host", "lines"),
    [
        ("0 6 * * 1", "Asia/Singapore", "UTC", [("0 22 * * 0", False)]),
        ("0 6 * * 1-5", "Asia/Singapore", "UTC", [("0 22 * * 0-4", False)]),
        ("0 6 * * 1,3-5", "Asia/Singapore", "UTC", [("0 22 * * 0,2-4", False)]),
        ("0 6 1 * *", "Asia/Singapore", "UTC", [("0 22 28-31 * *", True)]),
        ("0 6 * * 1", "Australia/Sydney", "UTC", [("0 19,20 * * 0", True)]),
        ("30 7 * * *", "Asia/Kolkata", "UTC", [("0 2 * * *", False)]),
        ("15 5 * * 1", "Asia/Kathmandu", "UTC", [("30 23 * * 0", False)]),
        ("0 9 * * 1", "Asia/Singapore", "UTC", [("0 1 * * 1", False)]),
        ("0 6 * * 1", "Australia/Sydney", "Australia/Sydney", [("0 6 * * 1", False)]),
        ("0 6 * * 1", "Asia/Singapore", "Europe/London", [("0 22,23 * * 0", True)]),
        (
            "0 0,23 * * 0-1",
            "Asia/Singapore",
            "Asia/Tokyo",
            [("0 0 * * 1,2", False), ("0 1 * * 0,1", False)],
        ),
        ("0 6 31 2 *", "Asia/Singapore", "UTC", []),  # never fires
    ],
)
def test_to_zone_examples(expr: str, tz: str, host: str, lines: list[tuple[str, bool]]) -> None:
    got = to_zone(expr, tz, host, start=date(2026, 1, 1))
    assert [(line.cron, line.guarded) for line in got] == lines
    _check(expr, tz, host, 2026)


def test_day_fields_written_the_same_for_every_cron() -> None:
    # croniter reads "*/2" in the day of month as a restriction (OR with Monday);
    # vixie cron would not. The written line spells it without a star.
    (line,) = to_zone("0 6 */2 * 1", "UTC", "UTC", start=date(2026, 1, 1))
    assert line == CronLine("0 6 1-31/2 * 1", guarded=False)
    (line,) = to_zone("0 6 */1 * 1", "UTC", "UTC", start=date(2026, 1, 1))
    assert line == CronLine("0 6 * * *", guarded=False)


# --- to_zone: the acceptance property -------------------------------------------


TRICKY = [
    ("0 6 * * 1-5", "Asia/Singapore", "UTC", 2026),  # weekday range shifts to Sun-Thu
    ("0 6 * * 0-2", "Asia/Singapore", "UTC", 2026),  # Sunday shifts to Saturday
    ("0 6 * * 1,3-5", "Asia/Singapore", "UTC", 2026),
    ("0 6 1 * *", "Asia/Singapore", "UTC", 2026),  # day 1 -> last day of last month
    ("0 6 31 * *", "Asia/Singapore", "UTC", 2026),
    ("0 6 1 1 *", "Asia/Singapore", "UTC", 2026),  # New Year -> 31 December
    ("0 5 1 3 *", "Asia/Tokyo", "UTC", 2024),  # 1 March -> 29 February (leap)
    ("0 5 1 3 *", "Asia/Tokyo", "UTC", 2025),  # 1 March -> 28 February
    ("0 6 29 2 *", "Asia/Singapore", "UTC", 2024),  # only in a leap year
    ("0 6 29 2 *", "Asia/Singapore", "UTC", 2025),
    ("0 6 1 * 1", "Asia/Singapore", "UTC", 2026),  # OR of day 1 and Monday
    ("0 6 */2 * 1", "Asia/Manila", "UTC", 2026),
    ("45 5 * * 1", "Asia/Kathmandu", "UTC", 2026),  # +5:45 -> Monday 00:00
    ("30 5 * * 1", "Asia/Kathmandu", "UTC", 2026),  # -> Sunday 23:45
    ("0,30 5 * * 1", "Asia/Kolkata", "UTC", 2026),
    ("0 9 * * 1", "Pacific/Auckland", "UTC", 2026),  # +13/+12
    ("30 1 1 * *", "Pacific/Auckland", "UTC", 2026),
    ("0 8 * * 1-5", "Australia/Sydney", "Europe/London", 2026),  # two DST zones
    ("30 0 * 4,10 0", "Australia/Adelaide", "Europe/London", 2026),  # +9:30/+10:30
    ("0 2 * * 0", "Australia/Sydney", "UTC", 2026),  # the hour DST skips/repeats
    ("0 23 31 12 *", "Asia/Singapore", "Asia/Tokyo", 2026),  # -> 1 January, forward
    ("0 23 28 2 *", "Asia/Singapore", "Asia/Tokyo", 2024),  # -> 29 February
    ("0 6 * * *", "Asia/Singapore", "America/New_York", 2026),
    ("*/20 0-2 * * 1", "Asia/Jakarta", "UTC", 2026),
    # Monday 23:30 at +10 and Tuesday 00:30 at +11 are both Monday 13:30 UTC:
    # one line must cover that minute, or the job runs twice
    ("30 0,23 * * 1-2", "Australia/Sydney", "UTC", 2026),
    ("30 0,23 1 * *", "Pacific/Auckland", "Europe/London", 2026),
]


@pytest.mark.parametrize(("expr", "tz", "host", "year"), TRICKY)
def test_to_zone_fires_at_the_local_instants(expr: str, tz: str, host: str, year: int) -> None:
    _check(expr, tz, host, year)


@settings(max_examples=150, deadline=None)
@given(
    expr=EXPR,
    tz=st.sampled_from(MARKETS),
    host=st.sampled_from(HOSTS),
    year=st.sampled_from([2024, 2025, 2026]),
)
def test_to_zone_fires_at_the_local_instants_property(
    expr: str, tz: str, host: str, year: int
) -> None:
    assume(_firings_per_year(expr) <= 1500)
    _check(expr, tz, host, year)


# --- the check can fail -------------------------------------------------------


def _old_conversion(expr: str, tz: str, when: datetime) -> str:
    """The converter issue #15 reports: hour and minute shifted by one offset, only
    plain weekday numbers moved, day of month left alone."""
    minute, hour, dom, month, dow = expr.split()
    offset = when.astimezone(ZoneInfo(tz)).utcoffset() or timedelta(0)
    total = int(hour) * 60 + int(minute) - int(offset.total_seconds() // 60)
    day_shift, total = divmod(total, 24 * 60)
    h, m = divmod(total, 60)
    if day_shift and dow != "*":
        dow = ",".join(str((int(d) + day_shift) % 7) for d in dow.split(",") if d.isdigit()) or dow
    return f"{m} {h} {dom} {month} {dow}"


@pytest.mark.parametrize(
    ("expr", "tz"),
    [
        ("0 6 * * 1-5", "Asia/Singapore"),
        ("0 6 * * 1,3-5", "Asia/Singapore"),
        ("0 6 1 * *", "Asia/Singapore"),
        ("0 6 * * 1", "Australia/Sydney"),
    ],
)
def test_the_check_catches_the_old_conversion(expr: str, tz: str) -> None:
    old = CronLine(_old_conversion(expr, tz, datetime(2026, 1, 15, tzinfo=UTC)), guarded=False)
    expected, got = _compare(expr, tz, "UTC", (old,), 2026)
    assert got != expected


def test_the_check_catches_a_missing_guard() -> None:
    (line,) = to_zone("0 6 1 * *", "Asia/Singapore", start=date(2026, 1, 1))
    expected, got = _compare("0 6 1 * *", "Asia/Singapore", "UTC", (line,), 2026)
    assert got == expected and len(got) == 12
    unguarded = CronLine(line.cron, guarded=False)
    _, got = _compare("0 6 1 * *", "Asia/Singapore", "UTC", (unguarded,), 2026)
    assert len(got) == 41  # days 28-31 of 2026: 7 x 4 + 4 x 3 + 1
