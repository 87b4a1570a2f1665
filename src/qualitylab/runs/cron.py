"""Cron schedules read in a market's time zone, and their crontab lines for another clock.

A schedule such as ``0 6 * * 1`` means 06:00 on Mondays *in the market's zone*
(``Asia/Singapore``, ``Australia/Sydney``, ...). A cron daemon reads its table
in its own zone (usually UTC). :func:`to_zone` rewrites the expression for the
daemon's zone; :func:`matches` and :func:`due` answer "does the schedule fire
at this instant?" and are what a guarded line runs before the job
(``qualitylab due --cron EXPR --tz TZ``).

Syntax
------
Five fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12 or
``jan``-``dec``) and day of week (0-7 or ``sun``-``sat``; 0 and 7 are Sunday).
A field is a comma list of ``*``, ``n``, ``a-b``, ``*/s``, ``a-b/s`` and
``a/s`` (``a`` up to the field's last value in steps of ``s``, as croniter
reads it). Rejected with :class:`CronError` (a :class:`ValueError`): values out
of range, step 0, empty list items, ``L``/``W``/``#``/``?``/``H`` and ``@daily``
style aliases, a range that runs backwards (``5-3``: croniter wraps it round
the field, other crons do not) and a range with equal ends (``5-5``: croniter
reads it as the whole field, other crons as the single value).

Day of month and day of week
----------------------------
The two day fields combine as in croniter 7 (the reference the tests check
against, with its default ``day_or=True``): when *both* restrict the day, a day matches if *either* matches
(``0 6 1 * 1`` fires on the 1st and on every Monday); otherwise both must
match. croniter's rule for "restricts" is:

* a field does not restrict when one of its comma items is a bare ``*``;
* a field whose values cover the whole field (``1-31``, ``*/1``, ``0-6``) does
  not restrict only when the *other* day field contains a ``*`` character
  anywhere (``*``, ``*/2``); otherwise it counts as restricting, which makes the
  day rule "every day";
* anything else restricts -- including ``*/2`` and other steps over ``*``.

Vixie/ISC cron and cronie differ: their ``entry.c`` flags a field as
unrestricted whenever its text *begins* with ``*`` (``if (ch == '*')
e->flags |= DOM_STAR;``), so ``0 6 */2 * 1`` fires there on odd-numbered
Mondays only, while croniter (and this module) fire on every odd day and every
Monday; croniter's ``implement_cron_bug=True`` copies vixie. The lines :func:`to_zone` writes avoid the difference: a day field
there is either exactly ``*`` or a list without ``*``, which every cron reads
the same way.

Time zones
----------
Wall times that daylight saving skips or repeats are read as the wall clock
shows them: :func:`matches` is true at both instants of a repeated 02:30 and
never for a skipped one. Cron daemons treat those hours in their own ways, so
nothing here promises more than that for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from qualitylab.errors import ParameterError

__all__ = ["CronError", "CronExpr", "CronLine", "due", "matches", "parse", "to_zone"]


class CronError(ParameterError, ValueError):
    """A cron expression or time zone is invalid; the message names field and value.

    Parameters
    ----------
    message : str
        What is wrong, naming the field and the offending text.
    key : str, optional
        The field (``"minute"``, ..., ``"day-of-week"``) or ``"timezone"``.
    """


_FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
# (lowest, highest accepted value, highest value after 7 -> 0 for day of week)
_BOUNDS = ((0, 59, 59), (0, 23, 23), (1, 31, 31), (1, 12, 12), (0, 7, 6))
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NAMES = {
    3: {name: i + 1 for i, name in enumerate(_MONTHS)},
    4: {name: i for i, name in enumerate(_WEEKDAYS)},
}
_ITEM = re.compile(
    r"^(?:(?P<star>\*)|(?P<lo>[0-9a-z]+)(?:-(?P<hi>[0-9a-z]+))?)(?:/(?P<step>[^/]*))?$",
    re.IGNORECASE,
)
_FULL = tuple(frozenset(range(lo, top + 1)) for lo, _, top in _BOUNDS)
_ALL_DAYS, _ALL_MONTHS, _ALL_WEEKDAYS = _FULL[2], _FULL[3], _FULL[4]
_NO_DAYS: frozenset[int] = frozenset()


@dataclass(frozen=True)
class CronExpr:
    """A parsed five-field cron expression.

    Attributes
    ----------
    minutes, hours, days, months, weekdays : frozenset of int
        The values each field allows; weekdays count 0 = Sunday .. 6 = Saturday.
    dom_star, dow_star : bool
        Whether day of month / day of week leave the day unrestricted, by
        croniter's rule (see the module notes). When both are False a day
        matches if either field matches; otherwise both must.
    text : str
        The expression as written.
    """

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    dom_star: bool
    dow_star: bool
    text: str


@dataclass(frozen=True)
class CronLine:
    """One crontab schedule for the host's clock.

    Attributes
    ----------
    cron : str
        Five-field expression in the host's zone.
    guarded : bool
        True when the line fires at a superset of the schedule's instants, so
        the job must run only when ``qualitylab due --cron EXPR --tz TZ``
        (:func:`due`) says the local schedule is due. False when the line alone
        is exact.
    """

    cron: str
    guarded: bool


def _field_error(i: int, text: str, problem: str) -> CronError:
    return CronError(f"{_FIELD_NAMES[i]} field {text!r}: {problem}", key=_FIELD_NAMES[i])


def _value(i: int, text: str, token: str) -> int:
    if token.isdigit():
        v = int(token)
    elif token.lower() in _NAMES.get(i, {}):
        v = _NAMES[i][token.lower()]
    else:
        raise _field_error(i, text, f"{token!r} is not a number")
    lo, hi, _ = _BOUNDS[i]
    if not lo <= v <= hi:
        raise _field_error(i, text, f"value {v} out of range {lo}-{hi}")
    return v


def _parse_field(i: int, text: str) -> tuple[frozenset[int], bool]:
    """Values of one field, and whether one of its items is a bare ``*``."""
    lo, _, top = _BOUNDS[i]
    values: set[int] = set()
    bare_star = False
    for item in text.split(","):
        m = _ITEM.match(item)
        if not m:
            raise _field_error(i, text, f"cannot read {item!r}" if item else "empty list item")
        step = 1
        if m["step"] is not None:
            if not m["step"].isdigit() or int(m["step"]) == 0:
                raise _field_error(i, text, f"step {m['step']!r} is not a positive whole number")
            step = int(m["step"])
        if m["star"]:
            first, last = lo, top
            bare_star = bare_star or m["step"] is None
        else:
            first = _value(i, text, m["lo"])
            if m["hi"] is not None:
                last = _value(i, text, m["hi"])
                if last == first:
                    raise _field_error(
                        i,
                        text,
                        f"range {item} has equal ends (croniter reads it as the whole "
                        f"field, cron as one value); write {first}",
                    )
                if last < first:
                    raise _field_error(i, text, f"range {item} runs backwards; split it in two")
            elif m["step"] is not None:
                last = top  # "a/s": from a to the field's end, as croniter reads it
                if first > last:
                    raise _field_error(i, text, f"start {first} is past the field's end {top}")
            else:
                last = first
        values.update(range(first, last + 1, step))
    if i == 4 and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values), bare_star


def parse(expr: str) -> CronExpr:
    """Parse a five-field cron expression.

    Parameters
    ----------
    expr : str
        ``minute hour day-of-month month day-of-week``, e.g. ``"0 6 * * 1-5"``.

    Returns
    -------
    CronExpr
        The expanded value sets and croniter's reading of the day fields.

    Raises
    ------
    CronError
        (a ``ValueError``) naming the field and value that cannot be read.

    Examples
    --------
    >>> e = parse("0 6 * * 1-5")
    >>> sorted(e.weekdays), sorted(e.hours), e.dom_star, e.dow_star
    ([1, 2, 3, 4, 5], [6], True, False)
    >>> sorted(parse("0 0 * * 5-7").weekdays)
    [0, 5, 6]
    >>> parse("0 6 */2 * 1").dom_star  # croniter: a step over * restricts
    False
    >>> parse("61 6 * * *")
    Traceback (most recent call last):
    ...
    qualitylab.runs.cron.CronError: minute field '61': value 61 out of range 0-59
    """
    fields = expr.split()
    if len(fields) != 5:
        raise CronError(
            f"cron expression {expr!r}: expected 5 fields "
            f"(minute hour day-of-month month day-of-week), got {len(fields)}",
            key="cron",
        )
    parsed = [_parse_field(i, f) for i, f in enumerate(fields)]
    (minutes, _), (hours, _), (days, dom_bare), (months, _), (weekdays, dow_bare) = parsed
    dom_text, dow_text = fields[2], fields[4]
    dom_star = dom_bare or (days == _ALL_DAYS and "*" in dow_text)
    dow_star = dow_bare or (weekdays == _ALL_WEEKDAYS and "*" in dom_text)
    return CronExpr(minutes, hours, days, months, weekdays, dom_star, dow_star, expr)


def _as_expr(expr: str | CronExpr) -> CronExpr:
    return expr if isinstance(expr, CronExpr) else parse(expr)


@lru_cache(maxsize=64)
def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"unknown time zone {name!r}", key="timezone") from exc


def _weekday(d: date) -> int:
    return d.isoweekday() % 7


@dataclass(frozen=True)
class _Days:
    """A day rule as "day of month in ``doms`` OR weekday in ``weekdays``", within ``months``.

    Every cron day rule has this form: an unrestricted side contributes the
    empty set, and "every day" is ``doms`` = all days.
    """

    doms: frozenset[int]
    weekdays: frozenset[int]
    months: frozenset[int]

    @classmethod
    def of(cls, e: CronExpr) -> _Days:
        if e.dom_star and e.dow_star:
            return cls(_ALL_DAYS, _NO_DAYS, e.months)
        if e.dom_star:
            return cls(_NO_DAYS, e.weekdays, e.months)
        if e.dow_star:
            return cls(e.days, _NO_DAYS, e.months)
        return cls(e.days, e.weekdays, e.months)

    def every_day(self) -> bool:
        return self.doms == _ALL_DAYS or self.weekdays == _ALL_WEEKDAYS

    def exact_when_shifted(self) -> bool:
        """Whether :meth:`shift` describes the shifted days exactly."""
        return self.months == _ALL_MONTHS and (self.every_day() or not self.doms)

    def shift(self, s: int) -> _Days:
        """A rule that holds on every day ``s`` days after a day this rule holds on.

        Weekdays shift exactly; days of month and months are a superset, found
        on the calendars of a common and a leap year.
        """
        if s == 0:
            return self
        step = timedelta(days=s)
        doms: set[int] = set()
        months: set[int] = set()
        # days found through the weekday side may fall on any day of the month
        month_doms = _ALL_DAYS if self.weekdays or self.every_day() else self.doms
        for year in (2023, 2024):
            for m in self.months:
                for d in month_doms:
                    try:
                        moved = date(year, m, d) + step
                    except ValueError:  # 31 April, 29 February 2023, ...
                        continue
                    months.add(moved.month)
                    if d in self.doms:
                        doms.add(moved.day)
        if self.every_day():
            doms = set(_ALL_DAYS)
        weekdays = frozenset((w + s) % 7 for w in self.weekdays)
        return _Days(frozenset(doms), weekdays, frozenset(months))

    def __or__(self, other: _Days) -> _Days:
        return _Days(
            self.doms | other.doms, self.weekdays | other.weekdays, self.months | other.months
        )

    def fields(self) -> str | None:
        """``"dom month dow"`` as every cron reads it, or None if it never fires."""
        if not self.months or not (self.doms or self.weekdays):
            return None
        month = _render(self.months, _ALL_MONTHS)
        if self.every_day():
            return f"* {month} *"
        dom = _render(self.doms, _ALL_DAYS) if self.doms else "*"
        dow = _render(self.weekdays, _ALL_WEEKDAYS) if self.weekdays else "*"
        return f"{dom} {month} {dow}"


def _render(values: frozenset[int], full: frozenset[int]) -> str:
    """Compact cron text for a non-empty set: ``*``, ``a-b/s``, or runs and values."""
    if values == full:
        return "*"
    v = sorted(values)
    gaps = {b - a for a, b in zip(v, v[1:], strict=False)}
    if len(v) >= 3 and len(gaps) == 1 and min(gaps) > 1:
        return f"{v[0]}-{v[-1]}/{min(gaps)}"
    parts: list[str] = []
    start = prev = v[0]
    for x in [*v[1:], None]:
        if x is not None and x == prev + 1:
            prev = x
            continue
        if prev - start >= 2:
            parts.append(f"{start}-{prev}")
        else:
            parts.extend(str(y) for y in range(start, prev + 1))
        if x is not None:
            start = prev = x
    return ",".join(parts)


def matches(expr: str | CronExpr, when: datetime, tz: str) -> bool:
    """Whether a cron expression, read in zone ``tz``, fires at the minute of ``when``.

    Parameters
    ----------
    expr : str or CronExpr
        Five-field cron expression in the local time of ``tz``.
    when : datetime
        Time-zone-aware instant; seconds are ignored.
    tz : str
        IANA zone the expression is meant in.

    Returns
    -------
    bool
        True when the wall clock of ``tz`` at ``when`` satisfies every field
        (day fields combined as croniter does; see the module notes).

    Examples
    --------
    >>> monday_6am_sgt = datetime(2026, 3, 1, 22, 0, 30, tzinfo=UTC)  # Mon 06:00:30 +08
    >>> matches("0 6 * * 1", monday_6am_sgt, "Asia/Singapore")
    True
    >>> matches("0 6 * * 1", monday_6am_sgt, "Australia/Sydney")
    False
    """
    e = _as_expr(expr)
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"when must be time-zone aware, got naive {when.isoformat()}")
    local = when.astimezone(_zone(tz))
    if local.minute not in e.minutes or local.hour not in e.hours or local.month not in e.months:
        return False
    dom_ok = local.day in e.days
    dow_ok = _weekday(local.date()) in e.weekdays
    if not e.dom_star and not e.dow_star:
        return dom_ok or dow_ok
    return dom_ok and dow_ok


def due(expr: str, tz: str, now: datetime | None = None) -> bool:
    """Whether a schedule meant in zone ``tz`` fires at the current minute.

    Parameters
    ----------
    expr : str
        Five-field cron expression in the local time of ``tz``.
    tz : str
        IANA zone the expression is meant in.
    now : datetime, optional
        Aware instant to test; default the current time.

    Returns
    -------
    bool
        ``matches(expr, now, tz)``.

    Examples
    --------
    >>> due("30 7 * * *", "Asia/Kolkata", datetime(2026, 5, 4, 2, 0, tzinfo=UTC))
    True
    """
    return matches(expr, now if now is not None else datetime.now(UTC), tz)


def _offset_seconds(zone: tzinfo, t: datetime) -> int:
    off = t.astimezone(zone).utcoffset()
    return int(off.total_seconds()) if off is not None else 0


def _transitions(zone: tzinfo, lo: datetime, hi: datetime) -> list[datetime]:
    """First instants of each new UTC offset of ``zone`` in (lo, hi], to the second.

    Scans hour by hour, so it assumes a zone does not change offset and change
    back within one hour (no zone in the tz database does).
    """
    found = []
    t, off = lo, _offset_seconds(zone, lo)
    while t < hi:
        nxt = min(t + timedelta(hours=1), hi)
        new = _offset_seconds(zone, nxt)
        if new != off:
            a, b = int(t.timestamp()), int(nxt.timestamp())
            while b - a > 1:
                mid = (a + b) // 2
                if _offset_seconds(zone, datetime.fromtimestamp(mid, UTC)) == off:
                    a = mid
                else:
                    b = mid
            found.append(datetime.fromtimestamp(b, UTC))
            off = new
        t = nxt
    return found


@lru_cache(maxsize=256)
def _differences(tz: str, host_tz: str, lo: datetime, hi: datetime) -> tuple[int, ...]:
    """Every (offset of tz - offset of host_tz) in minutes that occurs in [lo, hi]."""
    zone, host = _zone(tz), _zone(host_tz)
    instants = [lo, *_transitions(zone, lo, hi), *_transitions(host, lo, hi)]
    diffs = set()
    for t in instants:
        seconds = _offset_seconds(zone, t) - _offset_seconds(host, t)
        if seconds % 60:
            raise CronError(
                f"offset between {tz} and {host_tz} at {t.isoformat()} is not whole minutes",
                key="timezone",
            )
        diffs.add(seconds // 60)
    return tuple(sorted(diffs))


def to_zone(
    expr: str,
    tz: str,
    host_tz: str = "UTC",
    *,
    start: date | None = None,
    days: int = 400,
) -> tuple[CronLine, ...]:
    """Crontab lines, for a daemon whose clock runs in ``host_tz``, of a schedule meant in ``tz``.

    Every offset difference between the zones over the period (daylight saving
    in either zone gives several) maps each local (hour, minute) of the
    expression to a host (hour, minute) and a shift of the day. Host times are
    grouped so that each line's minutes x hours are exactly the mapped pairs
    and no host time is on two lines (a job never runs twice in a minute). The
    day fields are kept when the day does not shift; otherwise the weekdays
    shift exactly and days of month and months become a superset in the
    host's calendar (local day 1 at ``s = -1`` is host day 28-31).

    Parameters
    ----------
    expr : str
        Five-field cron expression in the local time of ``tz``.
    tz : str
        IANA zone the expression is meant in (the market's zone).
    host_tz : str, default "UTC"
        IANA zone of the cron daemon's clock.
    start : date, optional
        First day of the period whose offsets are covered; default today (UTC).
    days : int, default 400
        Length of the period in days.

    Returns
    -------
    tuple of CronLine
        Lines in host time, sorted by first hour and minute. An unguarded line
        is exact on its own: one offset difference over the period and the day
        unshifted or shifted with day-of-month and month both ``*``. A guarded
        line fires at a superset of the schedule's instants; run its job only
        when :func:`due` is true (``qualitylab due --cron EXPR --tz TZ``).

    Raises
    ------
    CronError
        For an unreadable expression or an unknown zone.

    Examples
    --------
    >>> to_zone("0 6 * * 1-5", "Asia/Singapore", start=date(2026, 1, 1))
    (CronLine(cron='0 22 * * 0-4', guarded=False),)
    >>> to_zone("0 6 * * 1,3-5", "Asia/Singapore", start=date(2026, 1, 1))
    (CronLine(cron='0 22 * * 0,2-4', guarded=False),)
    >>> to_zone("0 6 1 * *", "Asia/Singapore", start=date(2026, 1, 1))
    (CronLine(cron='0 22 28-31 * *', guarded=True),)
    >>> to_zone("30 7 * * *", "Asia/Kolkata", start=date(2026, 1, 1))
    (CronLine(cron='0 2 * * *', guarded=False),)

    Sydney is UTC+11 in summer and UTC+10 in winter, so Monday 06:00 there is
    Sunday 19:00 or 20:00 UTC; the guard picks the right one each week:

    >>> to_zone("0 6 * * 1", "Australia/Sydney", start=date(2026, 1, 1))
    (CronLine(cron='0 19,20 * * 0', guarded=True),)
    """
    e = parse(expr)
    if days < 0:
        raise ValueError(f"days must be >= 0, got {days}")
    first = start if start is not None else datetime.now(UTC).date()
    lo = datetime(first.year, first.month, first.day, tzinfo=UTC) - timedelta(days=1)
    diffs = _differences(tz, host_tz, lo, lo + timedelta(days=days + 2))

    shifts: dict[tuple[int, int], set[int]] = {}  # host (hour, minute) -> day shifts
    for d in diffs:
        for h in e.hours:
            for m in e.minutes:
                s, rest = divmod(h * 60 + m - d, 24 * 60)
                shifts.setdefault(divmod(rest, 60), set()).add(s)

    rule = _Days.of(e)
    exact_shift = rule.exact_when_shifted()
    groups: dict[tuple[str, bool], dict[int, set[int]]] = {}
    for (hour, minute), ss in shifts.items():
        day_rule = _Days(_NO_DAYS, _NO_DAYS, frozenset())
        for s in ss:
            day_rule = day_rule | rule.shift(s)
        fields = day_rule.fields()
        if fields is None:
            continue
        guarded = len(diffs) > 1 or any(s != 0 and not exact_shift for s in ss)
        groups.setdefault((fields, guarded), {}).setdefault(minute, set()).add(hour)

    lines = []
    for (fields, guarded), by_minute in groups.items():
        by_hours: dict[frozenset[int], set[int]] = {}
        for minute, hours in by_minute.items():
            by_hours.setdefault(frozenset(hours), set()).add(minute)
        for hours, minutes in by_hours.items():
            cron = f"{_render(frozenset(minutes), _FULL[0])} {_render(hours, _FULL[1])} {fields}"
            lines.append(((min(hours), min(minutes), cron), CronLine(cron, guarded)))
    return tuple(line for _, line in sorted(lines, key=lambda kv: kv[0]))
