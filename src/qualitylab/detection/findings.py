"""Findings ranked by impact: the "to discuss with the partner" list.

Built only from numbers the library computed (scorecard rows, alerts,
reporting gaps); every finding carries the evidence behind it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qualitylab.measure.scorecard import LOWER_IS_BETTER

__all__ = ["FINDING_COLUMNS", "partner_agenda"]

FINDING_COLUMNS = [
    "vendor",
    "topic",
    "metric",
    "finding",
    "value",
    "target",
    "n",
    "impact",
    "source",
]
_RATE_LIKE = ("rate", "accuracy", "compliance", "alignment", "precision", "recall", "score")


def _fmt(metric: str, value: float) -> str:
    if pd.isna(value):
        return "n/a"
    if any(k in metric for k in _RATE_LIKE):
        return f"{100 * value:.1f}%"
    if metric.startswith("response_"):
        return f"{value:,.0f}s"
    return f"{value:,.2f}"


def _bad_direction(metric: str, delta: float) -> bool:
    return delta > 0 if metric in LOWER_IS_BETTER else delta < 0


def partner_agenda(
    scorecard: pd.DataFrame,
    *,
    alerts: pd.DataFrame | None = None,
    gaps: pd.DataFrame | None = None,
    alpha: float = 0.05,
    top: int = 10,
) -> pd.DataFrame:
    """Rank what to discuss with each vendor, by impact.

    Parameters
    ----------
    scorecard : pandas.DataFrame
        :func:`qualitylab.scorecard.scorecard` output with a ``vendor`` column.
    alerts : pandas.DataFrame, optional
        ``alerts.csv`` rows; those with ``dimension == "vendor"`` are included.
    gaps : pandas.DataFrame, optional
        :func:`qualitylab.reconcile.reporting_gap_summary` output.
    alpha : float, default 0.05
        Significance for "worse than last period" (on FDR-adjusted p-values).
    top : int, default 10

    Returns
    -------
    pandas.DataFrame
        ``vendor, topic, metric, finding, value, target, n, impact, source``
        sorted by ``impact`` (affected items × size of the shortfall or change).

    Examples
    --------
    >>> sc = pd.DataFrame({"market": "SG", "vendor": ["A", "B"], "metric": "accuracy",
    ...     "value": [0.90, 0.97], "n": [400, 300], "ci_low": [0.87, 0.95],
    ...     "ci_high": [0.93, 0.985], "target": 0.95, "status": ["red", "green"],
    ...     "prev_value": [0.94, 0.97], "delta": [-0.04, 0.0], "p_value": [0.01, 1.0],
    ...     "p_adjusted": [0.02, 1.0], "small_n": False})
    >>> partner_agenda(sc)[["vendor", "topic"]].values.tolist()
    [['A', 'misses target'], ['A', 'worse than last period']]
    """
    rows: list[dict] = []
    if "vendor" not in scorecard.columns:
        raise ValueError("partner_agenda needs a scorecard by vendor (by=['vendor', ...])")
    seg_cols = [
        c
        for c in scorecard.columns
        if c not in ("market", "vendor") and c in ("site", "queue", "language", "policy")
    ]
    for r in scorecard.itertuples(index=False):
        where = " / ".join(str(getattr(r, c)) for c in seg_cols)
        label = f"{r.metric}" + (f" ({where})" if where else "")
        n = float(r.n) if not pd.isna(r.n) else 0.0
        if r.status == "red" and not pd.isna(r.target):
            gap = abs(r.value - r.target)
            rows.append(
                {
                    "vendor": r.vendor,
                    "topic": "misses target",
                    "metric": r.metric,
                    "finding": f"{label} is {_fmt(r.metric, r.value)} "
                    f"(95% CI {_fmt(r.metric, r.ci_low)}–{_fmt(r.metric, r.ci_high)}) "
                    f"against a target of {_fmt(r.metric, r.target)}, over {int(n):,} items",
                    "value": r.value,
                    "target": r.target,
                    "n": n,
                    "impact": gap * n,
                    "source": "scorecard",
                }
            )
        if (
            not pd.isna(getattr(r, "p_adjusted", np.nan))
            and r.p_adjusted < alpha
            and _bad_direction(r.metric, r.delta)
            and r.metric not in ("volume",)
        ):
            rel = (
                abs(r.delta)
                if any(k in r.metric for k in _RATE_LIKE)
                else abs(r.delta / r.prev_value)
                if r.prev_value
                else 0.0
            )
            rows.append(
                {
                    "vendor": r.vendor,
                    "topic": "worse than last period",
                    "metric": r.metric,
                    "finding": f"{label} moved from {_fmt(r.metric, r.prev_value)} to "
                    f"{_fmt(r.metric, r.value)} (adjusted p = {r.p_adjusted:.3f})",
                    "value": r.value,
                    "target": r.target,
                    "n": n,
                    "impact": rel * n,
                    "source": "scorecard",
                }
            )
    if alerts is not None and len(alerts):
        va = alerts[alerts["dimension"] == "vendor"]
        for a in va.itertuples(index=False):
            impact = float(getattr(a, "impact", np.nan))
            rows.append(
                {
                    "vendor": a.segment,
                    "topic": "alert",
                    "metric": a.metric,
                    "finding": f"{a.metric} went {a.direction} from {a.start_date} to "
                    f"{a.end_date}: {_fmt(a.metric, a.observed)} vs expected "
                    f"{_fmt(a.metric, a.expected)} ({a.severity}, {a.detector})",
                    "value": a.observed,
                    "target": np.nan,
                    "n": float(getattr(a, "n", np.nan)),
                    "impact": 0.0 if np.isnan(impact) else impact,
                    "source": "alerts",
                }
            )
    if gaps is not None and len(gaps):
        vol = scorecard[scorecard["metric"] == "volume"].groupby("vendor")["value"].sum()
        for g in gaps[gaps["flagged"]].itertuples(index=False):
            rows.append(
                {
                    "vendor": g.vendor,
                    "topic": "reported numbers differ",
                    "metric": g.kpi,
                    "finding": f"reported {g.kpi} {_fmt(g.kpi, g.reported)} vs measured "
                    f"{_fmt(g.kpi, g.measured)} over {g.weeks} weeks (gap "
                    f"{100 * g.gap:+.1f} pp, 95% CI {100 * g.ci_low:+.1f} to "
                    f"{100 * g.ci_high:+.1f})",
                    "value": g.reported,
                    "target": g.measured,
                    "n": float(vol.get(g.vendor, np.nan)),
                    # items whose reported quality differs: gap x the vendor's volume
                    "impact": abs(g.gap) * float(vol.get(g.vendor, 0.0)),
                    "source": "reconciliation",
                }
            )
    out = pd.DataFrame(rows, columns=FINDING_COLUMNS)
    if out.empty:
        return out
    return (
        out.sort_values("impact", ascending=False, kind="stable").head(top).reset_index(drop=True)
    )
