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
runs short (see :func:`~qualitylab.demodata.generate.tables.staffing_table`).

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
  = the series the default scan of the market builds (:func:`~qualitylab.demodata.generate.planted.scan_series`,
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

Modules: ``model`` (scales, vocabulary and behaviour, each market's state),
``planted`` (the incidents and their ``findable`` rule), ``decisions`` (the
decisions, their QA audits and escalations), ``tables`` (staffing, vendor
reports, calibration, red team, events), ``schemas`` (the tables' Arrow
schemas) and ``writer`` (:func:`generate`).
"""

from __future__ import annotations

# every public name of the module generate was (also those not in __all__)
from qualitylab.demodata.generate.model import (  # noqa: F401
    ACTIONS,
    ALL_MARKETS,
    ATTACKS,
    AUTO_HIGH,
    AUTO_LOW,
    DEFAULT_END_DATE,
    DEFAULT_SLA,
    DEMO_LAUNCH,
    FALSE_POSITIVE_MIX,
    HANDLE_SECONDS,
    HOLIDAYS,
    HOURLY,
    HUMAN_ONLY,
    INHOUSE,
    LOAD,
    MARKET_CITY,
    MARKET_WEIGHT,
    MODELS,
    NON_AUTO,
    POLICIES,
    POLICY_ACTIONS,
    POLICY_MIX,
    PREVALENCE,
    QUEUE_MIX,
    QUEUES,
    ROUTINGS,
    SCALES,
    VENDOR_ERROR,
    VENDOR_SITES,
    WEEKLY,
    YOUNG_QUEUE,
    YOUNG_QUEUE_DAYS,
    DemoLaunch,
    Scale,
)
from qualitylab.demodata.generate.planted import (  # noqa: F401
    FINDABLE_FDR,
    FINDABLE_POWER,
    INCIDENT_COLUMNS,
)
from qualitylab.demodata.generate.schemas import (  # noqa: F401
    CALIBRATION_SCHEMA,
    DECISIONS_SCHEMA,
    ESCALATIONS_SCHEMA,
    EVENTS_SCHEMA,
    QA_SCHEMA,
    RED_TEAM_SCHEMA,
    STAFFING_SCHEMA,
    VENDOR_REPORTED_SCHEMA,
)
from qualitylab.demodata.generate.writer import (  # noqa: F401
    DemoSummary,
    generate,
)

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
