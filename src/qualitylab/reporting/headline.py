"""A per-market headline table: the first thing `make demo` prints."""

from __future__ import annotations

import pandas as pd

from qualitylab.data.sources import Dataset
from qualitylab.measure.scorecard import scorecard

__all__ = ["headline", "HEADLINE_METRICS"]

HEADLINE_METRICS = (
    "volume",
    "backlog",
    "sla_compliance",
    "response_p90",
    "accuracy",
    "qa_alignment",
    "ai_precision",
    "ai_recall",
    "override_rate",
)


def _fmt(row: pd.Series) -> str:
    if pd.isna(row["value"]):
        return "n/a"
    if row["metric"] in ("volume", "backlog"):
        return f"{int(row['value']):,}"
    if row["metric"].startswith("response_"):
        return f"{row['value']:,.0f}s"
    if pd.isna(row["ci_low"]):
        return f"{100 * row['value']:.1f}%"
    flag = {"green": "", "amber": " ~", "red": " !"}.get(row["status"], "")
    return f"{100 * row['value']:.1f}% [{100 * row['ci_low']:.1f}-{100 * row['ci_high']:.1f}]{flag}"


def headline(ds: Dataset, *, markets: list[str] | None = None, days: int = 28) -> pd.DataFrame:
    """Headline KPIs for each market over its last ``days`` days of data.

    Returns a display table: one row per market, one column per headline
    metric, values formatted with their interval; ``!`` marks a KPI that
    misses its target with confidence, ``~`` one whose interval straddles it.
    """
    dec = ds.table("decisions")
    present = sorted(dec.select("market").distinct().to_pandas()["market"].tolist())
    codes = [c for c in (markets or present) if c in ds.params.markets]
    rows = []
    for code in codes:
        sc = scorecard(ds, code, compare=False)
        sc = sc[sc["metric"].isin(HEADLINE_METRICS)]
        row = {"market": code, "period": " to ".join(sc.attrs.get("period", ("", "")))}
        for _, r in sc.iterrows():
            row[r["metric"]] = _fmt(r)
        rows.append(row)
    cols = ["market", "period", *[m for m in HEADLINE_METRICS]]
    out = pd.DataFrame(rows)
    return out.reindex(columns=[c for c in cols if c in out.columns])
