"""One pass per table (issue #20): scorecard_kpis equals the metric families it fuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qualitylab import metrics as m
from qualitylab.aieval import ai_metrics
from qualitylab.demo import generate
from qualitylab.scorecard import scorecard, scorecard_kpis
from qualitylab.sources import open_dataset


@pytest.fixture(scope="module")
def reshaped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shaped unlike the demo: a stratum column, null weights, TH without staffing, young MY."""
    folder = tmp_path_factory.mktemp("kpis")
    generate(folder, scale="small", seed=7, days=40, markets=["SG", "TH"], young_market="MY")
    audits = pd.read_parquet(folder / "qa_audits.parquet")
    rng = np.random.default_rng(3)
    audits["stratum"] = np.where(rng.random(len(audits)) < 0.5, "hi", "lo")
    audits.loc[audits.index[::7], "sample_weight"] = np.nan
    audits.to_parquet(folder / "qa_audits.parquet", index=False)
    staff = pd.read_parquet(folder / "staffing.parquet")
    staff[staff["market"] != "TH"].to_parquet(folder / "staffing.parquet", index=False)
    return folder


def _families(ds, market, by, period, threshold):
    kw = {"market": market, "by": by, "start": period.start, "end": period.end}
    params = ds.params.market(market) if market else ds.params.defaults
    thr = params.ai_threshold if threshold is None else threshold
    parts = [m.operational_metrics(ds, **kw), m.ai_workflow_metrics(ds, **kw)]
    parts.append(m.qa_metrics(ds, **kw))
    align = m.qa_alignment(ds, **kw)
    parts.append(align[align["metric"] == "qa_alignment"].drop(columns=["p_value"]))
    parts.append(ai_metrics(ds, threshold=thr, **kw))
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else None


def _sorted(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return frame.sort_values([*by, "metric"], kind="stable").reset_index(drop=True)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(
    ("market", "by"),
    [("SG", ["vendor", "queue"]), ("TH", []), ("MY", ["queue", "date"]), (None, ["market"])],
)
def test_kpis_equal_the_families_for_each_period(reshaped, market, by):
    ds = open_dataset(reshaped)
    full = m.resolve_period(ds, market=market, start=None, end=None)
    cur = m.Period(full.end - pd.Timedelta(days=13), full.end)
    prev = cur.previous()
    fused = scorecard_kpis(ds, market=market, by=by, periods=[cur, prev])
    assert len(fused) == 2
    for got, period in zip(fused, (cur, prev), strict=True):
        want = _families(ds, market, by, period, None)
        if want is None:  # a young market: nothing before its first day
            assert got.empty
            continue
        pd.testing.assert_frame_equal(
            _sorted(got, by),
            _sorted(want, by),
            check_dtype=False,
            rtol=1e-12,
            atol=1e-15,
        )


@pytest.mark.filterwarnings("ignore")
def test_gap_between_periods_is_left_out(reshaped):
    """Periods that do not touch: rows between them belong to neither."""
    ds = open_dataset(reshaped)
    full = m.resolve_period(ds, market="SG", start=None, end=None)
    a = m.Period(full.end - pd.Timedelta(days=6), full.end)
    b = m.Period(full.end - pd.Timedelta(days=27), full.end - pd.Timedelta(days=21))
    (ka, kb) = scorecard_kpis(ds, market="SG", by=["vendor"], periods=[a, b])
    for got, period in ((ka, a), (kb, b)):
        want = _families(ds, "SG", ["vendor"], period, None)
        vol = got[got.metric == "volume"].set_index("vendor")["value"].sort_index()
        ref = want[want.metric == "volume"].set_index("vendor")["value"].sort_index()
        pd.testing.assert_series_equal(vol, ref)


@pytest.mark.filterwarnings("ignore")
def test_a_slice_remembers_and_callers_cannot_corrupt_it(reshaped):
    ds = open_dataset(reshaped)
    first = scorecard(ds, "SG", by=["vendor"])
    sliced = ds.for_market("SG")
    remembered = [k for k in sliced._memo if k[0] == "scorecard_kpis"]  # noqa: SLF001
    assert len(remembered) == 1
    first.loc[:, "value"] = -1.0  # the caller's copy
    again = scorecard(ds, "SG", by=["vendor"])
    assert (again["value"].dropna() >= 0).all()
    sliced._memo.clear()  # noqa: SLF001
    fresh = scorecard(ds, "SG", by=["vendor"])
    pd.testing.assert_frame_equal(again, fresh)


def test_unsliced_datasets_do_not_remember(reshaped):
    ds = open_dataset(reshaped)
    calls = []
    assert ds.remember("k", lambda: calls.append(1) or len(calls)) == 1
    assert ds.remember("k", lambda: calls.append(1) or len(calls)) == 2


def test_kept_table_is_dropped_after_the_block(reshaped):
    ds = open_dataset(reshaped)
    table = ds.table("qa_audits")  # its typed view is made here
    before = set(ds.backend.list_tables())
    with ds.kept(table) as audits:
        inside = set(ds.backend.list_tables()) - before
        assert len(inside) == 1
        assert int(audits.count().to_pyarrow().as_py()) > 0
    assert set(ds.backend.list_tables()) == before
