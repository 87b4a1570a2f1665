"""Error anatomy: which kinds of errors, on which policies and languages, moved the error rate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

import ibis
import numpy as np
import pandas as pd

from qualitylab.data.sources import Dataset
from qualitylab.detection.rca.engine import filter_expr, metric_table, use_weights
from qualitylab.detection.rca.vocabulary import (
    METRIC_SPECS,
    MISSING,
    MSG_EMPTY_PERIOD,
    check_dimensions,
    check_periods,
    check_qa_source,
    fmt_period,
)
from qualitylab.errors import QualityLabError
from qualitylab.measure.scope import Period

__all__ = ["ANATOMY_COLUMNS", "error_anatomy"]

ANATOMY_COLUMNS = [
    "error_type",
    "n_base",
    "n_cur",
    "rate_base",
    "rate_cur",
    "change",
    "share_of_change",
]


_ERROR_TYPES = ("over_enforcement", "under_enforcement", "wrong_policy")


def error_anatomy(
    ds: Dataset,
    market: str | None,
    current: tuple[date | str, date | str] | Period,
    baseline: tuple[date | str, date | str] | Period,
    *,
    by: Sequence[str] = ("policy", "language"),
    where: Mapping[str, str | Sequence[str]] | None = None,
    qa_source: str | None = "internal",
    weighted: bool | None = None,
) -> pd.DataFrame:
    """Which kinds of errors, on which policies and languages, moved the error rate.

    Parameters
    ----------
    ds : Dataset
    market : str or None
    current, baseline : (start, end) or Period
    by : sequence of str, default ("policy", "language")
        Dimensions to cross with the error type (as :func:`decompose`).
        ``policy`` here is the policy *at stake*: the policy the decision cited
        for an over-enforcement, the policy QA found for an under-enforcement
        or a wrong-policy error.
    where : mapping, optional
        Within a segment only, e.g. ``{"vendor": "VendorC"}`` (as :func:`decompose`).
    qa_source : {"internal", "vendor", None}, default "internal"
    weighted : bool, optional
        Design weights, as :func:`decompose`.

    Returns
    -------
    pandas.DataFrame
        ``error_type, *by, n_base, n_cur, rate_base, rate_cur, change,
        share_of_change``: raw error counts; ``rate_*`` the errors of the row
        per audit of the period (so the rates of all rows add up to the error
        rate, 1 − accuracy); ``change`` their difference, which adds up to
        minus the change of accuracy; ``share_of_change`` the row's share of
        the change of the error rate. Sorted by decreasing ``|change|``.
    """
    spec = METRIC_SPECS["accuracy"]
    cols = [by] if isinstance(by, str) else list(by)
    if cols:
        check_dimensions(cols, spec)
    base, cur = check_periods(baseline, current)
    qa_source = check_qa_source(qa_source)
    t = metric_table(ds, spec, market, (base, cur), qa_source)
    if where is not None:
        t = t.filter(filter_expr(t, where, spec, "where"))
    t = t.mutate(
        _etype=ibis.cases(
            (t.over_enforcement, "over_enforcement"),
            (t.under_enforcement, "under_enforcement"),
            (t.wrong_policy, "wrong_policy"),
            else_="correct",
        ),
        _stake=ibis.ifelse(t.qa_enforced, t.qa_policy, t.policy),
    )
    keys = {
        c: (t._stake if c == "policy" else t[c]).cast("string").fill_null(MISSING) for c in cols
    }
    t = t.mutate(**{f"_k_{c}": e for c, e in keys.items()})
    gcols = ["_etype", *[f"_k_{c}" for c in cols], "_period"]
    agg = (
        t.group_by(gcols)
        .aggregate(n=t.count(), sw=t._w.sum(), sw2=(t._w * t._w).sum())
        .to_pandas()
        .rename(columns={f"_k_{c}": c for c in cols})
    )
    agg["_period"] = agg["_period"].astype("int64")
    for p, which, period in ((0, "baseline", base), (1, "current", cur)):
        if not (agg["_period"] == p).any():
            raise QualityLabError(
                MSG_EMPTY_PERIOD.format(
                    what="audited decisions",
                    metric="accuracy",
                    market=market,
                    which=which,
                    period=fmt_period(period),
                )
            )
    use_w = use_weights(agg.assign(n=agg["n"].astype(float)), weighted)
    den = "sw" if use_w else "n"
    totals = agg.groupby("_period")[den].sum().astype(float)
    errs = agg[agg["_etype"] != "correct"]
    wide = errs.pivot_table(
        index=["_etype", *cols], columns="_period", values=["n", den], aggfunc="sum", fill_value=0
    )
    wide.columns = [f"{s}_{p}" for s, p in wide.columns]
    for s in {"n", den}:
        for p in (0, 1):
            if f"{s}_{p}" not in wide:
                wide[f"{s}_{p}"] = 0.0
    wide = wide.reset_index().rename(columns={"_etype": "error_type"})
    out = wide[["error_type", *cols]].copy()
    out["n_base"] = wide["n_0"].astype("int64")
    out["n_cur"] = wide["n_1"].astype("int64")
    out["rate_base"] = wide[f"{den}_0"].astype(float) / totals.loc[0]
    out["rate_cur"] = wide[f"{den}_1"].astype(float) / totals.loc[1]
    out["change"] = out["rate_cur"] - out["rate_base"]
    total_change = float(out["change"].sum())
    out["share_of_change"] = out["change"] / total_change if total_change != 0 else np.nan
    out["_abs"] = -out["change"].abs()
    out = out.sort_values(["_abs", "error_type", *cols], kind="stable")
    return out[["error_type", *cols, *ANATOMY_COLUMNS[1:]]].reset_index(drop=True)
