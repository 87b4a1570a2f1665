"""Opening data and validating it against the contract.

Each bad input must give a specific message naming table, column, count and an
example, or a visible quarantine.
"""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest

from qualitylab import DataContractError
from qualitylab.sources import REPORT_COLUMNS, open_dataset
from tests.conftest import tiny_tables, write_tables


def _report(folder, **kw):
    return open_dataset(folder, **kw).validate()


def _row(report, table, check, column=None):
    f = report.frame
    sel = f[(f["table"] == table) & (f["check"] == check)]
    if column is not None:
        sel = sel[sel["column"] == column]
    assert len(sel) == 1, f"expected one {table}/{check} row in\n{report.frame}"
    return sel.iloc[0]


def _mutated(tmp_path, table, fn, fmt="parquet"):
    tables = tiny_tables()
    tables[table] = fn(tables[table].copy())
    return write_tables(tmp_path / "bad", tables, fmt)


# --- the valid case --------------------------------------------------------


def test_tiny_dataset_is_valid(tiny):
    report = _report(tiny)
    assert report.ok
    assert list(report.frame.columns) == REPORT_COLUMNS
    assert report.rows["decisions"] == 8
    assert report.quarantined["decisions"] == 0
    assert set(report.frame["severity"]) <= {"info"}  # only absent optional tables


def test_tables_are_lazy_ibis_expressions(tiny):
    import ibis.expr.types as ir

    ds = open_dataset(tiny)
    assert isinstance(ds.table("decisions"), ir.Table)
    assert ds.has("qa_audits") and not ds.has("calibration")
    assert ds.tables == ("decisions", "qa_audits", "staffing", "events")


def test_csv_folder_is_equivalent_to_parquet(tmp_path):
    pq = write_tables(tmp_path / "pq", tiny_tables())
    csv = write_tables(tmp_path / "csv", tiny_tables(), "csv")
    a = open_dataset(pq).table("decisions").order_by("decision_id").to_pandas()
    b = open_dataset(csv).table("decisions").order_by("decision_id").to_pandas()
    assert open_dataset(csv).validate().ok
    pd.testing.assert_series_equal(a["ai_score"], b["ai_score"])
    assert (a["created_at"] == b["created_at"]).all()
    assert a["decided_at"].isna().sum() == b["decided_at"].isna().sum() == 1


def test_parquet_folder_of_parts(tmp_path):
    tables = tiny_tables()
    folder = tmp_path / "parts"
    (folder / "decisions").mkdir(parents=True)
    d = tables.pop("decisions")
    d.iloc[:4].to_parquet(folder / "decisions" / "part-0.parquet", index=False)
    d.iloc[4:].to_parquet(folder / "decisions" / "part-1.parquet", index=False)
    write_tables(folder, tables)
    ds = open_dataset(folder)
    assert ds.table("decisions").count().to_pyarrow().as_py() == 8
    assert ds.validate().ok


def test_duckdb_database_file(tmp_path):
    path = tmp_path / "qa.duckdb"
    con = duckdb.connect(str(path))
    for name, df in tiny_tables().items():
        con.register("df", df)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM df")
        con.unregister("df")
    con.close()
    report = open_dataset(path).validate()
    assert report.ok
    assert report.rows["qa_audits"] == 5


def test_duckdb_database_file_with_bad_rows(tmp_path):
    path = tmp_path / "bad.duckdb"
    con = duckdb.connect(str(path))
    tables = tiny_tables()
    tables["decisions"].loc[2, "ai_score"] = 1.7
    for name, df in tables.items():
        con.register("df", df)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM df")
        con.unregister("df")
    con.close()
    report = open_dataset(path).validate()
    row = _row(report, "decisions", "range", "ai_score")
    assert row["bad_rows"] == 1 and "1.7" in row["example"]


def test_ibis_url_and_connection(tmp_path):
    import ibis

    path = tmp_path / "qa.duckdb"
    con = duckdb.connect(str(path))
    df = tiny_tables()["decisions"]
    con.register("df", df)
    con.execute("CREATE TABLE decisions AS SELECT * FROM df")
    con.close()
    assert open_dataset(f"duckdb://{path}").validate().ok
    assert open_dataset(ibis.duckdb.connect(str(path), read_only=True)).validate().ok


def test_user_files_are_not_modified(tmp_path):
    folder = _mutated(tmp_path, "decisions", lambda d: d.assign(ai_score=d.ai_score * 2))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    open_dataset(folder).validate()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


# --- fatal problems ----------------------------------------------------------


def test_missing_required_column(tmp_path):
    folder = _mutated(tmp_path, "decisions", lambda d: d.drop(columns=["routing"]))
    row = _row(_report(folder), "decisions", "missing_column", "routing")
    assert row["severity"] == "fatal"
    assert "no column 'routing'" in row["message"]
    with pytest.raises(DataContractError, match="routing"):
        open_dataset(folder).table("decisions")


def test_wrong_type(tmp_path):
    folder = _mutated(tmp_path, "decisions", lambda d: d.assign(created_at=range(len(d))))
    row = _row(_report(folder), "decisions", "wrong_type", "created_at")
    assert "expected timestamp" in row["message"] and "int64" in row["message"]


def test_unparseable_timestamp_in_csv(tmp_path):
    def bad(d):
        d = d.astype({"created_at": "object"})
        d.loc[3, "created_at"] = "yesterday at noon"
        return d

    folder = _mutated(tmp_path, "decisions", bad, "csv")
    report = _report(folder)
    row = _row(report, "decisions", "unparseable", "created_at")
    assert row["bad_rows"] == 1 and row["severity"] == "fatal"
    assert "decision_id=d3" in row["example"] and "yesterday at noon" in row["example"]
    with pytest.raises(DataContractError, match="yesterday at noon"):
        report.raise_if_fatal()


def test_unparseable_number_in_csv(tmp_path):
    def bad(d):
        d = d.astype({"ai_score": "object"})
        d.loc[1, "ai_score"] = "0,7"
        return d

    row = _row(_report(_mutated(tmp_path, "decisions", bad, "csv")), "decisions", "unparseable")
    assert row["column"] == "ai_score" and "0,7" in row["example"]


def test_naive_timestamps_in_parquet(tmp_path):
    folder = _mutated(
        tmp_path, "decisions", lambda d: d.assign(created_at=d.created_at.dt.tz_localize(None))
    )
    row = _row(_report(folder), "decisions", "naive_timestamp", "created_at")
    assert "no time zone" in row["message"]
    assert _report(folder, assume_utc=True).ok


def test_naive_timestamps_in_csv(tmp_path):
    folder = _mutated(
        tmp_path,
        "decisions",
        lambda d: d.assign(created_at=d.created_at.dt.strftime("%Y-%m-%d %H:%M:%S")),
        "csv",
    )
    row = _row(_report(folder), "decisions", "naive_timestamp", "created_at")
    assert row["bad_rows"] == 8 and "without a UTC offset" in row["message"]


def test_duplicate_decision_id(tmp_path):
    def bad(d):
        d.loc[5, "decision_id"] = "d4"
        return d

    row = _row(_report(_mutated(tmp_path, "decisions", bad)), "decisions", "duplicate_key")
    assert row["bad_rows"] == 2 and row["example"] == "decision_id=d4"
    assert row["severity"] == "fatal"


def test_null_key(tmp_path):
    def bad(d):
        d.loc[0, "decision_id"] = None
        return d

    row = _row(_report(_mutated(tmp_path, "decisions", bad)), "decisions", "null", "decision_id")
    assert row["severity"] == "fatal" and row["bad_rows"] == 1


def test_empty_table(tmp_path):
    folder = _mutated(tmp_path, "decisions", lambda d: d.iloc[:0])
    row = _row(_report(folder), "decisions", "empty_table")
    assert row["severity"] == "fatal" and "no rows" in row["message"]


def test_missing_decisions_table(tmp_path):
    tables = tiny_tables()
    del tables["decisions"]
    folder = write_tables(tmp_path / "nodec", tables)
    row = _row(_report(folder), "decisions", "missing_table")
    assert row["severity"] == "fatal"
    with pytest.raises(DataContractError, match="'decisions' is not in"):
        open_dataset(folder).table("decisions")


def test_source_that_does_not_exist(tmp_path):
    with pytest.raises(DataContractError, match="does not exist"):
        open_dataset(tmp_path / "nowhere")


def test_folder_without_tables(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataContractError, match="none of the contract's tables"):
        open_dataset(tmp_path / "empty")


def test_corrupt_parquet(tmp_path):
    folder = write_tables(tmp_path / "c", tiny_tables())
    (folder / "qa_audits.parquet").write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(DataContractError, match=r"qa_audits.*could not be read"):
        open_dataset(folder)


def test_csv_not_utf8(tmp_path):
    folder = write_tables(tmp_path / "enc", tiny_tables(), "csv")
    text = (folder / "events.csv").read_text()
    (folder / "events.csv").write_bytes(
        text.replace("mod-v3", "mod-v3 caf\u00e9").encode("latin-1")
    )
    with pytest.raises(DataContractError, match=r"events.*not UTF-8.*byte"):
        open_dataset(folder)


def test_ambiguous_table_files(tmp_path):
    folder = write_tables(tmp_path / "amb", tiny_tables())
    tiny_tables()["events"].to_csv(folder / "events.csv", index=False)
    with pytest.raises(DataContractError, match="ambiguous"):
        open_dataset(folder)


def test_unknown_table_name(tiny):
    with pytest.raises(DataContractError, match="unknown table 'decision'"):
        open_dataset(tiny).table("decision")


# --- quarantined rows -----------------------------------------------------------


def test_ai_score_out_of_range_is_quarantined(tmp_path):
    def bad(d):
        d.loc[2, "ai_score"] = 1.7
        return d

    folder = _mutated(tmp_path, "decisions", bad)
    report = _report(folder)
    row = _row(report, "decisions", "range", "ai_score")
    assert row["severity"] == "error" and row["bad_rows"] == 1
    assert row["example"] == "decision_id=d2, ai_score=1.7"
    assert "quarantined" in row["message"]
    assert report.ok and report.quarantined["decisions"] == 1
    ids = open_dataset(folder).table("decisions").decision_id.to_pandas()
    assert "d2" not in set(ids) and len(ids) == 7
    assert len(open_dataset(folder).table("decisions", quarantine=False).to_pandas()) == 8


def test_quarantine_filters_only_the_checks_that_fail(tmp_path, tiny):
    """Checks no row fails are left out of the filter; failing ones still quarantine."""

    def bad(d):
        d.loc[1, "routing"] = "robot"
        d.loc[2, "ai_score"] = 1.7
        return d

    folder = _mutated(tmp_path, "decisions", bad)
    for validate_first in (False, True):
        ds = open_dataset(folder)
        if validate_first:
            ds.validate()
        ids = set(ds.table("decisions").decision_id.to_pandas())
        assert ids == {f"d{i}" for i in range(8)} - {"d1", "d2"}
        sql = ds.backend.raw_sql(
            "select sql from duckdb_views() where view_name like 'ql_decisions%'"
        ).fetchall()[-1][0]
        assert "ai_score" in sql.split("WHERE", 1)[1]
        assert "'ai_auto'" in sql.split("WHERE", 1)[1]  # routing vocabulary kept
        assert "regexp_matches" not in sql  # market format: no row fails it
    clean = open_dataset(tiny)
    for name in ("decisions", "qa_audits"):  # audits: no unknown decision, no IN filter
        clean.table(name)
        sql = clean.backend.raw_sql(
            f"select sql from duckdb_views() where view_name like 'ql_{name}%'"
        ).fetchall()[-1][0]
        assert "WHERE" not in sql, name


def test_check_memo_follows_the_files(tmp_path, monkeypatch):
    """Which checks fail is remembered per file fingerprint; changed files are re-checked."""
    from qualitylab.sources import check_memo_dir

    monkeypatch.setenv("QUALITYLAB_CACHE_DIR", str(tmp_path / "cache"))
    folder = write_tables(tmp_path / "data", tiny_tables())
    assert len(open_dataset(folder).table("decisions").to_pandas()) == 8
    memos = sorted(check_memo_dir().glob("decisions-*.json"))
    assert len(memos) == 1 and not any(json.loads(memos[0].read_text()).values())
    # a second process-equivalent open reads the memo and gives the same table
    assert len(open_dataset(folder).table("decisions").to_pandas()) == 8
    assert len(list(check_memo_dir().glob("decisions-*.json"))) == 1
    # the file changes (a bad score): new fingerprint, new pass, the row is quarantined
    d = tiny_tables()["decisions"]
    d.loc[2, "ai_score"] = 1.7
    d.to_parquet(folder / "decisions.parquet", index=False)
    ids = set(open_dataset(folder).table("decisions").decision_id.to_pandas())
    assert "d2" not in ids and len(ids) == 7
    assert len(list(check_memo_dir().glob("decisions-*.json"))) == 2
    monkeypatch.setenv("QUALITYLAB_CACHE_DIR", "off")
    assert check_memo_dir() is None
    assert len(open_dataset(folder).table("decisions").to_pandas()) == 7


def test_unknown_routing(tmp_path):
    def bad(d):
        d.loc[1, "routing"] = "robot"
        return d

    row = _row(_report(_mutated(tmp_path, "decisions", bad)), "decisions", "vocabulary", "routing")
    assert "robot" in row["example"] and "human, ai_assisted, ai_auto" in row["message"]


def test_unknown_action(tmp_path):
    def bad(d):
        d.loc[1, "action"] = "delete"
        return d

    row = _row(_report(_mutated(tmp_path, "decisions", bad)), "decisions", "vocabulary", "action")
    assert row["bad_rows"] == 1 and "delete" in row["example"]


def test_unknown_qa_source(tmp_path):
    def bad(d):
        d.loc[0, "qa_source"] = "external"
        return d

    row = _row(_report(_mutated(tmp_path, "qa_audits", bad)), "qa_audits", "vocabulary")
    assert row["column"] == "qa_source" and "audit_id=a0" in row["example"]


def test_decided_before_created(tmp_path):
    def bad(d):
        d.loc[4, "decided_at"] = d.loc[4, "created_at"] - pd.Timedelta(hours=1)
        return d

    row = _row(_report(_mutated(tmp_path, "decisions", bad)), "decisions", "decided_before_created")
    assert row["bad_rows"] == 1 and "decision_id=d4" in row["example"]


def test_audit_of_missing_decision(tmp_path):
    def bad(a):
        a.loc[4, "decision_id"] = "d999"
        return a

    folder = _mutated(tmp_path, "qa_audits", bad)
    report = _report(folder)
    row = _row(report, "qa_audits", "unknown_decision")
    assert row["example"] == "audit_id=a4, decision_id=d999"
    assert report.quarantined["qa_audits"] == 1
    assert open_dataset(folder).table("qa_audits").count().to_pyarrow().as_py() == 4


def test_non_positive_sample_weight(tmp_path):
    def bad(a):
        a.loc[1, "sample_weight"] = 0.0
        return a

    row = _row(_report(_mutated(tmp_path, "qa_audits", bad)), "qa_audits", "range", "sample_weight")
    assert "<= 0" in row["message"]


def test_negative_hours(tmp_path):
    def bad(s):
        s.loc[0, "productive_hours"] = -2.0
        return s

    row = _row(_report(_mutated(tmp_path, "staffing", bad)), "staffing", "range")
    assert row["column"] == "productive_hours" and "-2" in row["example"]


def test_market_code_bad_format(tmp_path):
    def bad(d):
        d.loc[0, "market"] = "sg"
        return d

    row = _row(_report(_mutated(tmp_path, "decisions", bad)), "decisions", "format", "market")
    assert "sg" in row["example"]


def test_market_without_parameters_file(tmp_path):
    def bad(d):
        d.loc[0, "market"] = "NZ"
        return d

    row = _row(_report(_mutated(tmp_path, "decisions", bad)), "decisions", "unknown_market")
    assert "NZ" in row["example"] and "parameters/markets" in row["message"]


def test_null_in_required_column_is_quarantined(tmp_path):
    def bad(d):
        d.loc[3, "vendor"] = None
        return d

    row = _row(_report(_mutated(tmp_path, "decisions", bad)), "decisions", "null", "vendor")
    assert row["severity"] == "error" and row["bad_rows"] == 1


def test_policy_action_mismatch_is_a_warning(tmp_path):
    def bad(d):
        d.loc[0, "policy"] = "spam"
        return d

    report = _report(_mutated(tmp_path, "decisions", bad))
    row = _row(report, "decisions", "policy_action_mismatch")
    assert row["severity"] == "warning" and report.quarantined["decisions"] == 0


def test_report_text_is_readable(tmp_path):
    def bad(d):
        d.loc[2, "ai_score"] = 1.7
        return d

    text = _report(_mutated(tmp_path, "decisions", bad)).to_text()
    assert "QUARANTINED" in text and "decisions.ai_score: 1 of 8 rows" in text


def test_for_market_slices_every_table_once(small_data):
    ds = open_dataset(small_data)
    sg = ds.for_market("SG")
    assert sg.market == "SG" and ds.for_market("SG") is sg  # made once per dataset
    assert sg.table("decisions").market.nunique().to_pyarrow().as_py() == 1
    n_sg = ds.table("decisions").filter(lambda t: t.market == "SG").count().to_pyarrow().as_py()
    assert sg.table("decisions").count().to_pyarrow().as_py() == n_sg
    # audits follow their decisions; events keep the all-market ones
    audits = sg.table("qa_audits").to_pandas()
    dec_ids = set(sg.table("decisions").decision_id.to_pandas())
    assert len(audits) and set(audits.decision_id) <= dec_ids
    assert set(sg.table("events").market.to_pandas()) <= {"SG", "*"}
    with pytest.raises(ValueError, match="already sliced to SG"):
        sg.for_market("ID")


def test_market_slices_are_dropped_when_no_longer_used(small_data, monkeypatch):
    """The dataset keeps the latest slices; older ones go with their temp tables."""
    import gc

    from qualitylab import sources

    monkeypatch.setattr(sources, "_SLICES_KEPT", 1)
    ds = open_dataset(small_data)

    def slice_tables() -> set[str]:
        rows = ds.backend.raw_sql(
            "select table_name from duckdb_tables() where temporary and table_name like 'ql_%'"
        ).fetchall()
        return {r[0] for r in rows}

    held = ds.for_market("SG")  # a caller keeps this one
    n_sg = held.table("decisions").count().to_pyarrow().as_py()
    ds.for_market("ID")
    ds.for_market("TH")  # evicts ID from the cache; nobody holds it
    gc.collect()
    names = slice_tables()
    assert any("_SG_" in n for n in names) and any("_TH_" in n for n in names)
    assert not any("_ID_" in n for n in names)
    # the held slice still works, and asking again for ID makes a fresh one
    assert held.table("decisions").count().to_pyarrow().as_py() == n_sg
    assert ds.for_market("ID").table("decisions").market.nunique().to_pyarrow().as_py() == 1


# --------------------------------------------------------------------------- #
# contract checks stored with the data (the runner's market caches)
# --------------------------------------------------------------------------- #
def _duckdb_of(path, tables):
    con = duckdb.connect(str(path))
    for name, df in tables.items():
        con.register("df", df)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM df")
        con.unregister("df")
    con.close()


def _store_checks(path):
    from qualitylab.data.sources import CHECKS_TABLE

    opened = open_dataset(path)
    results = opened.check_results()
    opened.backend.disconnect()
    con = duckdb.connect(str(path))
    con.register("df", results)
    con.execute(f"CREATE TABLE {CHECKS_TABLE} AS SELECT * FROM df")
    con.unregister("df")
    con.close()
    return results


def test_checks_stored_with_the_data_spare_the_checking_pass(tmp_path, monkeypatch):
    from qualitylab.data import sources

    path = tmp_path / "cache.duckdb"
    tables = tiny_tables()
    tables["decisions"].loc[2, "ai_score"] = 1.7  # a row the quarantine drops
    _duckdb_of(path, tables)
    fresh = open_dataset(path)
    expected = {t: fresh.table(t).count().to_pyarrow().as_py() for t in fresh.tables}
    fresh.backend.disconnect()
    results = _store_checks(path)
    assert set(results["table"]) == set(fresh.tables)
    assert (
        results[(results["table"] == "decisions") & results["failing"]]["check"]
        .str.contains("ai_score")
        .any()
    )

    passes = []
    real = sources._count_failing
    monkeypatch.setattr(
        sources, "_count_failing", lambda *a, **k: passes.append(1) or real(*a, **k)
    )
    ds = open_dataset(path)
    got = {t: ds.table(t).count().to_pyarrow().as_py() for t in ds.tables}
    assert passes == []  # no checking pass: the stored record answered
    assert got == expected  # the bad row is still quarantined, from the stored record


def test_stored_checks_are_ignored_once_a_table_changed(tmp_path, monkeypatch):
    from qualitylab.data import sources

    path = tmp_path / "cache.duckdb"
    _duckdb_of(path, tiny_tables())
    fresh = open_dataset(path)
    clean = fresh.table("decisions").count().to_pyarrow().as_py()
    fresh.backend.disconnect()
    results = _store_checks(path)
    assert not results["failing"].any()
    con = duckdb.connect(str(path))  # a row breaking a check, added after the record
    con.execute(
        "INSERT INTO decisions SELECT * REPLACE (decision_id || 'x' AS decision_id, 1.7 AS ai_score) FROM decisions LIMIT 1"
    )
    con.close()
    passes = []
    real = sources._count_failing
    monkeypatch.setattr(
        sources, "_count_failing", lambda *a, **k: passes.append(1) or real(*a, **k)
    )
    ds = open_dataset(path)
    assert ds.table("decisions").count().to_pyarrow().as_py() == clean  # quarantined
    assert passes  # the decisions were checked again


def test_kept_tables_keep_the_expressions_types(tmp_path):
    """A kept result has the expression's types: DuckDB would store 1.0 as DECIMAL(2,1)."""
    import ibis

    tables = tiny_tables()
    scores = tables["decisions"]["ai_score"]
    tables["decisions"]["ai_score"] = scores.where(scores.isna(), scores / 7)  # many decimals
    ds = open_dataset(write_tables(tmp_path / "data", tables))
    dec = ds.table("decisions")
    t = dec.mutate(one=ibis.literal(1.0)).select("decision_id", "ai_score", "one")
    t = t.mutate(product=t.ai_score * t.one)

    def products(table):
        frame = table.mutate(again=table.ai_score * table.one).to_pandas()
        return frame.set_index("decision_id").sort_index()[["product", "again"]]

    want = products(t)
    assert want["again"].dropna().round(2).ne(want["again"].dropna()).any()  # more than 2 decimals
    with ds.kept(t) as kept:
        assert kept.schema() == t.schema()
        pd.testing.assert_frame_equal(products(kept), want)
