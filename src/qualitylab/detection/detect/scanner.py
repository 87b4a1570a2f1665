"""The scan of one market: :func:`scan` drives loading, detectors, tests and grouping."""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from qualitylab.detection.detect.events import local_event_dates, nearby_events
from qualitylab.detection.detect.grouping import (
    benjamini_hochberg,
    group_alerts,
    impact,
    large_enough,
    merge_events,
    overlap_counts,
    severity,
)
from qualitylab.detection.detect.series import daily_red_team, load_dimensions, series_grids
from qualitylab.detection.detect.stops import (
    cover_stops,
    find_stops,
    match_stop_events,
    stop_alert,
    stop_record,
)
from qualitylab.detection.detect.vocabulary import (
    ALERT_COLUMNS,
    EXTRA_COLUMNS,
    MSG_PERIOD,
    MSG_RANGE,
    MSG_REBASELINE_DATE,
    MSG_REBASELINE_KEY,
    MSG_UNKNOWN_DIMENSION,
    MSG_UNKNOWN_METRIC,
    SCAN_METRICS,
    SEGMENT_STOPPED,
    SENSITIVITY_FDR,
    SKIPPED_COLUMNS,
)
from qualitylab.detection.detect.windows import (
    DailySeries,
    ScanContext,
    Window,
    evaluate,
    gap_windows,
    noise_floor,
)
from qualitylab.detection.detect.young import YOUNG_MIN_HISTORY, young_windows
from qualitylab.errors import ParameterError, QualityLabError


def _to_date(value: Any, name: str) -> date | None:
    if value is None:
        return None
    try:
        return pd.Timestamp(value).date()
    except (ValueError, TypeError):
        raise ParameterError(
            MSG_RANGE.format(name=name, interval="ISO dates (YYYY-MM-DD)", value=value), key=name
        ) from None


@dataclass(frozen=True)
class _Range:
    """The dates a scan covers (market-local)."""

    data_start: date
    data_end: date
    base_start: date  # first day loaded
    start: date  # first day of the full-baseline period (after ``end`` when there is none)
    end: date
    young: bool  # the days before ``start`` are scanned with young baselines
    first: date | None = None  # young: the first day alerts may start on (default base_start)

    @property
    def first_alert(self) -> date:
        return (self.first or self.base_start) if self.young else self.start

    @property
    def days(self) -> int:
        return (self.end - self.base_start).days + 1


def _resolve_dates(ds: Any, market: str, start: Any, end: Any, baseline_days: int) -> _Range:
    from qualitylab.measure.scope import resolve_period

    data = resolve_period(ds, market=market, start=None, end=None)
    e = _to_date(end, "end") or data.end
    s = _to_date(start, "start")
    young = s is None
    first = None
    if s is not None and data.start <= s <= min(e, data.end) and (s - data.start).days < 7:
        # too little history before an explicit start for a baseline: the young rule
        # judges the days from ``s`` on, the full detectors once baseline_days exist
        young, first = True, s
        s = None
    if s is None:
        s = data.start + timedelta(days=baseline_days)
        base_start = data.start
        bad = e < data.start
    else:
        base_start = max(s - timedelta(days=baseline_days), data.start)
        bad = e < s or (s - base_start).days < 7 or s > data.end
    if bad:
        raise QualityLabError(
            MSG_PERIOD.format(
                market=market,
                start=s,
                end=e,
                data_start=data.start,
                data_end=data.end,
                baseline_days=baseline_days,
            )
        )
    return _Range(data.start, data.end, base_start, s, min(e, data.end), young, first)


def _mask_dates(ds: Any, market: str, timezone: str, kinds: Collection[str]) -> set[pd.Timestamp]:
    if not kinds or not ds.has("events"):
        return set()
    ev = local_event_dates(ds.table("events").to_pandas(), market, timezone)
    return set(ev.loc[ev["kind"].isin(list(kinds)), "date"])


def scan(
    ds: Any,
    market: str,
    start: date | str | None = None,
    end: date | str | None = None,
    *,
    dimensions: Sequence[str] = (
        "market",
        "vendor",
        "site",
        "queue",
        "language",
        "policy",
        "ai_model",
    ),
    metrics: Sequence[str] | None = None,
    baseline_days: int = 28,
    min_n: int | None = None,
    fdr: float | None = None,
    mask_events: Collection[str] = ("outage", "holiday"),
    rebaseline: Mapping[tuple[str, str, str], date | str] | None = None,
) -> pd.DataFrame:
    """Scan one market for anomalies in every metric of every segment.

    Parameters
    ----------
    ds : Dataset
    market : str
        Market code; its calendar defines the dates.
    start, end : date or ISO string, optional
        Market-local period to alert on, inclusive. By default the whole data
        range is scanned: days from ``baseline_days`` after the first day with
        data on by the full detectors, the days before them (from the 8th day)
        by the young-baseline rule (Notes). An explicit ``start`` scans
        ``start..end`` only, against the ``baseline_days`` before it (at least
        7 must exist). ``end`` defaults to the last day with data.
    dimensions : sequence of str
        Grains to slice by, from :data:`SCAN_DIMENSIONS`; ``"market"`` gives
        market-wide series.
    metrics : sequence of str, optional
        Metrics to watch, from :data:`SCAN_METRICS` (default: all the data
        supports; AI metrics need ``qualitylab.aieval.ai_metrics`` and are
        sliced by the content dimensions market, queue, language, policy and
        ai_model only; ``reporting_gap`` needs ``vendor_reported`` and the
        vendor dimension; ``red_team_recall`` needs ``red_team`` and is
        sliced by ``attack``).
    baseline_days : int, default 28
        Days of history that form the reference of the full detectors, and
        the most history a young-baseline day is judged against.
    min_n : int, optional
        Smallest sample to judge (default: the market's ``min_n``).
    fdr : float, optional
        False discovery rate of the run; by default from the market's
        ``alert_sensitivity`` via :data:`SENSITIVITY_FDR`.
    mask_events : collection of str, default ("outage", "holiday")
        Event kinds whose market-local dates are left out of every baseline.
    rebaseline : mapping, optional
        ``{(metric, dimension, segment): date}``: series whose history restarts
        on a market-local date (a ``date`` or ISO string), e.g. the date an
        alert on it was labelled ``new_normal``. The segment of the ``market``
        dimension is the market code. Days before the date are not used as
        baseline or reference, and no alert of the series lies wholly before
        it (Notes). Keys that match no series of the scan are ignored and
        noted; a date that is not one raises :class:`ParameterError` naming
        the key.

    Returns
    -------
    pandas.DataFrame
        One row per alert, ranked by ``impact``: :data:`ALERT_COLUMNS`, then
        ``p_adjusted`` (Benjamini-Hochberg), ``n`` (audits, decisions or
        SLA-eligible items behind ``observed``), ``impact`` (decisions affected:
        window volume x deviation, or excess items for volume), ``group_id``,
        ``related`` (alerts explained by this one), ``events`` (nearby events)
        and ``note``. ``attrs["skipped"]`` lists the series too small to judge
        as records (:func:`skipped_series` makes the tidy table,
        :data:`SKIPPED_COLUMNS`); a warning summarises them.
        ``attrs["scanned"]`` holds the dates as ISO strings: ``start``/``end``
        (the range scanned), ``young_start``/``young_end`` (days judged by the
        young-baseline rule; ``None`` when there are none) and
        ``full_start``/``full_end`` (the full-baseline period; ``None`` when
        the data is shorter than ``baseline_days`` + 1 days), plus
        ``data_start``/``data_end`` and ``baseline_days``. ``attrs["stopped"]``
        lists the segments that stopped (records: ``dimension, segment,
        last_active, stopped_from, expected_daily, p_value, event, covered_by,
        alerted, note``) and ``attrs["young"]`` counts the series and
        series-days the young rule judged. ``attrs["rebaselined"]`` has one
        record per key of ``rebaseline`` (:data:`REBASELINED_COLUMNS`;
        :func:`rebaselined_series` makes the table): its date (``from``), the
        days from it to the end of the scan, the ``rule`` that judged the
        series (``"full"``, ``"young"``, ``"none"``: too little data since,
        or ``"unknown"``: no such series, ignored) and a ``note``; unknown
        keys are also named in the warning. With fewer than 8 days of data the
        frame is empty and ``attrs["note"]`` says why (with a warning).

    Notes
    -----
    Data: one engine aggregation per dimension (``by=[dimension, "date"]``)
    per metric family; nothing is queried per segment. Each daily series
    (reindexed to every day of baseline + period) is judged by detectors for
    its kind:

    * rates: :func:`p_chart` (Laney when overdispersed), and on its z-scores
      :func:`cusum_chart`, :func:`ewma_chart` and :func:`changepoints`;
    * counts and times (on log scale): :func:`stl_mad` for spikes and
      :func:`changepoints` of the deseasonalised series for level shifts;
    * ``reporting_gap``: weekly z-scores of
      :func:`qualitylab.reconcile.reporting_gap`, with |z| > 3 and CUSUM.

    Each detector proposes windows of consecutive days (a run of flagged days
    grows over neighbours still beyond 2σ). A rate window is
    tested as one pooled sample against the baseline rate (Laney-scaled z);
    an STL window by the Stouffer sum of its robust scores; a level shift by
    its two-sample z against the baseline level (scores of counts and times
    are read as Student's t with 10 d.f.: daily operational series have
    heavier tails than the normal). The window p-value pays for the search: it
    is the tail of the largest of all windows of the monitored period
    (:func:`scan_p_value`), not of one fixed window.
    Overlapping or adjacent windows of one series and direction form one
    event (one hypothesis, with its smallest window p-value; windows whose
    p-value exceeds the FDR cannot be significant and join no event, but are
    counted), and Benjamini-Hochberg runs across every event in the market
    plus one null test per series that proposed none. Each significant event is one alert
    spanning its windows.
    Rate windows pooling fewer than ``min_n`` observations are not reported;
    count/time series whose median daily ``n`` is below ``min_n``, and rate
    series with fewer than ``min_n`` observations in the baseline or period
    or fewer than 7 baseline days with data, are skipped.

    Grouping (same metric and direction, overlapping dates). The excess of
    an alert is the decisions affected, day by day, against its expectation.
    A *parent* segment (one that holds at least 95% of the other's decisions)
    explains a part that moved like it (deviation at most 1.5 times the
    parent's) — a market-wide spike explains the same spike in every queue.
    A part that moved much more is a *hotspot*: hotspots of one dimension
    that carry at least half the parent's excess explain the parent — a
    vendor's drop explains the market's smaller drop. Between overlapping
    segments of different dimensions, A explains B when A's excess over B's
    days, times the share of A's decisions that lie in B, is at least half of
    B's excess and more than B explains A. Explained alerts are listed in the
    explaining alert's ``related`` (between identical populations the earlier
    dimension of :data:`SCAN_DIMENSIONS` is kept). On one segment,
    ``sla_compliance`` explains response percentiles (views of the same
    response times); accuracy and its error rates stay separate alerts, since
    each error type has its own remedy.

    Severity: ``high`` when ``p_adjusted <= fdr/100`` and the effect is large
    (rates: >= 5 points or >= 50% relative to the rarer outcome; counts and
    times: >= 50%), ``medium`` when ``p_adjusted <= fdr/10`` and the effect is
    >= 2 points / 20%, else ``low``. Alerts below :data:`MIN_EFFECT` are
    dropped however significant.

    Young baselines. Days with fewer than ``baseline_days`` of history (the
    first weeks of a dataset, and every day of a segment that has fewer than
    7 days of data in the full period's baseline: a new vendor, queue or
    model version) are judged one by one against the up to
    ``baseline_days`` days with data before them, from 7 on (so from the 8th
    day); masked days are left out of the history. The history is screened
    first: points more than 3.5 robust SDs (MAD/0.6745) from its median are
    dropped when a prediction t-test against the other points confirms them
    at p < 0.001/h (the MAD of a handful of points is too noisy to trim on
    alone). Counts and times (log scale): the exact small-sample prediction
    test :math:`t = (y_t - \bar y_h)/(s_h\\sqrt{1+1/h})`, Student's t with
    ``h - 1`` d.f., ``s_h`` floored at the series' sampling noise
    (Poisson, or the percentile's). Rates: the day against the pooled
    history :math:`\bar p = \\sum k/\\sum n` by Fisher's exact test (pooled
    z when every cell is large), which accounts for the history's size;
    when the history is overdispersed (Pearson
    :math:`\\hat\\phi = \\sum z_i^2/(h-1) > 1`) the z is divided by
    :math:`\\sqrt{\\hat\\phi}` and read as Student's t with ``h - 1`` d.f.
    Only days with ``n >= min_n`` (rates), and series whose median daily
    ``n`` reaches ``min_n`` (counts and times), are judged. Each judged day
    is one test; a series pays for the search over its days by Bonferroni
    (p x days judged). Flagged days of one series and direction that touch
    form one event, as above, and Benjamini-Hochberg runs over these events
    plus one null test per other series the rule judged: the young days are
    their own family, so the full period's alerts and adjusted p-values do
    not depend on how much history precedes it (each family has FDR at most
    ``fdr``, the union at most twice that). Such alerts have detector and
    ``note`` ``young_baseline``; MIN_EFFECT and the severity rules apply.
    Simulated null rejection rates at 1%/5%: normal days 1.0-1.3%/4.6-5.3%
    for h = 7..27; Poisson counts and binomial rates are conservative
    (``tests/test_detect_young.py``; false alarms and detection over many
    seeds in ``benchmarks/results/young_eval.md``).

    Segments that stop. A segment (any dimension but the market) whose last
    day with decisions is before the end of the scan stopped when it had
    decisions on 80% of the 14 days before and no decisions at all on the
    rest is implausible had it kept its share of its dimension's volume
    (Poisson, Bonferroni over the segments examined, at most ``fdr``); a last
    day with less than half its median volume is the (partial) day it
    stopped. From that day its series have no data (not zeros), so no
    detector alerts on it. The stop is annotated, not alerted, when an event
    of the dimension's kind (:data:`STOP_EVENT_KINDS`: ``model_release`` for
    ``ai_model``, ``vendor_offboarding`` for ``vendor``, ``queue_retired``
    for ``queue``; market or ``*``) is effective within 2 days of it and its
    description names the segment, or names none of the dimension's other
    segments that existed before (a release may name the model it brings);
    an event of any of these kinds that names the segment also explains it.
    A stop that lies inside another stop of the same day (95% of its
    decisions, e.g. a vendor's site) is covered by that one. Any other stop
    raises exactly one ``low`` alert: metric ``volume``, detector
    ``segment_stopped``, note ``segment stopped: ...``, from the day it
    stopped to the end of the scan, expected = its share of the
    dimension's daily volume.

    Re-baselined series (``rebaseline``, e.g. an alert labelled
    ``new_normal``). Such a series is judged as if its data began on its
    date: the days before it are treated as days without data, so they are
    in no reference, and the series is judged like a segment that starts
    that day. When at least 7 days of the full period's baseline lie on or
    after the date, the full detectors judge the period against those days
    (and, in a whole-range scan, the young rule the baseline days from the
    8th day after the date); otherwise the young-baseline rule judges it
    from the 8th day after the date, each day against the up to
    ``baseline_days`` days since (fewer than 8 days since: not judged, listed
    in ``attrs["skipped"]``). So a level that became the new normal on the
    date stops alerting, and a further shift after it is judged against
    that level. Windows that end before the date are dropped (none can
    hold data), and a ``segment_stopped`` alert is not raised when the
    segment stopped before its ``volume`` series was re-baselined. The
    series' tests stay in the run's Benjamini-Hochberg family.
    ``reporting_gap`` is tested against zero, not a baseline: a re-baseline
    only drops its windows before the date. A date before the first day
    loaded changes nothing; one after the end leaves the series unjudged.

    Examples
    --------
    >>> from qualitylab import open_dataset
    >>> ds = open_dataset("data/demo")  # doctest: +SKIP
    >>> alerts = scan(ds, "SG")  # doctest: +SKIP
    >>> write_alerts(alerts, "out/SG/alerts.csv")  # doctest: +SKIP
    """
    from qualitylab.measure.scope import GRAINS

    mp = ds.params.market(market)
    dims = [dimensions] if isinstance(dimensions, str) else list(dimensions)
    allowed_dims = [g for g in GRAINS if g not in ("date", "week", "month", "moderator_id")]
    for d in dims:
        if d not in allowed_dims:
            raise ParameterError(
                MSG_UNKNOWN_DIMENSION.format(dim=d, allowed=", ".join(allowed_dims)),
                key="dimensions",
            )
    wanted = list(SCAN_METRICS) if metrics is None else list(metrics)
    for m in wanted:
        if m not in SCAN_METRICS:
            raise ParameterError(
                MSG_UNKNOWN_METRIC.format(metric=m, allowed=", ".join(SCAN_METRICS)), key="metrics"
            )
    if not isinstance(baseline_days, int) or baseline_days < 7:
        raise ParameterError(
            MSG_RANGE.format(name="baseline_days", interval="integers >= 7", value=baseline_days),
            key="baseline_days",
        )
    q = SENSITIVITY_FDR[mp.alert_sensitivity] if fdr is None else fdr
    if not 0 < q < 1:
        raise ParameterError(MSG_RANGE.format(name="fdr", interval="(0, 1)", value=fdr), key="fdr")
    rebase = _check_rebaseline(rebaseline)
    if hasattr(ds, "for_market"):
        ds = ds.for_market(market)  # dozens of queries follow: slice the market once
    rng = _resolve_dates(ds, market, start, end, baseline_days)
    base_start, start_d, end_d = rng.base_start, rng.start, rng.end
    if rng.days < YOUNG_MIN_HISTORY + 1:
        reason = (
            f"market {market}: only {rng.days} day(s) of data ({base_start}..{end_d}); a scan "
            f"needs {YOUNG_MIN_HISTORY + 1} (a day judged against {YOUNG_MIN_HISTORY} days "
            "of history)"
        )
        warnings.warn(reason, stacklevel=2)
        out = _empty_alerts(rng, q, baseline_days, reason)
        records = _rebaseline_records(rebase, dict.fromkeys(rebase, "none"), {}, market, rng)
        for r in records:
            r["note"] = "not judged: the scan is empty (see alerts.attrs['note'])"
        out.attrs["rebaselined"] = records
        return out
    dates = pd.date_range(pd.Timestamp(base_start), pd.Timestamp(end_d), freq="D")
    masked = _mask_dates(ds, market, mp.timezone, mask_events)
    ctx = ScanContext(
        market=market,
        dates=dates,
        base_len=min((start_d - base_start).days, len(dates)),
        mask=np.asarray(dates.isin(list(masked)), dtype=bool),
        min_n=int(min_n if min_n is not None else mp.min_n),
        fdr=float(q),
        first_scan=(rng.first_alert - base_start).days,
        window=baseline_days,
    )
    full = ctx.monitored_days > 0
    # re-baselined series: index of the first day of their history (len(dates): none in range)
    since_at = {k: min(max((d - base_start).days, 0), len(dates)) for k, d in rebase.items()}
    rb_rule: dict[tuple[str, str, str], str] = {}  # how each re-baselined series was judged
    rb_dropped: dict[tuple[str, str, str], int] = {}  # its windows that ended before the date
    # the period whose decisions define segment sizes and overlaps (as before: the full one)
    p0, p1 = (start_d, end_d) if full else (base_start, end_d)
    daily = set(wanted) - {"reporting_gap", "red_team_recall"}
    windows: list[Window] = []
    young: list[Window] = []
    quiet = quiet_young = young_days = young_series = 0
    volumes: dict[tuple[str, str], float] = {}
    notes: set[str] = set()
    # Who overlaps whom (for grouping), and dimensions that merely repeat the market.
    sub_dims = [d for d in dims if d != "market"]
    cube = overlap_counts(ds, market, p0, p1, sub_dims) if sub_dims else None
    stacked_dims = []
    for dim in dims if daily else []:
        if cube is not None and "market" in dims and dim != "market":
            segments = cube.loc[cube[dim] != "nan", dim].unique()
            if len(segments) == 1:
                notes.add(f"{dim} has one segment ({segments[0]}), the same as the market")
                continue
        stacked_dims.append(dim)
    loads: list[tuple[str, pd.DataFrame, list[str]]] = []
    if stacked_dims:
        with warnings.catch_warnings():
            # aieval warns when AI rates are undefined for some segments (e.g. a
            # segment-day without positives has no recall): one scan loads hundreds
            # of segment-days, where that is expected, not news; those days carry
            # no value and the scan judges the days that do
            warnings.filterwarnings(
                "ignore", message=r".* is undefined for ", category=RuntimeWarning
            )
            loaded = load_dimensions(ds, market, stacked_dims, base_start, end_d, daily)
        loads = [(d, *loaded[d]) for d in stacked_dims]
    if "red_team_recall" in wanted and ds.has("red_team"):
        # red-team items are not decisions: their own dimension, the attack
        loads.append(("attack", daily_red_team(ds, market, base_start, end_d), []))
    # Segments that stopped: found on the daily volume before any series is judged
    seg_volume: dict[str, pd.DataFrame] = {}
    for dim, long, _ in loads:
        if dim in ("market", "attack") or "volume" not in daily:
            continue
        v = long[long["date"].isin(dates)].drop_duplicates(["segment", "date"])
        seg_volume[dim] = v.pivot(index="segment", columns="date", values="volume_day").reindex(
            columns=dates
        )
    stops = find_stops(seg_volume, ctx)
    events = ds.table("events").to_pandas() if ds.has("events") else None
    match_stop_events(stops, events, ctx, mp.timezone, seg_volume)
    cover_stops(stops, ds, ctx, base_start, end_d)
    stopped_at = {(st.dimension, st.segment): st.start for st in stops}
    for dim, long, dim_notes in loads:
        notes.update(dim_notes)
        # one (metric, segment) x day grid per column, instead of a reindex per series
        long = long[long["date"].isin(dates)].drop_duplicates(["metric", "segment", "date"])
        rows, grids = series_grids(long, dates, ("value", "n", "volume_day", "dispersion"))
        values, ns, vols, spread = grids
        # a series' response-time spread (NaN for series without one); nanmedian only
        # where a row has a value, as it warns on an all-NaN row
        some = ~np.isnan(spread).all(axis=1)
        disps = np.full(len(spread), np.nan)
        if some.any():
            disps[some] = np.nanmedian(spread[some], axis=1)
        for i, (metric, seg) in enumerate(rows):
            s = DailySeries(
                str(metric), dim, str(seg), values[i].copy(), ns[i].copy(), vols[i].copy()
            )
            if metric == "volume":
                s.n = np.where(np.isfinite(s.n), s.n, 0.0)
            s.stop = stopped_at.get((dim, str(seg)))
            if s.stop is not None:
                s.value[s.stop :] = np.nan
                s.n[s.stop :] = 0.0 if metric == "volume" else np.nan
            key = (s.metric, dim, s.segment)
            if key in since_at:  # judged as if its history began on the re-baseline date
                s.since = since_at[key]
                s.value[: s.since] = np.nan
                s.n[: s.since] = 0.0 if metric == "volume" else np.nan
            s.floor = noise_floor(s, float(disps[i]))
            lo = ctx.base_len if full else 0
            volumes[(dim, str(seg))] = float(np.nansum(s.volume[lo:]))
            late = not full or _reference_days(s, ctx) < YOUNG_MIN_HISTORY
            if not late:
                # the full-baseline detectors judge the period; young days before it too
                y_found, y_days, _ = young_windows(s, ctx, late=False)
                found = evaluate(s, ctx)
            else:
                # a segment with no baseline yet (or a dataset shorter than one): judged
                # from its own first day against the history it has
                y_found, y_days, why = young_windows(s, ctx, late=True)
                found = None
                if not y_days and why is not None:
                    ctx.skip(s.metric, s.dimension, s.segment, *why)
            if key in since_at:
                y_found, found = _after_rebaseline(y_found, found, s.since, rb_dropped, key)
                rb_rule[key] = "full" if found is not None else "young" if y_days else "none"
            young.extend(y_found)
            young_days += y_days
            young_series += bool(y_days)
            if y_days and not y_found:
                quiet_young += 1
            if found is None:
                continue
            windows.extend(found)
            if not found:
                quiet += 1
    if "reporting_gap" in wanted and full:
        if "vendor" in dims and ds.has("vendor_reported"):
            try:
                gap_w, tested = gap_windows(ds, ctx, start_d, end_d)
            except QualityLabError as exc:
                notes.add(f"reporting_gap skipped: {exc}")
            else:
                # the gap is tested against zero, not a baseline: a re-baseline only
                # drops its windows before the date
                keep = []
                for w in gap_w:
                    key = ("reporting_gap", "vendor", w.series.segment)
                    if key in since_at:
                        rb_rule[key] = "full"
                    if w.end >= since_at.get(key, 0):
                        keep.append(w)
                    else:
                        rb_dropped[key] = rb_dropped.get(key, 0) + 1
                gap_w = keep
                for w in gap_w:
                    w.series.volume = np.full(len(dates), np.nan)
                    vol = volumes.get(("vendor", w.series.segment))
                    if vol is not None:
                        w.series.volume[ctx.base_len :] = vol / max(ctx.monitored_days, 1)
                windows.extend(gap_w)
                quiet += max(tested - len({(w.series.segment, w.kpi) for w in gap_w}), 0)
        elif metrics is not None:
            notes.add("reporting_gap needs the vendor_reported table and the vendor dimension")
    # One hypothesis per event (overlapping windows of a series proposed by several
    # detectors); each window's p-value already pays for the search over windows.
    # Windows that cannot pass on their own (p > fdr), or whose own deviation is
    # below MIN_EFFECT (too small to report), are still counted as tests but do
    # not join events: a small level shift next to a spike would otherwise
    # dilute the spike's summary below MIN_EFFECT and lose it.
    significant = benjamini_hochberg(windows, quiet, q)
    # The young-baseline days are their own family (see Notes): same procedure, with
    # each series' days paid for by Bonferroni instead of the window search.
    significant_young = benjamini_hochberg(young, quiet_young, q)
    alerts = [a for a in merge_events(significant, ctx) if large_enough(a)]
    alerts += [a for a in merge_events(significant_young, ctx) if large_enough(a)]
    stop_alerts = []
    for st in stops:
        key = ("volume", st.dimension, st.segment)
        if key in since_at and since_at[key] > st.last_active:
            # no data since its re-baseline: the stop is the level it was re-baselined to
            st.rebaselined = rebase[key].isoformat()
            rb_rule.setdefault(key, "none")
        if not st.event and not st.covered_by and not st.rebaselined:
            stop_alerts.append(stop_alert(st, ctx, seg_volume[st.dimension]))
    alerts += stop_alerts
    market_volume = volumes.get(("market", market), max(volumes.values(), default=1.0))
    for a in alerts:
        a["impact"] = impact(a)
        a["severity"] = "low" if a["detector"] == SEGMENT_STOPPED else severity(a, q)
        a["segment_volume"] = volumes.get((a["dimension"], a["segment"]), 0.0)
        a["market_volume"] = market_volume
    primaries = group_alerts(alerts, ds, market, p0, p1, cube)
    for a in primaries:
        a["events"] = (
            " | ".join(
                nearby_events(
                    events,
                    a["start_date"],
                    end=a["end_date"],
                    market=market,
                    timezone=mp.timezone,
                    policy=a["segment"] if a["dimension"] == "policy" else None,
                )
            )
            if events is not None
            else ""
        )
    out = pd.DataFrame(primaries, columns=[*ALERT_COLUMNS, *EXTRA_COLUMNS])
    out = out.sort_values(["impact", "p_value"], ascending=[False, True], kind="stable")
    out = out.reset_index(drop=True)
    if len(out):
        out["group_id"] = np.arange(1, len(out) + 1)
    for c in ("start_date", "end_date"):
        out[c] = pd.to_datetime(out[c])
    skipped = pd.DataFrame(ctx.skipped, columns=SKIPPED_COLUMNS)
    # Records, not a DataFrame: pandas compares attrs when concatenating, and a
    # frame there would break pd.concat of several markets' alerts.
    _scan_attrs(out, rng, q, baseline_days, ctx)
    out.attrs["skipped"] = skipped.to_dict("records")
    out.attrs["stopped"] = [stop_record(st, ctx) for st in stops]
    out.attrs["young"] = {"series": young_series, "days_judged": young_days}
    out.attrs["rebaselined"] = _rebaseline_records(rebase, rb_rule, rb_dropped, market, rng)
    unknown = sum(r["rule"] == "unknown" for r in out.attrs["rebaselined"])
    if unknown:
        notes.add(
            f"{unknown} re-baselined series not in this scan, ignored "
            "(see alerts.attrs['rebaselined'])"
        )
    if len(skipped) or notes:
        parts = []
        if len(skipped):
            parts.append(
                f"{len(skipped)} series too small to judge were skipped "
                f"(see alerts.attrs['skipped'])"
            )
        parts += sorted(notes)
        warnings.warn(f"scan {market}: " + "; ".join(parts), stacklevel=2)
    return out


def _check_rebaseline(rebaseline: Any) -> dict[tuple[str, str, str], date]:
    """``scan``'s ``rebaseline`` as ``{(metric, dimension, segment): date}``, validated."""
    if rebaseline is None:
        return {}
    if not isinstance(rebaseline, Mapping):
        raise ParameterError(
            "rebaseline must be a mapping {(metric, dimension, segment): date}; "
            f"got {type(rebaseline).__name__}",
            key="rebaseline",
        )
    out: dict[tuple[str, str, str], date] = {}
    for key, value in rebaseline.items():
        if not (isinstance(key, tuple) and len(key) == 3 and all(isinstance(k, str) for k in key)):
            raise ParameterError(MSG_REBASELINE_KEY.format(key=key), key="rebaseline")
        day: date | None = None
        if value is pd.NaT:  # a datetime subclass, but no date
            day = None
        elif isinstance(value, datetime):  # pandas Timestamps too
            day = value.date()
        elif isinstance(value, date):
            day = value
        elif isinstance(value, str):
            try:
                day = date.fromisoformat(value.strip())
            except ValueError:
                day = None
        if day is None:
            raise ParameterError(MSG_REBASELINE_DATE.format(key=key, value=value), key="rebaseline")
        out[key] = day
    return out


def _after_rebaseline(
    young: list[Window],
    found: list[Window] | None,
    since: int,
    dropped: dict[tuple[str, str, str], int],
    key: tuple[str, str, str],
) -> tuple[list[Window], list[Window] | None]:
    """Windows of a re-baselined series that reach its date (none lies wholly before it)."""
    before = [w for w in [*young, *(found or [])] if w.end < since]
    if before:
        dropped[key] = dropped.get(key, 0) + len(before)
        young = [w for w in young if w.end >= since]
        found = None if found is None else [w for w in found if w.end >= since]
    return young, found


def _rebaseline_records(
    rebase: dict[tuple[str, str, str], date],
    rules: dict[tuple[str, str, str], str],
    dropped: dict[tuple[str, str, str], int],
    market: str,
    rng: _Range,
) -> list[dict[str, Any]]:
    """``alerts.attrs["rebaselined"]``: one record per key (:data:`REBASELINED_COLUMNS`)."""
    what = {
        "full": "judged by the full-baseline detectors against the days since",
        "young": "judged by the young-baseline rule (under 7 baseline days since)",
        "none": "not judged: too little data since (see alerts.attrs['skipped'])",
    }
    records = []
    for key, day in rebase.items():
        rule = rules.get(key, "unknown")
        if rule == "unknown":
            note = "no such series in this scan: ignored"
        elif key[0] == "reporting_gap":
            note = "reporting_gap is tested against zero, not a baseline: windows before dropped"
        elif day > rng.end:
            note = f"from after the scan's end ({rng.end}): no data since, not judged"
        elif day <= rng.base_start:
            note = f"from on or before the first day loaded ({rng.base_start}): nothing dropped"
        else:
            note = f"days before it left out; {what[rule]}"
        if dropped.get(key):
            note += f"; {dropped[key]} window(s) before the date dropped"
        records.append(
            {
                "market": market,
                "metric": key[0],
                "dimension": key[1],
                "segment": key[2],
                "from": day.isoformat(),
                "days": max((rng.end - day).days + 1, 0),
                "rule": rule,
                "note": note,
            }
        )
    return records


def _reference_days(s: DailySeries, ctx: ScanContext) -> int:
    """Days with data in the full period's baseline (outside masked days)."""
    base = ctx.base_len
    has = np.isfinite(s.value) & (np.nan_to_num(s.n) > 0)
    return int((has[:base] & ~ctx.mask[:base]).sum())


def _iso(d: date | None) -> str | None:
    return None if d is None else d.isoformat()


def _scan_attrs(
    out: pd.DataFrame, rng: _Range, q: float, baseline_days: int, ctx: ScanContext | None
) -> None:
    """The dates a scan covered, as plain values (see :func:`scan`, Returns)."""
    first = rng.first_alert
    young_from = (
        max(rng.base_start + timedelta(days=YOUNG_MIN_HISTORY), first) if rng.young else None
    )
    young_to = min(rng.start - timedelta(days=1), rng.end) if rng.young else None
    if young_from is not None and young_to is not None and young_from > young_to:
        young_from = young_to = None
    full_on = rng.start <= rng.end
    out.attrs["fdr"] = q
    out.attrs["period"] = (first, rng.end)
    out.attrs["baseline"] = (rng.base_start, min(rng.start - timedelta(days=1), rng.end))
    out.attrs["scanned"] = {
        "start": _iso(first),
        "end": _iso(rng.end),
        "data_start": _iso(rng.data_start),
        "data_end": _iso(rng.data_end),
        "young_start": _iso(young_from),
        "young_end": _iso(young_to),
        "full_start": _iso(rng.start) if full_on else None,
        "full_end": _iso(rng.end) if full_on else None,
        "baseline_days": int(baseline_days),
    }


def _empty_alerts(rng: _Range, q: float, baseline_days: int, reason: str) -> pd.DataFrame:
    out = pd.DataFrame(columns=[*ALERT_COLUMNS, *EXTRA_COLUMNS])
    for c in ("start_date", "end_date"):
        out[c] = pd.to_datetime(out[c])
    _scan_attrs(out, rng, q, baseline_days, None)
    out.attrs["skipped"] = []
    out.attrs["stopped"] = []
    out.attrs["young"] = {"series": 0, "days_judged": 0}
    out.attrs["note"] = reason
    return out
