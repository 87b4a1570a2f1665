"""The live queue watch's tick on Spark (ibis PySpark backend) agrees with DuckDB.

Beside ``tests/test_spark.py``: the `small` demo data registered as Spark
temporary views, ``local[2]``. The tick's engine work (the per-queue counts
over a bounded ``created_at`` window, ``now`` as the last ``created_at``, the
queues, the escalations) must give the same numbers; counts exactly.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qualitylab import open_dataset
from qualitylab.watch import TICK_COLUMNS, default_now, tick, watch_plan

if shutil.which("java") is None:
    pytest.skip(
        "no Java runtime on PATH: Spark needs one (Debian: apt-get install openjdk-17-jre-headless)",
        allow_module_level=True,
    )

import ibis  # noqa: E402
from pyspark.sql import SparkSession  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")

MARKET = "SG"


@pytest.fixture(scope="module")
def engines(small_data: Path):
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("qualitylab-watch-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    for f in sorted(small_data.iterdir()):
        if f.name == "incidents.csv" or f.name.startswith("."):
            continue
        spark.read.parquet(str(f)).createOrReplaceTempView(f.name.removesuffix(".parquet"))
    on_spark = open_dataset(ibis.pyspark.connect(spark))
    assert on_spark.backend.name == "pyspark"
    yield on_spark, open_dataset(small_data)
    spark.stop()


def test_tick_agrees_on_spark(engines):
    on_spark, on_duckdb = engines
    now = default_now(on_duckdb, MARKET)
    assert default_now(on_spark, MARKET) == now
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = watch_plan(on_duckdb, MARKET, now)
    for at in (now, now - pd.Timedelta(hours=5, minutes=7)):
        s = tick(on_spark, MARKET, now=at, plan=plan)
        d = tick(on_duckdb, MARKET, now=at, plan=plan)
        assert list(s.columns) == list(d.columns) == TICK_COLUMNS
        assert s["queue"].tolist() == d["queue"].tolist() and len(d) == 4
        assert d["arrivals_60m"].sum() > 0 and d["open_items"].sum() > 0
        for col in TICK_COLUMNS[3:]:
            x, y = s[col].to_numpy(float), d[col].to_numpy(float)
            if pd.api.types.is_integer_dtype(d[col]):
                assert x.tolist() == y.tolist(), col
            else:
                np.testing.assert_allclose(x, y, rtol=1e-9, equal_nan=True, err_msg=col)
