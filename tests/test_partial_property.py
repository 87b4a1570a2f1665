"""Issue #14, property test: the public API on randomly cut data.

One small demo dataset (two markets) is generated once per session; each
example deletes a random set of optional tables, empties others, drops markets
and a date range, and writes the variant. Every public call then either
returns a result or raises :class:`~qualitylab.errors.QualityLabError`;
anything else fails with the call and the exception.
"""

from __future__ import annotations

import os
import tempfile
import traceback
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import qualitylab as ql
from qualitylab.errors import QualityLabError
from tests import partial_cases as pc

MARKETS = ("SG", "ID")
EXAMPLES = int(os.environ.get("QUALITYLAB_PROPERTY_EXAMPLES", "16"))
DAYS = 42
TIMESTAMP = {
    "decisions": "created_at",
    "qa_audits": "audited_at",
    "calibration": "held_at",
    "events": "effective_at",
    "escalations": "raised_at",
    "red_team": "created_at",
}
DATES = {"staffing": "date", "vendor_reported": "week_start"}


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, pd.DataFrame], date, date]:
    """The demo tables of two markets, their first and last UTC day."""
    from qualitylab.demo import generate

    out = tmp_path_factory.mktemp("property")
    generate(out, markets=list(MARKETS), days=DAYS, scale="small", seed=11)
    tables = pc.read_tables(out)
    created = pd.to_datetime(tables["decisions"]["created_at"], utc=True)
    return tables, created.min().date(), created.max().date()


def _day(values: pd.Series) -> pd.Series:
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(values):
        return pd.to_datetime(values, utc=True).dt.date
    return pd.to_datetime(values).dt.date


@st.composite
def variants(draw: st.DrawFn, first: date, last: date) -> dict[str, object]:
    span = (last - first).days
    cut_from = draw(st.integers(-5, span + 5))
    cut_days = draw(st.sampled_from([0, 0, 3, 10, 30, 60]))
    start_off = draw(st.one_of(st.none(), st.integers(-20, span + 20)))
    length = draw(st.sampled_from([1, 7, 28]))
    keep_from = draw(st.one_of(st.none(), st.integers(0, span)))
    return {
        "keep": None
        if keep_from is None
        else (
            first + timedelta(days=keep_from),
            first + timedelta(days=keep_from + draw(st.sampled_from([0, 2, 13]))),
        ),
        "drop_rows": draw(
            st.sets(
                st.sampled_from(
                    [
                        ("routing", "ai_assisted"),
                        ("routing", "ai_auto"),
                        ("routing", "human"),
                        ("vendor", "VendorA"),
                        ("queue", "appeal"),
                        ("queue", "live_stream"),
                        ("qa_source", "internal"),
                        ("qa_source", "vendor"),
                        ("action", "no_action"),
                    ]
                ),
                max_size=3,
            )
        ),
        "drop": draw(st.sets(st.sampled_from(pc.OPTIONAL))),
        "empty": draw(st.sets(st.sampled_from(pc.OPTIONAL))),
        "drop_markets": draw(st.sets(st.sampled_from(MARKETS), max_size=2)),
        "cut": (first + timedelta(days=cut_from), first + timedelta(days=cut_from + cut_days)),
        "market": draw(st.sampled_from([*MARKETS, "TH"])),  # TH: parameters, no data
        "period": None
        if start_off is None
        else (
            first + timedelta(days=start_off),
            first + timedelta(days=start_off + length - 1),
        ),
        "by": draw(st.sampled_from([(), ("vendor",), ("queue", "vendor"), ("date",), ("site",)])),
    }


def cut(tables: dict[str, pd.DataFrame], v: dict[str, object]) -> dict[str, pd.DataFrame]:
    """Apply a variant: drop/empty tables, markets, segments and days (or keep a few days)."""
    lo, hi = v["cut"]  # type: ignore[misc]
    out = {}
    for name, df in tables.items():
        if name in v["drop"]:  # type: ignore[operator]
            continue
        if name in v["empty"]:  # type: ignore[operator]
            out[name] = df.iloc[:0]
            continue
        keep = pd.Series(True, index=df.index)
        if "market" in df.columns:
            keep &= ~df["market"].isin(v["drop_markets"])  # type: ignore[arg-type]
        col = TIMESTAMP.get(name) or DATES.get(name)
        if col is not None:
            day = _day(df[col])
            keep &= ~((day >= lo) & (day <= hi))
            if v["keep"] is not None:
                keep &= (day >= v["keep"][0]) & (day <= v["keep"][1])  # type: ignore[index]
        for column, value in v["drop_rows"]:  # type: ignore[attr-defined]
            if column in df.columns:
                keep &= df[column] != value
        out[name] = df[keep].reset_index(drop=True)
    return out


def _calls(
    ds: ql.Dataset, v: dict[str, object], last: date
) -> list[tuple[str, Callable[[], object]]]:
    from qualitylab import (
        aieval,
        calibration,
        capacity,
        escalations,
        findings,
        forecast,
        headline,
        rca,
        readiness,
        reconcile,
        redteam,
        rollout,
    )

    market = str(v["market"])
    by = list(v["by"])  # type: ignore[call-overload]
    period = v["period"]
    s, e = (None, None) if period is None else (str(period[0]), str(period[1]))  # type: ignore[index]
    kw = {"market": market, "start": s, "end": e}
    cur = (str(last - timedelta(days=13)), str(last)) if period is None else (s, e)
    base_end = date.fromisoformat(cur[0]) - timedelta(days=1)
    base = (str(base_end - timedelta(days=27)), str(base_end))
    plan = readiness.LaunchPlan(
        market=market,
        vendor="VendorA",
        site="VendorA-Manila",
        queue="live_shopping",
        date=date.fromisoformat(cur[1]) + timedelta(days=7),
        expected_volume=300,
        languages=["en"],
        policies=["scam", "spam"],
        sla_seconds=300,
        kpis=["accuracy", "volume"],
    )

    def rca_chain(metric: str) -> object:
        result = rca.decompose(ds, metric, market, current=cur, baseline=base)
        ranking = rca.adtributor(result)
        rca.drill_down(ds, result, ranking=ranking)
        return rca.summarize(result, ranking)

    def findings_chain() -> object:
        sc = ql.scorecard(ds, market, by=["vendor"], start=s, end=e)
        gaps = reconcile.reporting_gap_summary(reconcile.reporting_gap(ds, market, start=s, end=e))
        return findings.partner_agenda(sc, gaps=gaps)

    def ai_chain() -> object:
        hist = aieval.score_histogram(aieval.scored_audits(ds, **kw), bins=100)
        return aieval.threshold_sweep(hist)

    return [
        ("validate", lambda: ds.validate()),
        ("scorecard", lambda: ql.scorecard(ds, market, by=by, start=s, end=e)),
        ("headline", lambda: headline.headline(ds)),
        ("operational_metrics", lambda: ql.metrics.operational_metrics(ds, by=by, **kw)),
        ("qa_metrics", lambda: ql.metrics.qa_metrics(ds, by=by, **kw)),
        ("qa_alignment", lambda: ql.metrics.qa_alignment(ds, by=by, **kw)),
        ("ai_workflow_metrics", lambda: ql.metrics.ai_workflow_metrics(ds, by=by, **kw)),
        ("override_quality", lambda: ql.metrics.override_quality(ds, by=by, **kw)),
        ("ai_metrics", lambda: aieval.ai_metrics(ds, by=by, **kw)),
        ("scored_audits+threshold_sweep", ai_chain),
        ("decompose+adtributor(accuracy)", lambda: rca_chain("accuracy")),
        ("decompose+adtributor(sla_compliance)", lambda: rca_chain("sla_compliance")),
        ("error_anatomy", lambda: rca.error_anatomy(ds, market, cur, base)),
        ("outlier_units", lambda: rca.outlier_units(ds, "accuracy", market, start=s, end=e)),
        ("event_impact", lambda: rca.event_impact(ds, "accuracy", market, cur[0])),
        ("partner_agenda", findings_chain),
        ("capacity_table", lambda: capacity.capacity_table(ds, market, horizon_days=7)),
        ("forecast_arrivals", lambda: forecast.forecast_arrivals(ds, market, horizon_days=7)),
        ("readiness", lambda: readiness.readiness(ds, plan)),
        ("reporting_gap", lambda: reconcile.reporting_gap(ds, market, start=s, end=e)),
        ("escalation_rate", lambda: escalations.escalation_rate(ds, by=by, **kw)),
        ("escalation_resolution", lambda: escalations.escalation_resolution(ds, **kw)),
        ("open_escalations", lambda: escalations.open_escalations(ds, market=market)),
        ("resolution_curve", lambda: escalations.resolution_curve(ds, **kw)),
        ("triage", lambda: escalations.triage(ds, market, cur[0], cur[1])),
        ("red_team_evaluation", lambda: redteam.red_team_evaluation(ds, **kw)),
        (
            "calibration_summary",
            lambda: calibration.calibration_summary(ds, market, start=s, end=e, n_boot=50),
        ),
        ("policy_changes", lambda: rollout.policy_changes(ds, market)),
        ("rollout", lambda: rollout.rollout(ds, market)),
    ]


def test_public_api_on_cut_data(source) -> None:  # noqa: ANN001
    tables, first, last = source

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: examples are slow
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(variants(first, last))
    def check(v: dict[str, object]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            data = pc.write_dataset(Path(tmp) / "data", cut(tables, v))
            try:
                ds = ql.open_dataset(data)
            except QualityLabError:
                return
            bad = []
            for name, call in _calls(ds, v, last):
                try:
                    call()
                except QualityLabError:
                    continue
                except Exception as exc:  # noqa: BLE001 - the property under test
                    frames = traceback.extract_tb(exc.__traceback__)
                    ours = [f for f in frames if f"qualitylab{os.sep}" in f.filename]
                    where = ", ".join(
                        f"{Path(f.filename).name}:{f.lineno}" for f in [*ours[-1:], frames[-1]]
                    )
                    bad.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]} (at {where})")
            if bad:
                pytest.fail(f"variant {v}:\n  " + "\n  ".join(bad), pytrace=False)

    check()
