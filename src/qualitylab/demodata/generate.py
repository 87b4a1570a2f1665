"""Synthetic demo data: a full qualitylab dataset with planted incidents.

:func:`generate` writes every table of the data contract in ``DESIGN.md``
(``decisions``, ``qa_audits``, ``staffing``, ``calibration``,
``vendor_reported``, ``events``, ``escalations``, ``red_team``) plus
``incidents.csv``, the ground truth of the incidents it planted, so that
detection can be scored.

The data follows the market parameters (time zone, languages, vendors, SLA per
queue, AI threshold): volumes peak in the market-local evening, weekends are
busier for live streams, response times are lognormal around each queue's SLA,
new hires are less accurate, the AI model separates violating from clean items
imperfectly and acts alone only when confident. Staffing is rostered as a
workforce planner would: Erlang C moderator-hours for the expected volume at
the SLA target, plus shrinkage and a small buffer, with overtime when the day
runs short (see ``_staffing``).

Layout of ``out``::

    decisions/part-00000.parquet, ...   one part per market x chunk of days
    qa_audits.parquet  staffing.parquet  calibration.parquet
    vendor_reported.parquet  events.parquet  escalations.parquet
    red_team.parquet  incidents.csv

Each planted incident says in ``incidents.csv`` whether it is **findable**:
whether the market's default :func:`qualitylab.detect.scan` (a 28-day
baseline, the rest of the period searched) could see it with 80% power
(:data:`FINDABLE_POWER`) at FDR 0.05 (:data:`FINDABLE_FDR`). The rule uses the
generator's own design, never what a scan found:

* rate incidents (accuracy and its error rates, AI recall, the auto-action
  rate, SLA compliance) are judged on the series that show them: the
  incident's segment and its market, and for accuracy each of its three error
  rates (an error rate: itself and accuracy). While decisions are drawn the
  generator sums, per day and series, the decisions the series counts, those
  that are a success by their latent truth, and the internal audits the QA
  design expects among them (inclusion probability x internal share; every
  decision for census metrics) with their squared weights. The series' rate
  is the population rate (QA rates are design-weighted) and its information
  the design effective number of audits (Kish). The *planted change* is the
  rate over the incident's days minus the rate over the scan's baseline
  (the first 28 days, holidays left out); the *detectable change* is
  :func:`qualitylab.detect.minimum_detectable_change` at that baseline rate,
  the effective audits of the incident's days against those of the baseline,
  ``period_days`` = the days the scan searches (``days - 28``) and ``series``
  = the series the default scan of the market builds (:func:`_scan_series`,
  an upper bound: the scan skips some as too small). This is the whole-range
  scan ``benchmarks/detect_eval.py`` scores; a report's four-week scan
  searches fewer days and sees slightly smaller changes. Findable when a series
  moves in the incident's direction by at least its detectable change;
  ``expected_n``, ``planted_change`` and ``detectable_change`` are those of
  the series that shows it best.
* ``reporting_gap``: QA's accuracy of the vendor over the gap weeks against
  the ~97% it reports (a score test with the reported value known), searched
  over the scan's weeks.
* ``red_team_recall``: the attack's expected violating red-team items of the
  incident's days and of the baseline, and the model recall the design gives
  before and after (exact, from its score distributions).
* ``volume``: as the scan's STL detector reads counts: each day's log
  deviation over the design's day-to-day noise (3%) and Poisson noise, as
  Student's t with 10 d.f., combined over the incident's days (Stouffer) and
  held against the same search and Bonferroni share; ``planted_change`` is
  the relative volume change, ``expected_n`` the expected decisions.
* ``capacity_gap`` comes from ``staffing``, a census (no sample): findable by
  construction (``scan`` does not watch it).

At the demo's audit rates (a fixed QA sample of about 200 items per market x
vendor x week) some incidents are below what the audits can show: VendorC's
week of ~9-point lower accuracy in ID (about 130 internal audits, design
effective ~100, against a detectable ~15 points) and the scam policy rollout
(a few dozen audits of scam decisions a week). They are kept on purpose, so a
blind-spot report has something true to say.

Besides the incidents, the data carries a planned queue launch: the demo
launch plan ``parameters/launches/sg-live-shopping.yaml`` (a ``live_shopping``
queue in SG with VendorB, going live eight days after the default end date)
finds its roster in ``staffing`` (rows dated in its go-live week, after the
period) and VendorB's Singapore raters calibrated, so that
:func:`qualitylab.readiness.readiness` fails exactly one check, the one named
under ``expected_failures`` in the plan (see :data:`DEMO_LAUNCH`).

``young_market`` adds (or shortens) one market that started recently: only the
last ``young_days`` days of history, and a queue (:data:`YOUNG_QUEUE`) that went
live :data:`YOUNG_QUEUE_DAYS` days before the end, so that reports can be tried
on a market with too little data for baselines. Every table of that market
starts with its data (staffing, audits, escalations, calibration, red-team
items, vendor-reported weeks), and no incident is planted there.

Output is a pure function of the arguments: the same arguments give
byte-identical files (the default ``end_date`` is a constant, not today).
Decisions are generated one market x chunk of days at a time, so memory stays
bounded at every scale.
"""

from __future__ import annotations

import csv
import hashlib
import math
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qualitylab.data.params import MarketParams, Parameters, load_parameters
from qualitylab.errors import ParameterError

__all__ = [
    "ALL_MARKETS",
    "DEFAULT_END_DATE",
    "DEMO_LAUNCH",
    "INCIDENT_COLUMNS",
    "SCALES",
    "YOUNG_QUEUE",
    "YOUNG_QUEUE_DAYS",
    "DemoLaunch",
    "DemoSummary",
    "generate",
]

Scale = Literal["small", "demo", "large"]

#: Last market-local date of the generated period unless ``end_date`` is given (a Sunday).
DEFAULT_END_DATE = date(2026, 11, 22)
#: Markets generated by the ``demo`` and ``large`` scales.
ALL_MARKETS = ("SG", "ID", "TH", "VN", "PH", "MY", "JP", "KR", "TW", "AU")
#: Columns of ``incidents.csv``, in order: where and when the incident was
#: planted (market-local ISO dates), then whether the default scan could see it
#: (module docstring): ``expected_n`` (expected audits, or decisions/items for
#: census metrics, of the incident's days on the series that shows it best),
#: ``planted_change`` (that series' change the design plants: a rate
#: difference; for volume the relative change), ``detectable_change`` (the
#: smallest change of that series the scan sees with 80% power, from
#: :func:`qualitylab.detect.minimum_detectable_change`) and ``findable``
#: (``True``/``False``), and ``best_series`` (``"metric dimension=segment"`` of
#: that series). Numbers are empty where undefined.
INCIDENT_COLUMNS = (
    "market",
    "metric",
    "dimension",
    "segment",
    "start_date",
    "end_date",
    "direction",
    "description",
    "expected_n",
    "planted_change",
    "detectable_change",
    "findable",
    "best_series",
)
#: Power a scan needs for an incident to count as ``findable`` (``incidents.csv``).
FINDABLE_POWER = 0.8
#: False discovery rate the ``findable`` rule assumes (the scan's ``medium`` sensitivity).
FINDABLE_FDR = 0.05


@dataclass(frozen=True)
class DemoLaunch:
    """A planned queue go-live the demo data is prepared for.

    The generator writes the launch roster into ``staffing`` (``roster_days``
    rows from the go-live date, ``days_after_end`` days after the period's last
    day) and trains the vendor's raters in the market for calibration, so the
    committed plan ``parameters/launches/<plan>.yaml`` passes every readiness
    check except the ones it lists under ``expected_failures``.
    """

    plan: str
    market: str
    vendor: str
    site: str
    queue: str
    policies: tuple[str, ...]
    days_after_end: int
    roster_days: int
    scheduled_hours: float  # per rostered day
    productive_share: float  # planned productive / scheduled hours
    calibration_boost: float  # share of the vendor's wrong labels on launch policies made right


#: The demo launch: ``parameters/launches/sg-live-shopping.yaml``.
DEMO_LAUNCH = DemoLaunch(
    plan="sg-live-shopping",
    market="SG",
    vendor="VendorB",
    site="VendorB-Singapore",
    queue="live_shopping",
    policies=("scam", "spam", "nudity", "hate_speech"),
    days_after_end=8,
    roster_days=7,
    scheduled_hours=40.0,
    productive_share=0.85,
    calibration_boost=0.95,
)


@dataclass(frozen=True)
class _ScaleSpec:
    markets: tuple[str, ...]
    weight_power: float  # flattens market weights so small markets keep enough rows
    unit: float  # expected decisions per market-day per unit of (flattened) weight
    chunk_days: int | None  # days per decisions part; None = whole period
    qa_per_vendor_week: float  # QA sample size per market x vendor x week (base stratum)
    red_team: int  # red-team items per market


SCALES: Mapping[str, _ScaleSpec] = {
    # ~50k decisions over 90 days in SG, ID, TH
    "small": _ScaleSpec(("SG", "ID", "TH"), 0.2, 173.0, None, 250.0, 1500),
    # ~1M decisions over 90 days in ten markets
    "demo": _ScaleSpec(ALL_MARKETS, 1.0, 835.0, 30, 200.0, 3000),
    # >10M decisions over 90 days in ten markets, written in 15-day chunks
    "large": _ScaleSpec(ALL_MARKETS, 1.0, 8700.0, 15, 400.0, 5000),
}

# ---------------------------------------------------------------------------
# Vocabulary and behaviour
# ---------------------------------------------------------------------------
QUEUES = ("live_stream", "live_comment", "live_report", "appeal")
_Q_STREAM, _Q_COMMENT, _Q_REPORT, _Q_APPEAL = range(4)
QUEUE_MIX = np.array([0.40, 0.35, 0.20, 0.05])
DEFAULT_SLA = {
    "live_stream": 300.0,
    "live_comment": 600.0,
    "live_report": 1800.0,
    "appeal": 86400.0,
}
HANDLE_SECONDS = np.array([60.0, 15.0, 120.0, 300.0])  # human handle time per item
#: The queue that goes live late in the young market (``generate(young_market=...)``).
YOUNG_QUEUE = "live_report"
#: Days of data the young market's new queue has: its first decisions are on the
#: market-local day ``end_date - (YOUNG_QUEUE_DAYS - 1)``, i.e. end_date - 4.
YOUNG_QUEUE_DAYS = 5
PREVALENCE = np.array([0.07, 0.08, 0.22, 0.55])  # share of violating items per queue
HUMAN_ONLY = np.array([0.06, 0.06, 0.12, 1.0])  # share routed to humans without AI hint
NON_AUTO = np.array([0.83, 0.83, 0.86, 1.0])  # planning assumption for staffing
WEEKLY = np.array(  # Monday..Sunday
    [
        [0.94, 0.93, 0.94, 0.97, 1.05, 1.19, 1.16],
        [0.95, 0.94, 0.95, 0.97, 1.04, 1.16, 1.14],
        [0.98, 0.97, 0.97, 0.98, 1.03, 1.08, 1.07],
        [1.08, 1.05, 1.03, 1.02, 1.00, 0.90, 0.92],
    ]
)

POLICIES = ("hate_speech", "nudity", "violence", "spam", "scam", "minor_safety", "self_harm")
_POLICY_NAMES = ("none", *POLICIES)  # code 0 = none, 1..7 = POLICIES
_SCAM = _POLICY_NAMES.index("scam")
_SPAM = _POLICY_NAMES.index("spam")
# While the scam policy change lands (before refresher training), moderators file this
# share of the scams they spot as spam.
_SCAM_CONFUSION = 0.5
_SEVERE = (_POLICY_NAMES.index("minor_safety"), _POLICY_NAMES.index("self_harm"))
POLICY_MIX = np.array(  # true policy of violating items, per queue
    [
        [0.14, 0.26, 0.16, 0.14, 0.12, 0.10, 0.08],
        [0.26, 0.06, 0.10, 0.30, 0.22, 0.03, 0.03],
        [0.16, 0.20, 0.16, 0.12, 0.18, 0.10, 0.08],
        [0.16, 0.18, 0.14, 0.16, 0.20, 0.08, 0.08],
    ]
)
FALSE_POSITIVE_MIX = np.array([0.15, 0.20, 0.10, 0.25, 0.20, 0.05, 0.05])
ACTIONS = ("no_action", "warn", "restrict", "end_live", "ban")
POLICY_ACTIONS = np.array(  # warn, restrict, end_live, ban per policy
    [
        [0.45, 0.30, 0.15, 0.10],
        [0.15, 0.25, 0.45, 0.15],
        [0.20, 0.25, 0.40, 0.15],
        [0.55, 0.35, 0.02, 0.08],
        [0.30, 0.35, 0.10, 0.25],
        [0.00, 0.15, 0.40, 0.45],
        [0.30, 0.20, 0.45, 0.05],
    ]
)
ROUTINGS = ("human", "ai_assisted", "ai_auto")
MODELS = ("mod-v3", "mod-v4")
AUTO_HIGH, AUTO_LOW = 0.97, 0.02
# AI score: violating items are "easy" Beta(6, 1.1) or "hard" Beta(1.1, 4.5); clean
# items Beta(1, b) with a few borderline Beta(2, 2.5). AUC ~0.92 (v3), ~0.94 (v4).
_HARD_SHARE = (0.15, 0.12)
_CLEAN_B = (8.5, 9.5)
_BORDERLINE = (0.05, 0.045)
_REGRESSION_HARD_SHARE = 0.75
ATTACKS = ("none", "leetspeak", "code_switching", "coded_symbols")
_ATTACK_HARD = np.array([0.0, 0.35, 0.45, 0.55])  # extra share of hard items per attack

MARKET_WEIGHT = {
    "ID": 3.0,
    "JP": 2.2,
    "PH": 1.6,
    "VN": 1.4,
    "TH": 1.3,
    "KR": 1.1,
    "MY": 0.8,
    "AU": 0.7,
    "TW": 0.6,
    "SG": 0.3,
}
MARKET_CITY = {
    "SG": "Singapore",
    "ID": "Jakarta",
    "TH": "Bangkok",
    "VN": "HCMC",
    "PH": "Manila",
    "MY": "KL",
    "JP": "Tokyo",
    "KR": "Seoul",
    "TW": "Taipei",
    "AU": "Sydney",
}
_CITY_MARKET = {**{v: k for k, v in MARKET_CITY.items()}, "Cebu": "PH"}
VENDOR_SITES = {
    "VendorA": ("Manila", "KL", "Jakarta"),
    "VendorB": ("Bangkok", "KL", "Singapore"),
    "VendorC": ("Jakarta", "HCMC", "Bangkok"),
    "VendorD": ("Manila", "Cebu", "KL"),
    "VendorE": ("Tokyo", "Seoul", "Manila"),
    "VendorF": ("Taipei", "Seoul"),
}
VENDOR_ERROR = {  # base human error probability
    "VendorA": 0.037,
    "VendorB": 0.033,
    "VendorC": 0.039,
    "VendorD": 0.042,
    "VendorE": 0.030,
    "VendorF": 0.035,
    "inhouse": 0.024,
}
INHOUSE = "inhouse"

HOLIDAYS = {  # fixed-date public holidays (month, day, name)
    "SG": ((8, 9, "National Day"), (12, 25, "Christmas Day")),
    "ID": ((8, 17, "Independence Day"), (12, 25, "Christmas Day")),
    "TH": ((10, 13, "King Bhumibol Memorial Day"), (10, 23, "Chulalongkorn Day")),
    "VN": ((9, 2, "National Day"),),
    "PH": ((11, 1, "All Saints' Day"), (11, 30, "Bonifacio Day")),
    "MY": ((8, 31, "Merdeka Day"), (9, 16, "Malaysia Day")),
    "JP": ((11, 3, "Culture Day"), (11, 23, "Labour Thanksgiving Day")),
    "KR": ((10, 3, "National Foundation Day"), (10, 9, "Hangul Day")),
    "TW": ((10, 10, "National Day"),),
    "AU": ((12, 25, "Christmas Day"), (1, 26, "Australia Day")),
}
_ESC_SEVERITIES = ("sev1", "sev2", "sev3", "sev4")
_ESC_TIERS = ("vendor_lead", "internal", "policy", "legal")
_ESC_REASONS = (
    "suspected minor on live stream",
    "self-harm risk during live",
    "credible threat of violence",
    "hate speech by high-profile creator",
    "moderator unsure which policy applies",
    "user complaint about decision",
    "repeat offender review",
    "law enforcement request",
    "regulator inquiry",
)


def _hourly(peak: float, width: float, floor: float, midday: float) -> np.ndarray:
    h = np.arange(24) + 0.5
    dist = np.minimum(np.abs(h - peak), 24 - np.abs(h - peak))
    w = floor + np.exp(-0.5 * (dist / width) ** 2) + midday * np.exp(-0.5 * ((h - 13) / 2.5) ** 2)
    return w / w.sum()


HOURLY = np.stack(  # market-local intraday curve per queue (rows sum to 1)
    [
        _hourly(21.0, 3.0, 0.12, 0.35),
        _hourly(21.5, 3.0, 0.12, 0.35),
        _hourly(22.0, 4.0, 0.15, 0.30),
        _hourly(11.0, 4.0, 0.25, 0.00),
    ]
)
LOAD = HOURLY * 24  # relative load, 1 = average hour
_RT_MEDIAN = 0.45  # median response as a share of SLA at average load
_RT_SIGMA = 0.5

_US = 1_000_000
_HOUR_US = 3600 * _US
_EPOCH = date(1970, 1, 1)


# ---------------------------------------------------------------------------
# Public result
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoSummary:
    """What :func:`generate` wrote.

    Attributes
    ----------
    path : Path
        The output folder.
    markets : tuple of str
        Markets generated.
    start_date, end_date : date
        First and last market-local date of the period.
    rows : Mapping[str, int]
        Rows written per table (``decisions``, ``qa_audits``, ...).
    incidents : int
        Rows of ``incidents.csv``.
    seconds : float
        Wall time of the generation.
    """

    path: Path
    markets: tuple[str, ...]
    start_date: date
    end_date: date
    rows: Mapping[str, int] = field(hash=False)
    incidents: int
    seconds: float

    @property
    def n_decisions(self) -> int:
        """Rows of the ``decisions`` table."""
        return self.rows["decisions"]


# ---------------------------------------------------------------------------
# Planning: incidents and per-market state
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Incident:
    market: str
    metric: str
    dimension: str
    segment: str
    start: int  # day index, inclusive
    end: int  # day index, inclusive
    direction: str
    description: str


@dataclass
class _View:
    """One rate series through which a scan could see incident ``incident``.

    Summed per market-local day while the decisions are drawn, over the
    decisions the series counts (decided, in its segment, and for AI recall
    violating and scored): ``total`` decisions, ``hits`` of them a success by
    their latent truth (e.g. decided correctly), ``audits`` the internal
    audits the QA design expects among them (inclusion probability x the
    internal share; one per decision for census metrics) and ``inv`` the sum of
    the inverse of that, i.e. the expected sum of squared sample weights. QA
    rates are design-weighted (Hajek), so the series' rate is the population
    rate ``hits / total`` and its information the design effective number of
    audits (Kish) ``total**2 / inv``.
    """

    incident: int
    metric: str
    dimension: str
    segment: str
    direction: str  # the move that finds the incident on this series
    total: np.ndarray
    hits: np.ndarray
    audits: np.ndarray
    inv: np.ndarray


@dataclass
class _Market:
    """Everything fixed for one market before its decisions are drawn."""

    code: str
    params: MarketParams
    days: int
    start: date
    day_naive_s: np.ndarray  # local midnight as naive epoch seconds, per day
    offset_s: np.ndarray  # (days, 24) UTC offset seconds per local hour
    now_us: int  # local midnight after the last day, UTC microseconds
    dow: np.ndarray
    languages: tuple[str, ...]
    lang_share: np.ndarray
    lang_err: np.ndarray
    vendors: tuple[str, ...]
    sites: tuple[str, ...]
    unit_vendor: np.ndarray  # vendor index per site unit
    unit_share: np.ndarray  # (queues, units)
    unit_err: np.ndarray
    unit_speed: np.ndarray
    sla: np.ndarray
    threshold: float
    prevalence: np.ndarray
    lam_day: np.ndarray  # (days, queues) expected volume without incidents
    vol_mult: np.ndarray  # (days, queues) incident volume multipliers
    slow: np.ndarray  # (days, queues) incident response-time multipliers
    understaffed: np.ndarray  # (days, queues) bool: no overtime added
    rota: np.ndarray  # (days, queues) multiplier of planned scheduled hours
    vendor_err: np.ndarray  # per vendor index
    qa_rate: np.ndarray  # QA inclusion probability of the base stratum, per vendor
    # moderators
    mod_ids: tuple[str, ...] = ()
    mod_hire: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mod_skill: np.ndarray = field(default_factory=lambda: np.zeros(0))
    unit_mod_off: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    elig: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    auditors: tuple[str, ...] = ()
    internal_aud: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    vendor_aud: list[np.ndarray] = field(default_factory=list)
    policy_raters: tuple[str, ...] = ()
    # incident effects
    release_us: int | None = None  # mod-v4 from this instant (None: never in period)
    regress_lang: int = -1
    outage_us: tuple[int, int] | None = None
    forced_err: list[tuple[int, int, int, float]] = field(default_factory=list)
    scam_over: tuple[int, int, float] | None = None
    gap_vendor: int = -1
    gap_from_day: int = 0
    red_team_drop: tuple[int, int] | None = None  # first day, attack index
    holidays: list[tuple[int, str]] = field(default_factory=list)
    # a queue that goes live during the period: (queue index, first day index)
    queue_live: tuple[int, int] | None = None
    # series through which the scan can see this market's incidents (``findable``)
    views: list[_View] = field(default_factory=list)
    # running aggregates
    vstats: np.ndarray = field(default_factory=lambda: np.zeros(0))
    human_items: np.ndarray = field(default_factory=lambda: np.zeros(0))
    next_seq: int = 0


def _crc(*parts: object) -> int:
    return zlib.crc32("|".join(str(p) for p in parts).encode())


def _rng(seed: int, *key: object) -> np.random.Generator:
    """Independent stream per (seed, purpose, market, chunk), stable across market sets."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_crc(*key),)))


def _pseudonym(prefix: str, seed: int, *parts: object) -> str:
    text = "|".join(str(p) for p in (seed, *parts))
    return f"{prefix}-{hashlib.blake2b(text.encode(), digest_size=5).hexdigest()}"


def _validate(
    markets: Sequence[str] | None, days: int, scale: str, seed: int, params: Parameters
) -> tuple[_ScaleSpec, tuple[str, ...]]:
    if scale not in SCALES:
        raise ParameterError(
            f"scale must be one of {', '.join(SCALES)}, got {scale!r}", key="scale"
        )
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ParameterError(f"days must be an integer >= 1, got {days!r}", key="days")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ParameterError(f"seed must be an integer >= 0, got {seed!r}", key="seed")
    spec = SCALES[scale]
    if markets is None:
        codes = spec.markets
    else:
        if isinstance(markets, str):
            markets = [m for m in markets.split(",") if m.strip()]
        codes = tuple(dict.fromkeys(m.strip().upper() for m in markets))
        if not codes:
            raise ParameterError("markets must name at least one market, got none", key="markets")
    for code in codes:
        params.market(code)  # raises ParameterError naming the missing file
    return spec, codes


@dataclass
class _Effects:
    """Incident effects planted in one market (day indices are market-local)."""

    accuracy_drop: tuple[int, int, str] | None = None  # first day, last day, vendor
    sla_breach: tuple[int, int] | None = None
    ai_recall_drop: tuple[int, str] | None = None  # release day, regressed language
    over_enforcement: tuple[int, int] | None = None
    volume_spike: tuple[int, int] | None = None
    reporting_gap: tuple[int, str] | None = None  # first Monday, vendor
    outage: int | None = None
    capacity_gap: tuple[int, int] | None = None  # live_comment rota cut, first/last day
    red_team_drop: tuple[int, str] | None = None  # first day, attack


# Where each incident goes when its preferred markets are not generated: the first
# listed market that is, else the generated market with the fewest incidents so far.
_PREFERRED = {
    "accuracy_drop": ("ID", "TH", "VN", "PH", "MY", "SG"),
    "sla_breach": ("TH", "ID", "SG", "PH", "VN"),
    "ai_recall_drop": ("SG", "MY", "PH", "ID", "TH"),
    "over_enforcement": ("PH", "ID", "TH", "SG", "VN"),
    "volume_spike": ("VN", "SG", "PH", "ID", "TH"),
    "reporting_gap": ("SG", "MY", "ID", "TH", "PH"),
    "outage": ("MY", "TH", "SG", "ID", "KR"),
    "capacity_gap": ("TH", "ID", "PH", "VN", "SG"),
    "red_team_recall": ("ID", "PH", "MY", "SG", "TH"),
}
# Share of the accuracy-drop vendor's human decisions the untrained cohort gets wrong on
# top of the usual errors (about 10 points of accuracy for the week).
_COHORT_ERROR = 0.12
# Accuracy the reporting-gap vendor reports while QA measures less.
_REPORTED_ACCURACY = 0.97
# Rota cut of the capacity-gap incident (share of the planned live_comment hours kept).
_ROTA_CUT = 0.45
# Workforce planning of the demo staffing: planned shrinkage (the mean of the drawn
# 10-20%) and the buffer on top of the Erlang C requirement (covers day-to-day noise
# in volume and shrinkage; overtime covers the rest).
_PLAN_SHRINKAGE = 0.15
_PLAN_BUFFER = 1.05
# Share of hard (missed) items among the planted attack's violating red-team items.
_RED_TEAM_DROP_HARD = 0.9


def _plan_incidents(
    codes: tuple[str, ...], params: Parameters, days: int, start: date
) -> tuple[list[_Incident], dict[str, _Effects]]:
    """Choose the market and the window of each incident (all in the last four weeks)."""
    last = days - 1
    used = dict.fromkeys(codes, 0)
    effects = {c: _Effects() for c in codes}
    incidents: list[_Incident] = []

    def partners(c: str) -> list[str]:
        return [v for v in params.market(c).vendors if v != INHOUSE]

    def pick(kind: str, need_partner: bool = False) -> str | None:
        ok = [c for c in codes if partners(c) or not need_partner]
        preferred = [c for c in _PREFERRED[kind] if c in ok]
        if not ok:
            return None
        chosen = preferred[0] if preferred else min(ok, key=lambda c: (used[c], codes.index(c)))
        used[chosen] += 1
        return chosen

    def add(m: str, metric: str, dim: str, seg: str, ago: tuple[int, int], up: bool, text: str):
        """Record an incident from ``ago[0]`` to ``ago[1]`` days before the last day."""
        a, b = last - ago[0], last - ago[1]
        incidents.append(_Incident(m, metric, dim, seg, a, b, "up" if up else "down", text))

    if (m := pick("accuracy_drop")) and last >= 20:
        vs = partners(m) or list(params.market(m).vendors) or [INHOUSE]
        v = "VendorC" if "VendorC" in vs else vs[-1]
        effects[m].accuracy_drop = (last - 20, last - 14, v)
        text = f"{v} accuracy in {m} drops ~10pp for a week after an untrained cohort joined"
        add(m, "accuracy", "vendor", v, (20, 14), False, text)
    if (m := pick("sla_breach")) and last >= 10:
        effects[m].sla_breach = (last - 10, last - 8)
        text = "live_report responses slow down under a 2.5x report surge without extra staff"
        add(m, "sla_compliance", "queue", "live_report", (10, 8), False, text)
        text = "live_report volume x2.5 (coordinated mass-reporting wave)"
        add(m, "volume", "queue", "live_report", (10, 8), True, text)
    if (m := pick("ai_recall_drop")) and last >= 17:
        langs = params.market(m).languages or ("en",)
        lang = "ms" if "ms" in langs else langs[-1]
        effects[m].ai_recall_drop = (last - 17, lang)
        text = f"mod-v4 released in {m} misses far more violating '{lang}' content than mod-v3"
        add(m, "ai_recall", "language", lang, (17, 0), False, text)
    if (m := pick("over_enforcement")) and last >= 13:
        effects[m].over_enforcement = (last - 13, last - 7)
        text = "moderators over-apply the updated scam policy until refresher training"
        add(m, "over_enforcement_rate", "policy", "scam", (13, 7), True, text)
        change = start + timedelta(days=last - 13)
        recovered = start + timedelta(days=last - 6)
        text = (
            f"scam policy rollout: accuracy on scam decisions dips from the policy change on "
            f"{change.isoformat()} and recovers on {recovered.isoformat()} after refresher "
            "training (the day after end_date)"
        )
        add(m, "accuracy", "policy", "scam", (13, 7), False, text)
    if (m := pick("volume_spike")) and last >= 5:
        effects[m].volume_spike = (last - 5, last - 4)
        text = f"viral live event doubles all {m} volume for two days"
        add(m, "volume", "market", m, (5, 4), True, text)
    weeks = _complete_weeks(start, days)
    if (m := pick("reporting_gap", need_partner=True)) and len(weeks) >= 4:
        v = "VendorA" if "VendorA" in partners(m) else partners(m)[0]
        effects[m].reporting_gap = (weeks[-3], v)
        text = f"{v} reports ~97% accuracy in {m} while QA measures ~90%"
        add(m, "reporting_gap", "vendor", v, (last - weeks[-3], last - weeks[-1] - 6), True, text)
    if (m := pick("outage")) and last >= 24:
        effects[m].outage = last - 24
        text = "AI scoring outage 14:00-24:00 local: every item routed to humans"
        add(m, "auto_action_rate", "market", m, (24, 24), False, text)
    if (m := pick("capacity_gap")) and last >= 27:
        effects[m].capacity_gap = (last - 27, last - 21)
        text = (
            f"live_comment rota cut to {_ROTA_CUT:.0%} of plan for a week (evening shifts "
            "unfilled, no overtime): productive hours fall below the Erlang C requirement, "
            "so required agents exceed staffed"
        )
        add(m, "capacity_gap", "queue", "live_comment", (27, 21), True, text)
    if (m := pick("red_team_recall")) and last >= 27:
        effects[m].red_team_drop = (last - 27, "code_switching")
        text = (
            "a new code-switching technique evades the model: red-team recall on "
            "code_switching items falls far below clean controls"
        )
        add(m, "red_team_recall", "attack", "code_switching", (27, 0), False, text)
    incidents.sort(key=lambda i: (i.start, i.market, i.metric))
    return incidents, effects


# Share of a partner's QA sample that internal QA re-reviews (the rest: vendor QA only).
_INTERNAL_SHARE = 0.60
# Days of baseline the default scan takes before the period it alerts on.
_SCAN_BASELINE_DAYS = 28
# Day-to-day noise of the demo volumes (sd of log volume, see ``_build_market``).
_VOLUME_NOISE = 0.03
_HIGHER_IS_BETTER = {"accuracy", "sla_compliance", "ai_recall", "red_team_recall"}
# Views of an incident's metric the scan watches and the evaluation credits (accuracy is
# one minus its three error rates).
_VIEW_METRICS = {
    "accuracy": (
        "accuracy",
        "over_enforcement_rate",
        "under_enforcement_rate",
        "wrong_policy_rate",
    ),
    "over_enforcement_rate": ("over_enforcement_rate", "accuracy"),
    "under_enforcement_rate": ("under_enforcement_rate", "accuracy"),
    "wrong_policy_rate": ("wrong_policy_rate", "accuracy"),
    "ai_recall": ("ai_recall",),
    "auto_action_rate": ("auto_action_rate",),
    "sla_compliance": ("sla_compliance",),
    # the reconciliation compares the vendor's report with QA's accuracy of the vendor
    "reporting_gap": ("accuracy",),
}


def _incident_views(m: _Market, incidents: Sequence[tuple[int, _Incident]]) -> list[_View]:
    """The rate series (incident segment and its market) each incident of ``m`` shows on."""
    views = []
    for i, inc in incidents:
        segs = [(inc.dimension, inc.segment)]
        if inc.metric == "reporting_gap":
            segs = [("vendor", inc.segment)]
        elif inc.dimension != "market":
            segs.append(("market", m.code))
        for metric in _VIEW_METRICS.get(inc.metric, ()):
            direction = inc.direction
            if inc.metric == "reporting_gap":
                direction = "down"  # QA measures less than the vendor reports
            elif (metric in _HIGHER_IS_BETTER) != (inc.metric in _HIGHER_IS_BETTER):
                direction = "up" if direction == "down" else "down"
            for dim, seg in segs:
                sums = [np.zeros(m.days) for _ in range(4)]
                views.append(_View(i, metric, dim, seg, direction, *sums))
    return views


def _scan_series(m: _Market) -> int:
    """Series the default ``detect.scan`` of this market judges at most (its Bonferroni count).

    Every (dimension, segment) of the scan's default dimensions carries volume,
    sla_compliance, three response percentiles, four QA rates and two workflow
    rates; the content dimensions (market, queue, language, policy, ai_model)
    also three AI rates. A dimension with one segment repeats the market and is
    not scanned. Add reporting_gap (accuracy and SLA per partner) and
    red_team_recall per attack. Series too small to judge are skipped by the
    scan, so this is an upper bound (the ``findable`` rule errs on blind).
    """
    release_inside = m.release_us is not None and int(_local_us(m, 0, 0)) < m.release_us
    live_queues = len(QUEUES)
    dims = (
        ("market", 1, True),
        ("vendor", len(m.vendors), False),
        ("site", len(m.sites), False),
        ("queue", live_queues, True),
        ("language", len(m.languages), True),
        ("policy", len(_POLICY_NAMES), True),
        ("ai_model", 2 if release_inside else 1, True),
    )
    total = 0
    for dim, k, content in dims:
        if dim != "market" and k == 1:
            continue
        total += k * (11 + (3 if content else 0))
    return total + 2 * sum(v != INHOUSE for v in m.vendors) + len(ATTACKS)


def _critical_z(period_days: int, series: int, fdr: float) -> float:
    """Window z a lone discovery needs: the scan's search over the period, Bonferroni over series."""
    from scipy.optimize import brentq

    from qualitylab.detection.detect import scan_p_value

    target = fdr / max(series, 1)
    return float(brentq(lambda z: float(scan_p_value(z, period_days)) - target, 0.0, 40.0))


@dataclass(frozen=True)
class _Findability:
    expected_n: float  # observations behind the best series over the incident's days
    planted_change: float  # change of the best series the design plants
    detectable_change: float  # change the scan sees there with FINDABLE_POWER
    findable: bool
    series: str = ""  # "metric dimension=segment" of that series


def _recall_at(m: _Market, hard: float) -> float:
    """AI recall of violating items of which a share ``hard`` are hard (design, exact)."""
    from scipy.stats import beta

    t = m.threshold
    return float((1 - hard) * beta.sf(t, 6.0, 1.1) + hard * beta.sf(t, 1.1, 4.5))


def _findability(
    m: _Market, incidents: Sequence[tuple[int, _Incident]], spec: _ScaleSpec
) -> dict[int, _Findability]:
    """Whether the default scan could see each incident of ``m`` (see :func:`generate`)."""
    from scipy.stats import norm
    from scipy.stats import t as student_t

    from qualitylab.detection.detect import minimum_detectable_change

    period = m.days - _SCAN_BASELINE_DAYS
    out: dict[int, _Findability] = {}
    if period < 1:  # nothing is scanned with a full baseline
        nan = float("nan")
        return {i: _Findability(nan, nan, nan, False) for i, _ in incidents}
    series = _scan_series(m)
    base = np.zeros(m.days, dtype=bool)
    base[:_SCAN_BASELINE_DAYS] = True
    for day, _name in m.holidays:  # the scan masks holidays and outages out of baselines
        base[day] = False
    z_power = float(norm.ppf(FINDABLE_POWER))

    def rate_test(r0: float, n1: float, n0: float | None, direction: str, days: int) -> float:
        if not (0 < r0 < 1 and n1 > 0):
            return float("nan")
        return minimum_detectable_change(
            r0,
            n1,
            n_reference=n0,
            period_days=days,
            series=series,
            fdr=FINDABLE_FDR,
            power=FINDABLE_POWER,
            direction=direction,
        )

    for i, inc in incidents:
        days = np.arange(inc.start, inc.end + 1)
        best: _Findability | None = None
        candidates: list[tuple[bool, float, _Findability]] = []
        if inc.metric == "capacity_gap":
            # staffing is a census, not a sample: the rota cut below the Erlang C
            # requirement shows on every day it lasts
            out[i] = _Findability(
                float("nan"),
                _ROTA_CUT - 1.0,
                float("nan"),
                True,
                f"capacity_gap {inc.dimension}={inc.segment}",
            )
            continue
        if inc.metric == "volume":
            qs = (
                [QUEUES.index(inc.segment)]
                if inc.dimension == "queue"
                else list(range(len(QUEUES)))
            )
            lam0 = m.lam_day[np.ix_(days, qs)].sum(axis=1)
            lam1 = (m.lam_day * m.vol_mult)[np.ix_(days, qs)].sum(axis=1)
            # as the scan's STL detector: each day's log deviation over its noise (design
            # day noise plus Poisson) read as Student's t with 10 d.f., turned into a
            # normal z and summed over the window's days (Stouffer)
            sd = math.sqrt(_VOLUME_NOISE**2 + 1 / lam0.mean())
            zc = _critical_z(period, series, FINDABLE_FDR)
            z_day = (zc + z_power) / math.sqrt(len(days))
            need = float(student_t.isf(norm.sf(z_day), 10)) * sd
            change = float(lam1.sum() / lam0.sum() - 1)
            found = math.log1p(change) * (1 if inc.direction == "up" else -1) >= need
            sign = 1 if inc.direction == "up" else -1
            out[i] = _Findability(
                float(lam1.sum()),
                change,
                float(math.expm1(sign * need)),
                bool(found),
                f"volume {inc.dimension}={inc.segment}",
            )
            continue
        if inc.metric == "red_team_recall":
            # red-team items are a census of the test set: uniform over days, 80%
            # violating, the attack one of len(ATTACKS) (controls included)
            per_day = spec.red_team * 0.8 / len(ATTACKS) / m.days
            n1, n0 = per_day * len(days), per_day * base.sum()
            v4 = m.release_us is not None and m.release_us <= int(_local_us(m, inc.start, 0))
            hs = _HARD_SHARE[1] if v4 else _HARD_SHARE[0]
            a = ATTACKS.index(inc.segment)
            r0 = _recall_at(m, hs + (1 - hs) * _ATTACK_HARD[a])
            r1 = _recall_at(m, hs + (1 - hs) * _RED_TEAM_DROP_HARD)
            mdc = rate_test(r0, n1, n0, inc.direction, period)
            out[i] = _Findability(
                n1, r1 - r0, mdc, bool(abs(r1 - r0) >= mdc), f"red_team_recall attack={inc.segment}"
            )
            continue
        for v in m.views:
            if v.incident != i:
                continue
            tot1, tot0 = v.total[days].sum(), v.total[base].sum()
            if not (tot1 > 0 and tot0 > 0):
                continue
            # design effective audits (Kish) of the incident's days and of the baseline
            n1 = tot1**2 / v.inv[days].sum()
            n0 = tot0**2 / v.inv[base].sum()
            r1, r0 = v.hits[days].sum() / tot1, v.hits[base].sum() / tot0
            n_ref: float | None = n0
            horizon = period
            if inc.metric == "reporting_gap":
                # weekly reconciliation: QA's accuracy against the reported ~97% (a
                # score test), searched over the scan's weeks
                r0, n_ref, horizon = _REPORTED_ACCURACY, None, max(period // 7, 1)
            change = r1 - r0
            mdc = rate_test(r0, n1, n_ref, v.direction, horizon)
            moved = change < 0 if v.direction == "down" else change > 0
            ok = bool(moved and np.isfinite(mdc) and abs(change) >= mdc)
            ratio = abs(change) / mdc if moved and np.isfinite(mdc) and mdc > 0 else 0.0
            audits = float(v.audits[days].sum())
            name = f"{v.metric} {v.dimension}={v.segment}"
            cand = _Findability(audits, float(change), float(mdc), ok, name)
            candidates.append((ok, ratio, cand))
        if candidates:
            # the view the scan sees best: largest planted change relative to what it needs
            best = max(candidates, key=lambda c: c[:2])[2]
        nan = float("nan")
        out[i] = best if best is not None else _Findability(nan, nan, nan, False)
    return out


def _complete_weeks(start: date, days: int) -> list[int]:
    """Day indices of Mondays whose whole week lies inside the period."""
    first = (7 - start.weekday()) % 7
    return list(range(first, days - 6, 7))


def _local_us(m: _Market, day: np.ndarray | int, sec: np.ndarray | int) -> np.ndarray:
    """UTC microseconds of market-local day index + seconds after local midnight."""
    day = np.asarray(day)
    sec = np.asarray(sec, dtype=np.int64)
    hour = np.clip(sec // 3600, 0, 23)
    return (m.day_naive_s[day] + sec - m.offset_s[day, hour]) * _US


def _build_market(
    code: str,
    params: Parameters,
    spec: _ScaleSpec,
    start: date,
    days: int,
    seed: int,
    eff: _Effects,
    regress_langs: tuple[str, ...],
    queue_live: tuple[int, int] | None = None,
) -> _Market:
    mp = params.market(code)
    tz = ZoneInfo(mp.timezone)
    rng = _rng(seed, "market", code)
    dates = [start + timedelta(days=i) for i in range(days)]
    day_naive = np.array([(d - _EPOCH).days * 86400 for d in dates], dtype=np.int64)
    offset = np.array(
        [
            [
                int(datetime(d.year, d.month, d.day, h, tzinfo=tz).utcoffset().total_seconds())
                for h in range(24)
            ]
            for d in dates
        ],
        dtype=np.int64,
    )
    after = start + timedelta(days=days)
    now_s = (after - _EPOCH).days * 86400 - int(
        datetime(after.year, after.month, after.day, tzinfo=tz).utcoffset().total_seconds()
    )
    dow = np.array([d.weekday() for d in dates])

    languages = mp.languages or ("en",)
    share = {1: [1.0], 2: [0.75, 0.25], 3: [0.55, 0.25, 0.20]}.get(len(languages))
    lang_share = np.array(share if share else [1.0 / len(languages)] * len(languages))
    lang_err = 1.0 + 0.15 * np.arange(len(languages))

    vendors = mp.vendors or (INHOUSE,)
    sites: list[str] = []
    unit_vendor: list[int] = []
    site_w: list[float] = []
    for vi, v in enumerate(vendors):
        if v == INHOUSE:
            cities: list[str] = [MARKET_CITY.get(code, code)]
        else:
            catalogue = VENDOR_SITES.get(v, (MARKET_CITY.get(code, code), "Manila", "KL"))
            cities = sorted(
                catalogue, key=lambda c: (_CITY_MARKET.get(c) != code, catalogue.index(c))
            )
            cities = cities[: 1 + _crc(code, v) % min(3, len(cities))]
        for k, city in enumerate(cities):
            sites.append(f"{v}-{city}")
            unit_vendor.append(vi)
            site_w.append((0.6, 0.3, 0.1)[k])
    unit_vendor_a = np.array(unit_vendor)
    partners = [v for v in vendors if v != INHOUSE]
    partner_w = np.array([0.7**k for k in range(len(partners))])
    partner_w = partner_w / partner_w.sum() if len(partners) else partner_w
    site_w_a = np.array(site_w)
    unit_share = np.zeros((len(QUEUES), len(sites)))
    for q in range(len(QUEUES)):
        # in-house teams take 15% of live queues and 60% of appeals, partners the rest
        inhouse_share = 0.0 if INHOUSE not in vendors else (0.6 if q == _Q_APPEAL else 0.15)
        if not partners:
            inhouse_share = 1.0
        vshare = np.array(
            [
                inhouse_share
                if v == INHOUSE
                else (1 - inhouse_share) * partner_w[partners.index(v)]
                for v in vendors
            ]
        )
        for u, vi in enumerate(unit_vendor):
            same = unit_vendor_a == vi
            unit_share[q, u] = vshare[vi] * site_w_a[u] / site_w_a[same].sum()
    unit_share /= unit_share.sum(axis=1, keepdims=True)
    unit_err = np.array([0.85 + 0.35 * (_crc(code, s, "err") % 1000) / 1000 for s in sites])
    unit_speed = np.array([0.85 + 0.3 * (_crc(code, s, "speed") % 1000) / 1000 for s in sites])
    vendor_err = np.array([VENDOR_ERROR.get(v, 0.045) for v in vendors])

    weight = MARKET_WEIGHT.get(code, 0.5) ** spec.weight_power
    base = spec.unit * weight
    trend = 1.0 + 0.001 * (np.arange(days) - days / 2)
    noise = np.exp(rng.normal(0.0, 0.03, days))
    lam_day = base * QUEUE_MIX[None, :] * WEEKLY[:, dow].T * (trend * noise)[:, None]
    holidays = []
    for month, day_, name in HOLIDAYS.get(code, ()):
        for year in sorted({start.year, (start + timedelta(days=days - 1)).year}):
            idx = (date(year, month, day_) - start).days
            if 0 <= idx < days:
                holidays.append((idx, name))
                lam_day[idx] *= np.array([1.15, 1.15, 1.10, 0.90])
    holidays.sort()
    if queue_live is not None:  # no items before the queue goes live
        lam_day[: queue_live[1], queue_live[0]] = 0.0

    # QA samples a fixed number per vendor and week, so small vendors get higher rates;
    # 1.3 is the mean stratum multiplier (enforced, appeal and ai_auto are over-sampled)
    weekly = 7 * lam_day.mean(axis=0) @ unit_share
    vendor_weekly = np.bincount(unit_vendor_a, weights=weekly, minlength=len(vendors))
    qa_rate = np.minimum(spec.qa_per_vendor_week / (1.3 * np.maximum(vendor_weekly, 1.0)), 0.5)
    sla = np.array([float(mp.sla_seconds.get(q, DEFAULT_SLA[q])) for q in QUEUES], dtype=np.float64)
    m = _Market(
        code=code,
        params=mp,
        days=days,
        start=start,
        day_naive_s=day_naive,
        offset_s=offset,
        now_us=now_s * _US,
        dow=dow,
        languages=languages,
        lang_share=lang_share,
        lang_err=lang_err,
        vendors=vendors,
        sites=tuple(sites),
        unit_vendor=unit_vendor_a,
        unit_share=unit_share,
        unit_err=unit_err,
        unit_speed=unit_speed,
        sla=sla,
        threshold=float(mp.ai_threshold),
        prevalence=PREVALENCE * (0.9 + 0.2 * (_crc(code, "prev") % 1000) / 1000),
        lam_day=lam_day,
        vol_mult=np.ones((days, len(QUEUES))),
        slow=np.ones((days, len(QUEUES))),
        understaffed=np.zeros((days, len(QUEUES)), dtype=bool),
        rota=np.ones((days, len(QUEUES))),
        vendor_err=vendor_err,
        qa_rate=qa_rate,
        holidays=holidays,
        queue_live=queue_live,
    )
    _apply_effects(m, eff, regress_langs)
    _build_people(m, rng, seed)
    m.vstats = np.zeros((5, days, len(vendors)))
    m.human_items = np.zeros((days, len(sites), len(QUEUES)))
    return m


def _apply_effects(m: _Market, eff: _Effects, regress_langs: tuple[str, ...]) -> None:
    if eff.accuracy_drop:
        a, b, v = eff.accuracy_drop
        m.forced_err.append((a, b, m.vendors.index(v), _COHORT_ERROR))
    if eff.sla_breach:
        a, b = eff.sla_breach
        m.vol_mult[a : b + 1, _Q_REPORT] *= 2.5
        m.slow[a : b + 1, _Q_REPORT] *= 3.2
        m.understaffed[a : b + 1, _Q_REPORT] = True
    if eff.volume_spike:
        a, b = eff.volume_spike
        m.vol_mult[a : b + 1, :] *= 2.0
    if eff.over_enforcement:
        a, b = eff.over_enforcement
        m.scam_over = (a, b, 0.06)
    if eff.reporting_gap:
        m.gap_from_day, v = eff.reporting_gap
        m.gap_vendor = m.vendors.index(v)
        m.vendor_err[m.gap_vendor] *= 1.7  # a weak vendor (~89%) that reports ~97%
    if eff.outage is not None:
        start, end = _local_us(m, eff.outage, 14 * 3600), _local_us(m, eff.outage + 1, 0)
        m.outage_us = (int(start), int(end))
    if eff.capacity_gap:
        a, b = eff.capacity_gap
        m.rota[a : b + 1, _Q_COMMENT] = _ROTA_CUT
        m.understaffed[a : b + 1, _Q_COMMENT] = True
    if eff.red_team_drop:
        day, attack = eff.red_team_drop
        m.red_team_drop = (day, ATTACKS.index(attack))
    # mod-v4: in the recall-drop market at its incident date; in a first wave (JP, KR,
    # TW) 52 days before the end, unless they speak the regressed language
    if eff.ai_recall_drop:
        day, lang = eff.ai_recall_drop
        m.release_us = int(_local_us(m, day, 10 * 3600))
        m.regress_lang = m.languages.index(lang)
    elif m.code in ("JP", "KR", "TW") and not set(m.languages) & set(regress_langs):
        before_period = -(2**62)
        m.release_us = int(_local_us(m, m.days - 53, 10 * 3600)) if m.days >= 53 else before_period


def _build_people(m: _Market, rng: np.random.Generator, seed: int) -> None:
    """Moderator pools per site with hire dates, QA auditors, policy raters."""
    ids: list[str] = []
    hire: list[np.ndarray] = []
    skill: list[np.ndarray] = []
    offs = [0]
    elig = np.zeros((len(m.sites), m.days), dtype=np.int64)
    exp_human = (m.lam_day * NON_AUTO).mean(axis=0) @ m.unit_share  # per unit per day
    for u, site in enumerate(m.sites):
        n0 = int(np.clip(round(exp_human[u] / 60), 6, 400))
        founders = -rng.integers(30, 900, n0)
        cohort = max(1, round(n0 * 0.10))
        phase = int(rng.integers(0, 28))
        cohorts = np.repeat(np.arange(phase - 28, m.days, 28), cohort)
        h = np.sort(np.concatenate([founders, cohorts]), kind="stable")
        hire.append(h)
        skill.append(np.exp(rng.normal(0.0, 0.25, len(h))))
        ids.extend(_pseudonym("m", seed, m.code, site, i) for i in range(len(h)))
        elig[u] = np.maximum(np.searchsorted(h, np.arange(m.days), side="right"), 1)
        offs.append(offs[-1] + len(h))
    m.mod_ids = tuple(ids)
    m.mod_hire = np.concatenate(hire)
    m.mod_skill = np.concatenate(skill)
    m.unit_mod_off = np.array(offs[:-1])
    m.elig = elig
    auditors = [_pseudonym("q", seed, m.code, "internal", i) for i in range(5)]
    m.internal_aud = np.arange(5)
    m.vendor_aud = []
    for v in m.vendors:
        k0 = len(auditors)
        auditors.extend(_pseudonym("q", seed, m.code, v, i) for i in range(4))
        m.vendor_aud.append(np.arange(k0, k0 + 4))
    m.auditors = tuple(auditors)
    m.policy_raters = tuple(_pseudonym("p", seed, m.code, i) for i in range(2))


# ---------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------
def _pick(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Category index for uniforms ``u`` given cumulative shares ``cum``."""
    return np.minimum(np.searchsorted(cum, u, side="right"), len(cum) - 1)


def _pick_rows(cum: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Like :func:`_pick` with a different distribution ``cum[row]`` per item."""
    out = np.zeros(len(u), dtype=np.int64)
    for r in range(cum.shape[0]):
        sel = rows == r
        if sel.any():
            out[sel] = np.searchsorted(cum[r], u[sel], side="right")
    return np.minimum(out, cum.shape[1] - 1)


_ACTION_CUM = np.cumsum(POLICY_ACTIONS, axis=1) / POLICY_ACTIONS.sum(axis=1, keepdims=True)
_POLICY_CUM = np.cumsum(POLICY_MIX, axis=1) / POLICY_MIX.sum(axis=1, keepdims=True)
_FP_CUM = np.cumsum(FALSE_POSITIVE_MIX) / FALSE_POSITIVE_MIX.sum()


def _action_for(policy: np.ndarray, queue: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Action code (1..4) typical of each policy code (1..7); 0 for policy 0."""
    act = _pick_rows(_ACTION_CUM, np.maximum(policy - 1, 0), u) + 1
    act[(queue == _Q_COMMENT) & (act == 3)] = 2  # a comment cannot end a live: restrict
    return np.where(policy > 0, act, 0)


def _other_policy(policy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A policy code different from ``policy`` (1..7)."""
    p = np.maximum(policy, 1)
    return (p - 1 + rng.integers(1, len(POLICIES), len(p))) % len(POLICIES) + 1


def _ai_scores(
    rng: np.random.Generator,
    viol: np.ndarray,
    v4: np.ndarray,
    regressed: np.ndarray,
    extra_hard: np.ndarray | float = 0.0,
) -> np.ndarray:
    n = len(viol)
    hard_p = np.where(v4, _HARD_SHARE[1], _HARD_SHARE[0])
    hard_p = np.where(regressed, _REGRESSION_HARD_SHARE, hard_p)
    hard_p = hard_p + (1 - hard_p) * extra_hard
    hard = rng.random(n) < hard_p
    border = rng.random(n) < np.where(v4, _BORDERLINE[1], _BORDERLINE[0])
    a = np.where(viol, np.where(hard, 1.1, 6.0), np.where(border, 2.0, 1.0))
    b = np.where(
        viol,
        np.where(hard, 4.5, 1.1),
        np.where(border, 2.5, np.where(v4, _CLEAN_B[1], _CLEAN_B[0])),
    )
    return np.round(rng.beta(a, b), 4)


@dataclass
class _Chunk:
    decisions: pa.Table
    qa: pa.Table
    escalations: pa.Table


def _strings(values: Sequence[str], idx: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(list(values), pa.string()).take(pa.array(idx.astype(np.int32), mask=mask))


def _ts(us: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(us.astype(np.int64), type=pa.timestamp("us", tz="UTC"), mask=mask)


def _decisions_chunk(m: _Market, d0: int, d1: int, seed: int, ci: int) -> _Chunk:
    """Draw the decisions created on market-local days ``d0 <= day < d1``."""
    rng = _rng(seed, "decisions", m.code, ci)
    nq = len(QUEUES)
    lam = (m.lam_day[d0:d1] * m.vol_mult[d0:d1])[:, :, None] * HOURLY[None, :, :]
    counts = rng.poisson(lam).ravel()
    n = int(counts.sum())
    cell = np.repeat(np.arange(counts.size), counts)
    day = cell // (nq * 24) + d0
    q = (cell // 24) % nq
    hour = cell % 24
    created = (m.day_naive_s[day] + hour * 3600 - m.offset_s[day, hour]) * _US
    created += rng.integers(0, _HOUR_US, n)
    order = np.argsort(created, kind="stable")
    day, q, hour, created = day[order], q[order], hour[order], created[order]

    lang = _pick(np.cumsum(m.lang_share), rng.random(n))
    unit = _pick_rows(np.cumsum(m.unit_share, axis=1), q, rng.random(n))
    vendor = m.unit_vendor[unit]
    inhouse = np.array([v == INHOUSE for v in m.vendors])[vendor]
    mod = m.unit_mod_off[unit] + (rng.random(n) * m.elig[unit, day]).astype(np.int64)
    tenure = day - m.mod_hire[mod]

    # latent truth
    viol = rng.random(n) < m.prevalence[q]
    tpol = np.where(viol, _pick_rows(_POLICY_CUM, q, rng.random(n)) + 1, 0)
    tact = _action_for(tpol, q, rng.random(n))

    # AI
    avail = np.ones(n, dtype=bool)
    if m.outage_us is not None:
        avail = (created < m.outage_us[0]) | (created >= m.outage_us[1])
    v4 = created >= m.release_us if m.release_us is not None else np.zeros(n, dtype=bool)
    regressed = viol & v4 & (lang == m.regress_lang)
    score = _ai_scores(rng, viol, v4, regressed)
    flag = score >= m.threshold
    keep = rng.random(n) < 0.60  # the model's policy guess is often off
    fp_pol = _pick(_FP_CUM, rng.random(n)) + 1
    ai_pol = np.where(
        flag, np.where(viol, np.where(keep, tpol, _other_policy(tpol, rng)), fp_pol), 0
    )

    # routing
    confident = avail & ((score >= AUTO_HIGH) | (score <= AUTO_LOW))
    auto = confident & (q != _Q_APPEAL) & (rng.random(n) < 0.92)
    human_p = np.minimum(HUMAN_ONLY[q] * np.where(inhouse, 3.0, 1.0), 1.0)
    human = ~auto & (~avail | (rng.random(n) < human_p))
    routing = np.where(auto, 2, np.where(human, 0, 1))
    assisted = routing == 1

    # human decision: error probability by vendor, site, moderator, language, tenure, truth, AI hint
    err = m.vendor_err[vendor] * m.unit_err[unit] * m.mod_skill[mod] * m.lang_err[lang]
    err = err * (1.0 + 1.5 * np.exp(-np.maximum(tenure, 0) / 20.0))
    err = err * np.where(viol, 2.4, 0.7)
    ai_right = ((ai_pol > 0) == viol) & (~viol | (ai_pol == tpol))
    err = np.where(assisted, err * np.where(ai_right, 1.0, 2.4), err)
    wrong = rng.random(n) < np.minimum(err, 0.6)
    for a, b, v, p in m.forced_err:
        wrong |= (day >= a) & (day <= b) & (vendor == v) & (rng.random(n) < p)
    follow_ai = assisted & (ai_pol > 0)
    over_pol = np.where(follow_ai, ai_pol, _pick(_FP_CUM, rng.random(n)) + 1)
    under = np.where(assisted & (ai_pol == 0), rng.random(n) < 0.85, rng.random(n) < 0.55)
    wrong_pol = np.where(follow_ai & (ai_pol != tpol), ai_pol, _other_policy(tpol, rng))
    hpol = np.where(~wrong, tpol, np.where(~viol, over_pol, np.where(under, 0, wrong_pol)))
    if m.scam_over is not None:
        a, b, p = m.scam_over
        extra = (day >= a) & (day <= b) & ~viol & (hpol == 0) & (rng.random(n) < p)
        hpol = np.where(extra, _SCAM, hpol)
        # ... and, unsure where the new line between scam and spam runs, file scams
        # they spot as spam (wrong policy). Enforced stays enforced, so the QA sample
        # is unchanged; a stream of its own keeps the main one intact.
        confused = _rng(seed, "scam_rollout", m.code, ci).random(n) < _SCAM_CONFUSION
        confused &= (day >= a) & (day <= b) & (tpol == _SCAM) & (hpol == _SCAM)
        hpol = np.where(confused, _SPAM, hpol)
    hact = np.where((hpol == tpol) & (hpol > 0), tact, _action_for(hpol, q, rng.random(n)))
    auto_pol = np.where(score >= AUTO_HIGH, ai_pol, 0)
    auto_act = _action_for(auto_pol, q, rng.random(n))
    pol = np.where(auto, auto_pol, hpol)
    act = np.where(auto, auto_act, hact)
    correct = ((act > 0) == viol) & (~viol | (pol == tpol))

    # response time: lognormal around the SLA, slower at peak, for new hires and in incidents
    median = (
        m.sla[q]
        * _RT_MEDIAN
        * m.unit_speed[unit]
        * LOAD[q, hour] ** 0.35
        * m.slow[day, q]
        * np.where(tenure < 30, 1.15, 1.0)
    )
    rt = median * np.exp(_RT_SIGMA * rng.standard_normal(n))
    rt = np.where(auto, 0.4 + rng.lognormal(np.log(1.2), 0.5, n), rt)
    decided = created + (rt * _US).astype(np.int64)
    age_h = (m.now_us - created) / _HOUR_US
    stuck = ~auto & (rng.random(n) < 0.06 * np.exp(-age_h / 10.0))
    pending = (decided > m.now_us) | stuck

    # running aggregates for staffing and vendor_reported
    nv = len(m.vendors)
    key = day * nv + vendor
    decided_h = ~auto & ~pending
    sla_met = ~pending & (rt <= m.sla[q])
    sla_elig = ~pending | ((m.now_us - created) > m.sla[q] * _US)
    for k, w in enumerate((None, decided_h, decided_h & correct, sla_elig, sla_met)):
        m.vstats[k] += np.bincount(key, weights=w, minlength=m.days * nv).reshape(m.days, nv)
    hkey = (day * len(m.sites) + unit) * nq + q
    m.human_items += np.bincount(hkey[~auto], minlength=m.human_items.size).reshape(
        m.human_items.shape
    )

    if m.views:
        _add_views(
            m,
            {
                "day": day,
                "q": q,
                "vendor": vendor,
                "unit": unit,
                "lang": lang,
                "routing": routing,
                "pending": pending,
                "act": act,
                "pol": pol,
                "viol": viol,
                "tpol": tpol,
                "correct": correct,
                "auto": auto,
                "avail": avail,
                "score": score,
                "sla_elig": sla_elig,
                "sla_met": sla_met,
            },
        )

    seq = np.arange(m.next_seq, m.next_seq + n)
    m.next_seq += n
    ids = np.char.add(f"{m.code}-", np.char.zfill(seq.astype(str), 9))
    no_mod = auto | pending
    ai_null = ~avail
    table = pa.table(
        {
            "decision_id": pa.array(ids, pa.string()),
            "created_at": _ts(created),
            "decided_at": _ts(decided, pending),
            "market": _strings([m.code], np.zeros(n)),
            "vendor": _strings(m.vendors, vendor),
            "site": _strings(m.sites, unit),
            "queue": _strings(QUEUES, q),
            "language": _strings(m.languages, lang),
            "moderator_id": _strings(m.mod_ids, np.where(no_mod, 0, mod), no_mod),
            "routing": _strings(ROUTINGS, routing),
            "action": _strings(ACTIONS, act, pending),
            "policy": _strings(_POLICY_NAMES, pol, pending),
            "ai_model": _strings(MODELS, v4.astype(np.int64), ai_null),
            "ai_score": pa.array(score, pa.float64(), mask=ai_null),
            "ai_policy": _strings(_POLICY_NAMES, ai_pol, ai_null),
        },
        schema=DECISIONS_SCHEMA,
    )
    dec_ids = table.column("decision_id").combine_chunks()
    qa = _qa_chunk(
        m,
        rng,
        dec_ids,
        q,
        unit,
        vendor,
        routing,
        pending,
        decided,
        act,
        pol,
        viol,
        tpol,
        tact,
        correct,
    )
    esc = _escalation_chunk(m, rng, dec_ids, q, vendor, created, decided, pending, viol, tpol)
    return _Chunk(table, qa, esc)


def _qa_inclusion(
    m: _Market, q: np.ndarray, routing: np.ndarray, act: np.ndarray, vendor: np.ndarray
) -> np.ndarray:
    """QA inclusion probability of each decided item (appeals, enforced and ai_auto over-sampled)."""
    stratum = np.where(
        q == _Q_APPEAL, 3.0, np.where(routing == 2, 1.5, np.where(act > 0, 2.5, 1.0))
    )
    return np.minimum(m.qa_rate[vendor] * stratum, 1.0)


def _segment_mask(m: _Market, dim: str, seg: str, a: Mapping[str, np.ndarray]) -> np.ndarray:
    """Decisions of one segment (``a``: the chunk's arrays)."""
    if dim == "market":
        return np.ones(len(a["day"]), dtype=bool)
    if dim == "vendor":
        return a["vendor"] == m.vendors.index(seg)
    if dim == "site":
        return a["unit"] == m.sites.index(seg)
    if dim == "queue":
        return a["q"] == QUEUES.index(seg)
    if dim == "language":
        return a["lang"] == m.languages.index(seg)
    if dim == "policy":
        return a["pol"] == _POLICY_NAMES.index(seg)
    raise ValueError(f"no decision segment for dimension {dim!r}")


def _add_views(m: _Market, a: Mapping[str, np.ndarray]) -> None:
    """Add one chunk's decisions to the market's incident views (see :class:`_View`)."""
    decided = ~a["pending"]
    inhouse = np.array([v == INHOUSE for v in m.vendors])[a["vendor"]]
    # the scan's QA rates count internal audits: every sampled in-house item, 60% of others
    prob = _qa_inclusion(m, a["q"], a["routing"], a["act"], a["vendor"]) * np.where(
        inhouse, 1.0, _INTERNAL_SHARE
    )
    enforced, viol = a["act"] > 0, a["viol"]
    for v in m.views:
        census = v.metric in ("auto_action_rate", "sla_compliance")
        if v.metric == "accuracy":
            keep, hit = decided, a["correct"]
        elif v.metric == "over_enforcement_rate":
            keep, hit = decided, enforced & ~viol
        elif v.metric == "under_enforcement_rate":
            keep, hit = decided, ~enforced & viol
        elif v.metric == "wrong_policy_rate":
            keep, hit = decided, enforced & viol & (a["pol"] != a["tpol"])
        elif v.metric == "ai_recall":  # violating items the AI scored
            keep, hit = decided & a["avail"] & viol, a["score"] >= m.threshold
        elif v.metric == "auto_action_rate":
            keep, hit = decided, a["auto"]
        elif v.metric == "sla_compliance":
            keep, hit = a["sla_elig"], a["sla_met"]
        else:  # pragma: no cover - _incident_views builds only the metrics above
            raise ValueError(v.metric)
        keep = keep & _segment_mask(m, v.dimension, v.segment, a)
        day = a["day"][keep]
        p = np.ones(len(day)) if census else prob[keep]
        for acc, w in (
            (v.total, None),
            (v.hits, hit[keep].astype(float)),
            (v.audits, p),
            (v.inv, 1.0 / p),
        ):
            acc += np.bincount(day, weights=w, minlength=m.days)


def _qa_chunk(
    m: _Market,
    rng: np.random.Generator,
    dec_ids: pa.Array,
    q: np.ndarray,
    unit: np.ndarray,
    vendor: np.ndarray,
    routing: np.ndarray,
    pending: np.ndarray,
    decided: np.ndarray,
    act: np.ndarray,
    pol: np.ndarray,
    viol: np.ndarray,
    tpol: np.ndarray,
    tact: np.ndarray,
    correct: np.ndarray,
) -> pa.Table:
    """Stratified QA sample; vendor QA, internal QA or both re-review each sampled item."""
    n = len(q)
    pi = _qa_inclusion(m, q, routing, act, vendor)
    idx = np.flatnonzero(~pending & (rng.random(n) < pi))
    inhouse = np.array([v == INHOUSE for v in m.vendors])[vendor[idx]]
    r = rng.random(len(idx))
    parts = []
    # internal only 45%, both 15%, vendor only 40%; in-house teams: internal QA only
    for source, mask, p_src, lag_h, noise, lenient in (
        (
            "internal",
            inhouse | (r < _INTERNAL_SHARE),
            np.where(inhouse, 1.0, _INTERNAL_SHARE),
            (6, 96),
            0.012,
            0.0,
        ),
        ("vendor", ~inhouse & (r >= 0.45), np.full(len(idx), 0.55), (1, 48), 0.018, 0.35),
    ):
        j = idx[mask]
        k = len(j)
        audited = decided[j] + (rng.uniform(*lag_h, k) * _HOUR_US).astype(np.int64)
        qpol = tpol[j].copy()
        qact = tact[j].copy()
        flip = rng.random(k) < noise
        to_none = viol[j] & (rng.random(k) < 0.5)
        flipped = np.where(
            viol[j],
            np.where(to_none, 0, _other_policy(tpol[j], rng)),
            _pick(_FP_CUM, rng.random(k)) + 1,
        )
        flip_act = _action_for(flipped, q[j], rng.random(k))
        qpol = np.where(flip, flipped, qpol)
        qact = np.where(flip, flip_act, qact)
        copy = ~correct[j] & (rng.random(k) < lenient)
        qpol = np.where(copy, pol[j], qpol)
        qact = np.where(copy, act[j], qact)
        same = (qpol == pol[j]) & (qpol > 0) & (act[j] > 0) & (rng.random(k) < 0.9)
        qact = np.where(same, act[j], qact)
        if source == "internal":
            aud = m.internal_aud[rng.integers(0, len(m.internal_aud), k)]
        else:
            pools = np.stack([m.vendor_aud[v] for v in range(len(m.vendors))])
            aud = pools[vendor[j], rng.integers(0, pools.shape[1], k)]
        weight = 1.0 / (pi[j] * p_src[mask])
        keep = audited <= m.now_us
        parts.append(
            pa.table(
                {
                    "audit_id": pa.nulls(int(keep.sum()), pa.string()),
                    "decision_id": dec_ids.take(pa.array(j[keep])),
                    "audited_at": _ts(audited[keep]),
                    "qa_source": _strings([source], np.zeros(int(keep.sum()))),
                    "auditor_id": _strings(m.auditors, aud[keep]),
                    "qa_action": _strings(ACTIONS, qact[keep]),
                    "qa_policy": _strings(_POLICY_NAMES, qpol[keep]),
                    "sample_weight": pa.array(np.round(weight[keep], 4), pa.float64()),
                },
                schema=QA_SCHEMA,
            )
        )
    return pa.concat_tables(parts)


def _escalation_chunk(
    m: _Market,
    rng: np.random.Generator,
    dec_ids: pa.Array,
    q: np.ndarray,
    vendor: np.ndarray,
    created: np.ndarray,
    decided: np.ndarray,
    pending: np.ndarray,
    viol: np.ndarray,
    tpol: np.ndarray,
) -> pa.Table:
    """About 1.5 escalations per 1,000 decisions, mostly for severe harms."""
    n = len(q)
    severe = np.isin(tpol, _SEVERE)
    p = 0.0006 + np.where(viol & severe, 0.025, np.where(viol, 0.006, 0.0))
    j = np.flatnonzero(rng.random(n) < p)
    base = np.where(pending[j], created[j], decided[j])
    raised = base + (rng.lognormal(np.log(600), 1.0, len(j)) * _US).astype(np.int64)
    pol = tpol[j]
    u = rng.random(len(j))
    violence_like = np.isin(
        pol, (_POLICY_NAMES.index("violence"), _POLICY_NAMES.index("hate_speech"))
    )
    sev = np.where(
        np.isin(pol, _SEVERE),
        np.where(u < 0.4, 0, 1),
        np.where(violence_like, np.where(u < 0.3, 1, 2), np.where(u < 0.4, 2, 3)),
    )
    reason = np.select(
        [pol == _SEVERE[0], pol == _SEVERE[1], pol == 3, pol == 1],
        [0, 1, 2, 3],
        default=4 + rng.integers(0, 3, len(j)),
    )
    return _escalation_table(
        m, rng, dec_ids.take(pa.array(j)), raised, sev, reason, vendor[j], q[j]
    )


def _escalation_table(
    m: _Market,
    rng: np.random.Generator,
    dec_ids: pa.Array,
    raised: np.ndarray,
    sev: np.ndarray,
    reason: np.ndarray,
    vendor: np.ndarray,
    q: np.ndarray,
) -> pa.Table:
    k = len(raised)
    u = rng.random(k)
    tier = np.select(
        [sev == 0, sev == 1, sev == 2],
        [np.where(u < 0.4, 3, 2), np.where(u < 0.5, 1, 2), np.where(u < 0.5, 0, 1)],
        default=0,
    )
    tier = np.where(reason >= 7, 3, tier)  # legal requests
    sla = np.array([m.params.escalation_sla_seconds.get(s, 86400.0) for s in _ESC_SEVERITIES])
    resolved = raised + (sla[sev] * 0.35 * np.exp(0.8 * rng.standard_normal(k)) * _US).astype(
        np.int64
    )
    age_days = (m.now_us - raised) / (86400 * _US)
    stuck = rng.random(k) < 0.8 * np.exp(-age_days / 10.0)  # recent cases wait in a backlog
    open_ = (resolved > m.now_us) | stuck
    keep = raised <= m.now_us
    return pa.table(
        {
            "escalation_id": pa.nulls(int(keep.sum()), pa.string()),
            "decision_id": dec_ids.filter(pa.array(keep)),
            "raised_at": _ts(raised[keep]),
            "resolved_at": _ts(resolved[keep], open_[keep]),
            "market": _strings([m.code], np.zeros(int(keep.sum()))),
            "vendor": _strings(m.vendors, vendor[keep]),
            "queue": _strings(QUEUES, q[keep]),
            "tier": _strings(_ESC_TIERS, tier[keep]),
            "severity": _strings(_ESC_SEVERITIES, sev[keep]),
            "reason": _strings(_ESC_REASONS, reason[keep]),
        },
        schema=ESCALATIONS_SCHEMA,
    )


def _standalone_escalations(m: _Market, seed: int, n_decisions: int) -> pa.Table:
    """Escalations not tied to a decision (legal and regulator requests)."""
    rng = _rng(seed, "escalations", m.code)
    k = int(rng.poisson(n_decisions * 0.00006))
    day = rng.integers(0, m.days, k)
    raised = _local_us(m, day, rng.integers(8 * 3600, 19 * 3600, k)) + rng.integers(0, _US, k)
    sev = np.where(rng.random(k) < 0.3, 1, 2)
    reason = 7 + rng.integers(0, 2, k)
    vendor = rng.integers(0, len(m.vendors), k)
    return _escalation_table(
        m, rng, pa.nulls(k, pa.string()), raised, sev, reason, vendor, np.full(k, _Q_REPORT)
    )


# ---------------------------------------------------------------------------
# Other tables
# ---------------------------------------------------------------------------
def _erlang_hours(m: _Market, daily: np.ndarray) -> np.ndarray:
    """Productive moderator-hours per day x queue that Erlang C needs for ``daily`` items.

    ``daily`` (days x queues) human-handled items spread over the hours by
    :data:`HOURLY`; per hour the smallest number of moderators meeting the
    market's ``sla_compliance`` target within the queue SLA at the handle
    times :data:`HANDLE_SECONDS` (:func:`qualitylab.capacity.required_agents`),
    summed over the day.
    """
    from qualitylab.operations.capacity import required_agents  # lazy: keeps `import demo` light

    target = float(m.params.targets.get("sla_compliance", 0.9))
    rate = daily[:, :, None] * HOURLY[None, :, :]
    agents = required_agents(rate, HANDLE_SECONDS[None, :, None], m.sla[None, :, None], target)
    return agents.sum(axis=2).astype(float)


def _staffing(m: _Market, seed: int) -> pa.Table:
    """Scheduled and productive hours per day x site x queue, as a workforce planner sets them.

    *Plan.* Per market x queue and day, the Erlang C moderator-hours for the
    expected human-handled volume (:func:`_erlang_hours` of ``lam_day x
    NON_AUTO``: holidays are known ahead, incidents are not), grossed up for
    the planned shrinkage and a planning buffer, with noise, split across the
    sites by their share of the queue; the planted rota cut scales it down.
    *Day of operation.* Productive hours are 80-90% of scheduled. When they
    fall short of the Erlang C hours for the volume that actually arrived, the
    site leads call overtime up to that requirement plus the buffer, except on
    the days an incident flags as understaffed (``m.understaffed``: no
    overtime, and moderators skip breaks, so 97% of scheduled is productive).
    """
    rng = _rng(seed, "staffing", m.code)
    nd, nu, nq = m.human_items.shape
    planned = _erlang_hours(m, m.lam_day * NON_AUTO)  # (days, queues)
    noise = np.exp(rng.normal(0.0, 0.04, (nd, nu, nq)))
    gross = _PLAN_BUFFER / (1.0 - _PLAN_SHRINKAGE)
    scheduled = (planned * gross)[:, None, :] * m.unit_share.T[None, :, :] * noise
    scheduled = scheduled * m.rota[:, None, :]
    productive = scheduled * rng.uniform(0.80, 0.90, (nd, nu, nq))
    needed = _erlang_hours(m, m.human_items.sum(axis=1))  # realised volume
    have = productive.sum(axis=1)
    short = needed > have
    maxed = short & m.understaffed
    overtime = short & ~m.understaffed
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(overtime & (have > 0), needed * _PLAN_BUFFER / have, 1.0)
    scheduled = scheduled * lift[:, None, :]
    productive = np.where(maxed[:, None, :], scheduled * 0.97, productive * lift[:, None, :])
    d, u, qq = (a.ravel() for a in np.indices((nd, nu, nq)))
    scheduled, productive = scheduled.ravel(), productive.ravel()
    if m.queue_live is not None:  # no roster for a queue before it goes live
        live = (qq != m.queue_live[0]) | (d >= m.queue_live[1])
        d, u, qq, scheduled, productive = (a[live] for a in (d, u, qq, scheduled, productive))
    date_days = (m.start - _EPOCH).days + d
    return pa.table(
        {
            "date": pa.array(date_days.astype(np.int32), pa.date32()),
            "market": _strings([m.code], np.zeros(len(d))),
            "vendor": _strings(m.vendors, m.unit_vendor[u]),
            "site": _strings(m.sites, u),
            "queue": _strings(QUEUES, qq),
            "scheduled_hours": pa.array(np.round(scheduled, 2), pa.float64()),
            "productive_hours": pa.array(np.round(productive, 2), pa.float64()),
        },
        schema=STAFFING_SCHEMA,
    )


def _launch_roster(m: _Market) -> pa.Table | None:
    """The published roster of :data:`DEMO_LAUNCH` for its go-live week (future dates).

    ``productive_hours`` holds the planned productive hours (scheduled net of
    shrinkage): nothing has been worked yet.
    """
    launch = DEMO_LAUNCH
    if m.code != launch.market or launch.site not in m.sites:
        return None
    first = (m.start - _EPOCH).days + m.days - 1 + launch.days_after_end
    k = launch.roster_days
    scheduled = np.full(k, launch.scheduled_hours)
    return pa.table(
        {
            "date": pa.array(np.arange(first, first + k, dtype=np.int32), pa.date32()),
            "market": _strings([m.code], np.zeros(k)),
            "vendor": _strings([launch.vendor], np.zeros(k)),
            "site": _strings([launch.site], np.zeros(k)),
            "queue": _strings([launch.queue], np.zeros(k)),
            "scheduled_hours": pa.array(scheduled, pa.float64()),
            "productive_hours": pa.array(
                np.round(scheduled * launch.productive_share, 2), pa.float64()
            ),
        },
        schema=STAFFING_SCHEMA,
    )


def _vendor_reported(m: _Market, seed: int) -> pa.Table:
    """Weekly partner KPIs: the truth plus small noise, except the planted gap."""
    rng = _rng(seed, "vendor_reported", m.code)
    rows: dict[str, list] = {k: [] for k in ("week_start", "market", "vendor", "metric", "value")}
    total, dec, cor, elig, met = m.vstats
    for w in _complete_weeks(m.start, m.days):
        sl = slice(w, w + 7)
        for v, name in enumerate(m.vendors):
            if name == INHOUSE:
                continue
            acc = cor[sl, v].sum() / max(dec[sl, v].sum(), 1)
            acc = min(acc + rng.normal(0.0, 0.004), 0.995)
            if v == m.gap_vendor and w >= m.gap_from_day:
                acc = _REPORTED_ACCURACY + rng.normal(0.0, 0.003)
            sla = met[sl, v].sum() / max(elig[sl, v].sum(), 1) + rng.normal(0.0, 0.004)
            vol = round(total[sl, v].sum() * (1 + rng.normal(0.0, 0.004)))
            for metric, value in (
                ("accuracy", round(acc, 4)),
                ("sla_compliance", round(float(np.clip(sla, 0, 1)), 4)),
                ("volume", float(vol)),
            ):
                rows["week_start"].append((m.start - _EPOCH).days + w)
                rows["market"].append(m.code)
                rows["vendor"].append(name)
                rows["metric"].append(metric)
                rows["value"].append(float(value))
    return pa.table(
        {
            "week_start": pa.array(rows["week_start"], pa.date32()),
            **{k: pa.array(rows[k], pa.string()) for k in ("market", "vendor", "metric")},
            "value": pa.array(rows["value"], pa.float64()),
        },
        schema=VENDOR_REPORTED_SCHEMA,
    )


def _calibration(m: _Market, seed: int) -> pa.Table:
    """A session every two weeks (Wednesday 10:00 local): ~20 cases, all rater groups.

    The launch vendor's raters in the launch market (:data:`DEMO_LAUNCH`) were
    trained on the launch policies: a hashed share of their wrong labels on cases
    of those policies (expected or given) is made right, without drawing from the
    random stream, so every other row is unchanged.
    """
    rng = _rng(seed, "calibration", m.code)
    trained = DEMO_LAUNCH.vendor if m.code == DEMO_LAUNCH.market else None
    launch = {_POLICY_NAMES.index(p) for p in DEMO_LAUNCH.policies}
    first = (2 - m.start.weekday()) % 7 + 7 * (_crc(m.code, "cal") % 2)
    cols: dict[str, list] = {k: [] for k in CALIBRATION_SCHEMA.names}
    for day in range(first, m.days, 14):
        held = int(_local_us(m, day, 10 * 3600))
        session = f"cal-{m.code}-{(m.start + timedelta(days=day)):%Y%m%d}"
        n_cases = int(rng.integers(18, 23))
        truth = np.where(rng.random(n_cases) < 0.55, rng.integers(1, len(POLICIES) + 1, n_cases), 0)
        expected_null = rng.random(n_cases) < 0.05
        raters: list[tuple[str, str, float]] = [
            (m.auditors[i], "internal", 0.90) for i in m.internal_aud[:2]
        ]
        raters.append((m.policy_raters[day // 14 % 2], "policy", 0.97))
        for v, name in enumerate(m.vendors):
            units = np.flatnonzero(m.unit_vendor == v)
            pool = np.concatenate([m.unit_mod_off[u] + np.arange(m.elig[u, day]) for u in units])
            p = 0.93 - 1.5 * m.vendor_err[v]
            if any(a <= day <= b + 7 and fv == v for a, b, fv, _ in m.forced_err):
                p -= 0.10
            raters.extend((m.mod_ids[i], name, p) for i in rng.choice(pool, 3, replace=False))
        scam_push = m.scam_over is not None and m.scam_over[0] <= day <= m.scam_over[1] + 1
        for c in range(n_cases):
            for rater, group, p_ok in raters:
                t = int(truth[c])
                if rng.random() < p_ok:
                    label = t
                elif t > 0:
                    label = 0 if rng.random() < 0.4 else int(_other_policy(np.array([t]), rng)[0])
                else:
                    label = int(_pick(_FP_CUM, rng.random(1))[0]) + 1
                if (
                    scam_push
                    and group not in ("policy", "internal")
                    and t == 0
                    and rng.random() < 0.25
                ):
                    label = _SCAM
                if group == trained and label != t and {label, t} & launch:
                    u = _crc(seed, session, c, rater, "launch") % 10_000 / 10_000
                    label = t if u < DEMO_LAUNCH.calibration_boost else label
                cols["session_id"].append(session)
                cols["held_at"].append(held)
                cols["market"].append(m.code)
                cols["case_id"].append(f"{session}-c{c + 1:02d}")
                cols["rater_id"].append(rater)
                cols["rater_group"].append(group)
                cols["label"].append(_POLICY_NAMES[label])
                cols["expected_label"].append(None if expected_null[c] else _POLICY_NAMES[t])
    return pa.table(
        {k: pa.array(v, CALIBRATION_SCHEMA.field(k).type) for k, v in cols.items()},
        schema=CALIBRATION_SCHEMA,
    )


def _red_team(m: _Market, spec: _ScaleSpec, seed: int) -> pa.Table:
    """Adversarial test set: attacks turn easy items into hard ones, so recall drops."""
    rng = _rng(seed, "red_team", m.code)
    k = spec.red_team
    day = rng.integers(0, m.days, k)
    created = np.sort(
        _local_us(m, day, rng.integers(9 * 3600, 18 * 3600, k)) + rng.integers(0, _US, k)
    )
    lang = rng.integers(0, len(m.languages), k)
    viol = rng.random(k) < 0.8
    policy = np.where(viol, rng.integers(1, len(POLICIES) + 1, k), 0)
    attack = np.where(viol, rng.integers(0, len(ATTACKS), k), 0)
    v4 = created >= m.release_us if m.release_us is not None else np.zeros(k, dtype=bool)
    extra_hard = _ATTACK_HARD[attack]
    if m.red_team_drop is not None:
        first, a = m.red_team_drop
        planted = (created >= _local_us(m, first, 0)) & (attack == a)
        extra_hard = np.where(planted, _RED_TEAM_DROP_HARD, extra_hard)
    score = _ai_scores(rng, viol, v4, viol & v4 & (lang == m.regress_lang), extra_hard)
    ids = np.char.add(f"rt-{m.code}-", np.char.zfill(np.arange(1, k + 1).astype(str), 5))
    return pa.table(
        {
            "item_id": pa.array(ids, pa.string()),
            "created_at": _ts(created),
            "market": _strings([m.code], np.zeros(k)),
            "language": _strings(m.languages, lang),
            "policy": _strings(_POLICY_NAMES, policy),
            "attack": _strings(ATTACKS, attack),
            "ai_model": _strings(MODELS, v4.astype(np.int64)),
            "ai_score": pa.array(score, pa.float64()),
        },
        schema=RED_TEAM_SCHEMA,
    )


def _events(markets: list[_Market]) -> pa.Table:
    """Model releases, policy changes, trainings, the outage and public holidays."""
    rows: list[tuple[int, str, str, str | None, str]] = []

    def add(m: _Market, day: int, hour: int, kind: str, policy: str | None, text: str) -> None:
        rows.append((int(_local_us(m, day, hour * 3600)), m.code, kind, policy, text))

    first = max(markets, key=lambda m: m.days)  # the first market with the longest history
    if first.days > 60:  # a global change, effective at midnight in that market
        text = "Spam policy: repeated off-platform links now count from the third post"
        when = int(_local_us(first, first.days - 61, 0))
        rows.append((when, "*", "policy_change", "spam", text))
    for m in markets:
        if m.release_us is not None and m.release_us > 0:
            rows.append((m.release_us, m.code, "model_release", None, "mod-v4 replaces mod-v3"))
        for day, name in m.holidays:
            add(m, day, 0, "holiday", None, f"Public holiday: {name}")
        if m.queue_live is not None:
            q, day = m.queue_live
            add(m, day, 0, "queue_launch", None, f"{QUEUES[q]} queue goes live in {m.code}")
        if m.outage_us is not None:
            text = "AI scoring unavailable 14:00-24:00; all items routed to moderators"
            rows.append((m.outage_us[0], m.code, "outage", None, text))
        if m.scam_over is not None:
            a, b, _ = m.scam_over
            text = (
                'Scam policy update: off-platform payment requests ("DM me" & <link>) now enforced'
            )
            add(m, a, 0, "policy_change", "scam", text)
            add(m, b + 1, 9, "training", "scam", "Refresher training on the updated scam policy")
        for _, b, v, _ in m.forced_err:
            text = f"{m.vendors[v]} retraining after QA flagged an accuracy drop"
            add(m, min(b + 1, m.days - 1), 9, "training", None, text)
        for u, site in enumerate(m.sites):  # new-hire cohorts start with onboarding
            hires = m.mod_hire[m.unit_mod_off[u] : m.unit_mod_off[u] + m.elig[u, -1]]
            for day in np.unique(hires[hires >= 0]):
                add(m, int(day), 9, "training", None, f"{site}: new-hire cohort onboarding")
    rows.sort(key=lambda r: (r[0], r[1], r[2], r[4]))
    return pa.table(
        {
            "effective_at": _ts(np.array([r[0] for r in rows], dtype=np.int64)),
            "market": pa.array([r[1] for r in rows], pa.string()),
            "kind": pa.array([r[2] for r in rows], pa.string()),
            "policy": pa.array([r[3] for r in rows], pa.string()),
            "description": pa.array([r[4] for r in rows], pa.string()),
        },
        schema=EVENTS_SCHEMA,
    )


# ---------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------
_TS = pa.timestamp("us", tz="UTC")
_S = pa.string()
DECISIONS_SCHEMA = pa.schema(
    [
        pa.field("decision_id", _S, nullable=False),
        pa.field("created_at", _TS, nullable=False),
        pa.field("decided_at", _TS),
        pa.field("market", _S, nullable=False),
        pa.field("vendor", _S, nullable=False),
        pa.field("site", _S, nullable=False),
        pa.field("queue", _S, nullable=False),
        pa.field("language", _S, nullable=False),
        pa.field("moderator_id", _S),
        pa.field("routing", _S, nullable=False),
        pa.field("action", _S),
        pa.field("policy", _S),
        pa.field("ai_model", _S),
        pa.field("ai_score", pa.float64()),
        pa.field("ai_policy", _S),
    ]
)
QA_SCHEMA = pa.schema(
    [
        pa.field("audit_id", _S),
        pa.field("decision_id", _S),
        pa.field("audited_at", _TS),
        pa.field("qa_source", _S),
        pa.field("auditor_id", _S),
        pa.field("qa_action", _S),
        pa.field("qa_policy", _S),
        pa.field("sample_weight", pa.float64()),
    ]
)
STAFFING_SCHEMA = pa.schema(
    [
        ("date", pa.date32()),
        ("market", _S),
        ("vendor", _S),
        ("site", _S),
        ("queue", _S),
        ("scheduled_hours", pa.float64()),
        ("productive_hours", pa.float64()),
    ]
)
CALIBRATION_SCHEMA = pa.schema(
    [
        ("session_id", _S),
        ("held_at", _TS),
        ("market", _S),
        ("case_id", _S),
        ("rater_id", _S),
        ("rater_group", _S),
        ("label", _S),
        ("expected_label", _S),
    ]
)
VENDOR_REPORTED_SCHEMA = pa.schema(
    [
        ("week_start", pa.date32()),
        ("market", _S),
        ("vendor", _S),
        ("metric", _S),
        ("value", pa.float64()),
    ]
)
EVENTS_SCHEMA = pa.schema(
    [("effective_at", _TS), ("market", _S), ("kind", _S), ("policy", _S), ("description", _S)]
)
ESCALATIONS_SCHEMA = pa.schema(
    [
        ("escalation_id", _S),
        ("decision_id", _S),
        ("raised_at", _TS),
        ("resolved_at", _TS),
        ("market", _S),
        ("vendor", _S),
        ("queue", _S),
        ("tier", _S),
        ("severity", _S),
        ("reason", _S),
    ]
)
RED_TEAM_SCHEMA = pa.schema(
    [
        ("item_id", _S),
        ("created_at", _TS),
        ("market", _S),
        ("language", _S),
        ("policy", _S),
        ("attack", _S),
        ("ai_model", _S),
        ("ai_score", pa.float64()),
    ]
)


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------
def _fmt(x: float, digits: int) -> str:
    """A number for ``incidents.csv``: rounded, empty when undefined."""
    return "" if not math.isfinite(x) else f"{x:.{digits}f}"


def _write(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="zstd")


def _with_ids(table: pa.Table, column: str, prefix: str, sort_keys: list[str]) -> pa.Table:
    table = table.sort_by([(k, "ascending") for k in sort_keys])
    ids = np.char.add(prefix, np.char.zfill(np.arange(1, table.num_rows + 1).astype(str), 8))
    i = table.schema.get_field_index(column)
    return table.set_column(i, column, pa.array(ids, pa.string()))


def generate(
    out: str | Path,
    *,
    markets: Sequence[str] | None = None,
    days: int = 90,
    scale: Scale = "demo",
    seed: int = 42,
    end_date: date | None = None,
    progress: Callable[[str], None] | None = None,
    parameters: Parameters | None = None,
    young_market: str | None = None,
    young_days: int = 14,
    incidents: bool = True,
) -> DemoSummary:
    """Write a synthetic qualitylab dataset with planted incidents.

    Parameters
    ----------
    out : str or Path
        Output folder; created if missing. Existing ``decisions/part-*.parquet``
        files and the tables below are replaced.
    markets : sequence of str, optional
        Market codes (each needs ``parameters/markets/<CODE>.yaml``). Defaults by
        scale: ``small`` SG, ID, TH; ``demo`` and ``large`` all ten markets.
    days : int, default 90
        Length of the period in days, ending on ``end_date`` (inclusive). The
        incidents sit in the last four weeks; 56 days or more leave a 28-day
        baseline before them.
    scale : {"small", "demo", "large"}, default "demo"
        About 50k, 1M or 10M+ decisions over 90 days in the default markets.
    seed : int, default 42
        Same arguments and seed give byte-identical files.
    end_date : date, optional
        Last market-local date of the period; default :data:`DEFAULT_END_DATE`.
    progress : callable, optional
        Called with one line of text per step.
    parameters : Parameters, optional
        Loaded parameters; found with :func:`~qualitylab.params.load_parameters`
        when omitted.
    young_market : str, optional
        A market that started recently (added to ``markets`` if not among
        them): it has only the last ``young_days`` days of data, its
        :data:`YOUNG_QUEUE` queue goes live :data:`YOUNG_QUEUE_DAYS` days
        before the end (first decisions on ``end_date - 4``), and no incident
        is planted in it. Its other tables start with its data; ``events``
        records the go-live (kind ``queue_launch``).
    young_days : int, default 14
        Days of history of ``young_market``, from 6 up to ``days``.
    incidents : bool, default True
        Plant the incidents; ``False`` gives clean data (``incidents.csv``
        then has only its header).

    Returns
    -------
    DemoSummary
        Output folder, rows per table, incident count and wall time.

    Raises
    ------
    ParameterError
        For an unknown scale or market, ``days < 1``, or ``young_days`` outside
        6..``days``.

    Notes
    -----
    Tables written: ``decisions/`` (Parquet parts), ``qa_audits``, ``staffing``,
    ``calibration``, ``vendor_reported``, ``events``, ``escalations``,
    ``red_team`` (one Parquet file each) and ``incidents.csv`` (columns
    :data:`INCIDENT_COLUMNS`, market-local ISO dates; ``findable`` follows the
    design rule of the module docstring, not a scan). Partner-reported
    ``volume`` counts every decision in the partner's queues that week,
    ``sla_compliance`` the share decided within the queue SLA (pending items
    past the SLA count as misses) and ``accuracy`` the share of its human
    decisions that match the latent truth. When the launch market of
    :data:`DEMO_LAUNCH` is generated, ``staffing`` also holds the launch's
    roster, dated after the period (its go-live week).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     s = generate(tmp, markets=["SG"], days=30, scale="small")
    >>> s.n_decisions > 2000, s.rows["qa_audits"] > 0
    (True, True)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     s = generate(tmp, markets=["SG"], days=30, scale="small", young_market="MY")
    ...     import pandas as pd
    ...     dec = pd.read_parquet(f"{tmp}/decisions", columns=["market", "created_at"])
    >>> s.markets, str(dec[dec.market == "MY"].created_at.min().tz_convert("Asia/Kuala_Lumpur").date())
    (('SG', 'MY'), '2026-11-09')
    """
    t0 = time.perf_counter()
    params = parameters if parameters is not None else load_parameters()
    spec, codes = _validate(markets, days, scale, seed, params)
    young = None
    if young_market is not None:
        young = young_market.strip().upper()
        params.market(young)  # raises ParameterError naming the missing file
        if (
            isinstance(young_days, bool)
            or not isinstance(young_days, int)
            or not YOUNG_QUEUE_DAYS < young_days <= days
        ):
            raise ParameterError(
                f"young_days must be an integer from {YOUNG_QUEUE_DAYS + 1} to days ({days}), "
                f"got {young_days!r}",
                key="young_days",
            )
        codes = codes if young in codes else (*codes, young)
    end = end_date or DEFAULT_END_DATE
    start = end - timedelta(days=days - 1)
    say = progress or (lambda _msg: None)
    out = Path(out)
    part_dir = out / "decisions"
    part_dir.mkdir(parents=True, exist_ok=True)
    for old in sorted(part_dir.glob("part-*.parquet")):
        old.unlink()

    planted = tuple(c for c in codes if c != young) if incidents else ()
    incidents_, effects = _plan_incidents(planted, params, days, start)
    effects = {c: effects.get(c, _Effects()) for c in codes}
    regress = tuple(e.ai_recall_drop[1] for e in effects.values() if e.ai_recall_drop)
    chunk = spec.chunk_days or days
    rows = dict.fromkeys(
        (
            "decisions",
            "qa_audits",
            "staffing",
            "calibration",
            "vendor_reported",
            "events",
            "escalations",
            "red_team",
        ),
        0,
    )
    plans: list[_Market] = []
    findability: dict[int, _Findability] = {}
    qa_parts: list[pa.Table] = []
    esc_parts: list[pa.Table] = []
    other: dict[str, list[pa.Table]] = {
        k: [] for k in ("staffing", "calibration", "vendor_reported", "red_team")
    }
    part = 0
    for code in codes:
        if code == young:
            m_start, m_days = end - timedelta(days=young_days - 1), young_days
            live = (QUEUES.index(YOUNG_QUEUE), young_days - YOUNG_QUEUE_DAYS)
        else:
            m_start, m_days, live = start, days, None
        m = _build_market(code, params, spec, m_start, m_days, seed, effects[code], regress, live)
        mine = [(i, inc) for i, inc in enumerate(incidents_) if inc.market == code]
        m.views = _incident_views(m, mine)
        for ci, d0 in enumerate(range(0, m_days, chunk)):
            d1 = min(d0 + chunk, m_days)
            res = _decisions_chunk(m, d0, d1, seed, ci)
            _write(res.decisions, part_dir / f"part-{part:05d}.parquet")
            part += 1
            rows["decisions"] += res.decisions.num_rows
            qa_parts.append(res.qa)
            esc_parts.append(res.escalations)
            say(
                f"{code} {m_start + timedelta(days=d0)}..{m_start + timedelta(days=d1 - 1)}: "
                f"{res.decisions.num_rows:,} decisions"
            )
            del res
        esc_parts.append(_standalone_escalations(m, seed, m.next_seq))
        other["staffing"].append(_staffing(m, seed))
        if (roster := _launch_roster(m)) is not None:
            other["staffing"].append(roster)
        other["vendor_reported"].append(_vendor_reported(m, seed))
        other["calibration"].append(_calibration(m, seed))
        other["red_team"].append(_red_team(m, spec, seed))
        findability.update(_findability(m, mine, spec))
        m.vstats = m.human_items = np.zeros(0)
        m.views = []
        plans.append(m)

    tables = {
        "qa_audits": _with_ids(
            pa.concat_tables(qa_parts),
            "audit_id",
            "audit-",
            ["audited_at", "decision_id", "qa_source"],
        ),
        "escalations": _with_ids(
            pa.concat_tables(esc_parts), "escalation_id", "esc-", ["raised_at", "market", "reason"]
        ),
        "staffing": pa.concat_tables(other["staffing"]).sort_by(
            [(k, "ascending") for k in ("date", "market", "vendor", "site", "queue")]
        ),
        "vendor_reported": pa.concat_tables(other["vendor_reported"]).sort_by(
            [(k, "ascending") for k in ("week_start", "market", "vendor", "metric")]
        ),
        "calibration": pa.concat_tables(other["calibration"]).sort_by(
            [(k, "ascending") for k in ("held_at", "market", "case_id", "rater_group", "rater_id")]
        ),
        "red_team": pa.concat_tables(other["red_team"]).sort_by(
            [("created_at", "ascending"), ("item_id", "ascending")]
        ),
        "events": _events(plans),
    }
    for name, table in tables.items():
        _write(table, out / f"{name}.parquet")
        rows[name] = table.num_rows
        say(f"{name}: {table.num_rows:,} rows")

    with (out / "incidents.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(INCIDENT_COLUMNS)
        for i, inc in enumerate(incidents_):
            f = findability[i]
            writer.writerow(
                [
                    inc.market,
                    inc.metric,
                    inc.dimension,
                    inc.segment,
                    (start + timedelta(days=inc.start)).isoformat(),
                    (start + timedelta(days=inc.end)).isoformat(),
                    inc.direction,
                    inc.description,
                    _fmt(f.expected_n, 1),
                    _fmt(f.planted_change, 4),
                    _fmt(f.detectable_change, 4),
                    f.findable,
                    f.series,
                ]
            )
    say(f"incidents.csv: {len(incidents_)} incidents")
    return DemoSummary(
        path=out,
        markets=codes,
        start_date=start,
        end_date=end,
        rows=rows,
        incidents=len(incidents_),
        seconds=round(time.perf_counter() - t0, 3),
    )
