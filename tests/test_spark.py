"""The metrics, detection and RCA path on Spark agrees with DuckDB.

The `small` demo data is registered as Spark temporary views under the
contract's names and opened through ibis's PySpark backend
(``open_dataset(ibis.pyspark.connect(spark))``); the same calls run on the
embedded DuckDB dataset. Counts must match exactly and rates to 1e-9. The
quantiles the engines compute themselves (daily response percentiles in
``detect.scan``) are exact on both: ibis compiles them to DuckDB
``quantile_cont`` and Spark ``percentile``, both linear interpolation between
order statistics, so they are compared to 1e-9 relative as well.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qualitylab import open_dataset, scorecard
from qualitylab.detect import scan
from qualitylab.rca import decompose

if shutil.which("java") is None:
    pytest.skip(
        "no Java runtime on PATH: Spark needs one (Debian: apt-get install openjdk-17-jre-headless)",
        allow_module_level=True,
    )

import ibis  # noqa: E402
from pyspark.sql import SparkSession  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")

MARKET = "SG"
RTOL = 1e-9
# sample sizes behind each number (decisions, audits, items): equal, not close
_COUNT_COLUMNS = {"n", "n_base", "n_cur", "n_segments", "group_id"}


@pytest.fixture(scope="module")
def spark():
    session = (
        SparkSession.builder.master("local[2]")
        .appName("qualitylab-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def engines(spark, small_data: Path):
    """The same small dataset on Spark and on DuckDB."""
    for f in sorted(small_data.iterdir()):
        if f.name == "incidents.csv" or f.name.startswith("."):
            continue
        name = f.name.removesuffix(".parquet")
        spark.read.parquet(str(f)).createOrReplaceTempView(name)
    on_spark = open_dataset(ibis.pyspark.connect(spark))
    on_duckdb = open_dataset(small_data)
    assert on_spark.backend.name == "pyspark"
    return on_spark, on_duckdb


def _assert_frames_agree(a: pd.DataFrame, b: pd.DataFrame, keys: list[str], what: str) -> None:
    """Same rows; integer-valued columns equal, floats to RTOL, others equal."""
    assert len(a) == len(b), f"{what}: {len(a)} rows on Spark, {len(b)} on DuckDB"
    a = a.sort_values(keys, kind="stable").reset_index(drop=True)
    b = b.sort_values(keys, kind="stable").reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    for col in a.columns:
        x, y = a[col], b[col]
        integral = pd.api.types.is_numeric_dtype(y) and bool((y.dropna() % 1 == 0).all())
        if col in _COUNT_COLUMNS and integral:  # counts: exactly (hours are sums of floats)
            assert x.tolist() == y.tolist(), f"{what}.{col} differs"
        elif pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x):
            xf, yf = x.to_numpy(float), y.to_numpy(float)
            np.testing.assert_allclose(
                xf, yf, rtol=RTOL, atol=RTOL, equal_nan=True, err_msg=f"{what}.{col}"
            )
        else:
            assert x.astype(str).tolist() == y.astype(str).tolist(), f"{what}.{col} differs"


def test_validation_counts_agree(engines):
    on_spark, on_duckdb = engines
    s, d = on_spark.validate(), on_duckdb.validate()
    assert s.ok and d.ok
    assert s.rows == d.rows
    assert s.quarantined == d.quarantined


def test_scorecard_agrees(engines):
    on_spark, on_duckdb = engines
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = scorecard(on_spark, MARKET, by=["vendor"])
        d = scorecard(on_duckdb, MARKET, by=["vendor"])
    assert s.attrs["period"] == d.attrs["period"]
    assert {"volume", "sla_compliance", "accuracy", "response_p90", "ai_precision"} <= set(
        d["metric"]
    )
    _assert_frames_agree(s, d, ["vendor", "metric"], "scorecard")
    key = ["vendor", "metric"]
    s = s.sort_values(key).reset_index(drop=True)
    d = d.sort_values(key).reset_index(drop=True)
    counts = d["metric"].isin(["volume", "backlog"])
    assert counts.any()
    assert s.loc[counts, "value"].tolist() == d.loc[counts, "value"].tolist()


def test_scan_agrees(engines):
    on_spark, on_duckdb = engines
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = scan(on_spark, MARKET)
        d = scan(on_duckdb, MARKET)
    assert len(d) > 0, "the small data should raise at least one alert"
    keys = ["metric", "dimension", "segment", "start_date", "end_date", "direction"]
    _assert_frames_agree(s, d, keys, "alerts")
    assert s.attrs["period"] == d.attrs["period"]
    assert len(s.attrs["skipped"]) == len(d.attrs["skipped"])


def test_rca_decompose_agrees(engines):
    on_spark, on_duckdb = engines
    kw = {
        "current": ("2026-11-09", "2026-11-22"),
        "baseline": ("2026-10-26", "2026-11-08"),
    }
    for metric in ("accuracy", "sla_compliance"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = decompose(on_spark, metric, MARKET, **kw)
            d = decompose(on_duckdb, metric, MARKET, **kw)
        assert (s.n_base, s.n_cur) == (d.n_base, d.n_cur)
        assert s.rate_cur == pytest.approx(d.rate_cur, rel=RTOL, abs=RTOL)
        assert s.rate_base == pytest.approx(d.rate_base, rel=RTOL, abs=RTOL)
        assert s.pvalue == pytest.approx(d.pvalue, rel=1e-6, abs=RTOL)
        _assert_frames_agree(s.segments, d.segments, ["dimension", "segment"], f"rca {metric}")
        _assert_frames_agree(s.totals, d.totals, ["dimension"], f"rca {metric} totals")
