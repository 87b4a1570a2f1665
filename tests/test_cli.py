"""The command line: exit codes and readable messages."""

from __future__ import annotations

import pandas as pd
import pytest

from qualitylab.cli import main
from tests.conftest import tiny_tables, write_tables


def test_validate_ok(tmp_path, capsys):
    folder = write_tables(tmp_path / "d", tiny_tables())
    assert main(["validate", "--data", str(folder)]) == 0
    assert "Result: OK" in capsys.readouterr().out


def test_validate_fatal_exits_1_and_writes_report(tmp_path, capsys):
    tables = tiny_tables()
    tables["decisions"] = tables["decisions"].drop(columns=["queue"])
    folder = write_tables(tmp_path / "d", tables)
    out = tmp_path / "report.csv"
    assert main(["validate", "--data", str(folder), "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert "FATAL" in text and "no column 'queue'" in text
    assert pd.read_csv(out).check.tolist()[0] == "missing_column"


def test_missing_source_exits_2_without_traceback(tmp_path, capsys):
    assert main(["validate", "--data", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


def test_bad_parameters_exit_2_naming_file_and_key(tmp_path, capsys):
    import shutil

    from tests.conftest import PARAMS

    params = tmp_path / "parameters"
    shutil.copytree(PARAMS, params)
    (params / "markets" / "SG.yaml").write_text("name: S\ntimezone: Mars/Olympus\n")
    folder = write_tables(tmp_path / "d", tiny_tables())
    assert main(["--parameters", str(params), "validate", "--data", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "SG.yaml" in err and "timezone" in err and "Mars/Olympus" in err


def test_scorecard_writes_contract_columns(small_data, tmp_path):
    out = tmp_path / "sc.csv"
    rc = main(
        [
            "scorecard",
            "--data",
            str(small_data),
            "--market",
            "TH",
            "--by",
            "vendor,queue",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    df = pd.read_csv(out)
    expected = [
        "market",
        "vendor",
        "queue",
        "metric",
        "value",
        "n",
        "ci_low",
        "ci_high",
        "target",
        "status",
        "prev_value",
        "delta",
        "p_value",
    ]
    assert list(df.columns[: len(expected)]) == expected
    assert set(df.market) == {"TH"}


def test_scorecard_over_the_whole_range_notes_the_empty_previous_period(tmp_path, capsys):
    # Issue #14: the period before the data has no rows; prev_* stay empty, one note.
    folder = write_tables(tmp_path / "d", tiny_tables())
    out = tmp_path / "sc.csv"
    args = ["scorecard", "--data", str(folder), "--market", "SG", "--by", "vendor"]
    assert main([*args, "--start", "2026-03-02", "--end", "2026-03-02", "--out", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "note: no data in the previous period 2026-03-01..2026-03-01; "
        "prev_value, delta and p_value are empty"
    ]
    df = pd.read_csv(out)
    assert df.prev_value.isna().all()
    vol = df[df.metric == "volume"].set_index("vendor")["value"].to_dict()
    assert vol == {"VendorA": 3.0, "VendorB": 2.0, "inhouse": 1.0}


def test_scorecard_for_a_period_without_data_is_one_error_line(tmp_path, capsys):
    folder = write_tables(tmp_path / "d", tiny_tables())
    args = ["scorecard", "--data", str(folder), "--market", "SG", "--by", "vendor"]
    assert main([*args, "--start", "2026-05-01", "--end", "2026-05-07"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["qualitylab scorecard: error: no data for market SG in 2026-05-01..2026-05-07"]


def test_headline(small_data, capsys):
    assert main(["headline", "--data", str(small_data)]) == 0
    out = capsys.readouterr().out
    assert "SG" in out and "sla_compliance" in out


def test_demo_data_small(tmp_path, capsys):
    rc = main(
        [
            "demo-data",
            "--out",
            str(tmp_path / "d"),
            "--scale",
            "small",
            "--days",
            "14",
            "--markets",
            "SG",
            "--seed",
            "3",
        ]
    )
    assert rc == 0
    assert (tmp_path / "d" / "decisions").is_dir()
    assert main(["validate", "--data", str(tmp_path / "d")]) == 0


def test_rca_writes_ranked_rows_that_add_up(small_data, tmp_path, capsys):
    from qualitylab.cli import RCA_CSV_COLUMNS

    out = tmp_path / "rca.csv"
    args = ["rca", "--data", str(small_data), "--market", "ID", "--metric", "accuracy"]
    assert main([*args, "--current", "2026-11-02:2026-11-08", "--out", str(out)]) == 0
    assert "accuracy ID" in capsys.readouterr().err
    rows = pd.read_csv(out)
    assert list(rows.columns) == RCA_CSV_COLUMNS and len(rows)
    # within each dimension the contributions add up to the same total change,
    # and shares of change are contributions over that total
    totals = rows.groupby("dimension")["contribution"].sum()
    assert totals.max() - totals.min() < 1e-9
    first = rows[rows.dimension == rows.dimension.iloc[0]]
    total = first.contribution.sum()
    assert abs((first.contribution / total - first.share_of_change).abs().max()) < 1e-9


def test_rca_bad_period_is_a_usage_error(small_data, capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        main(["rca", "--data", str(small_data), "--market", "ID", "--current", "2026-11-02"])
    assert exc.value.code == 2
    assert "expected START:END" in capsys.readouterr().err


def test_readiness_fails_exactly_the_planted_check(small_data, tmp_path, capsys):
    from tests.conftest import PARAMS

    out = tmp_path / "ready.csv"
    plan = PARAMS / "launches" / "sg-live-shopping.yaml"
    code = main(["readiness", "--data", str(small_data), "--launch", str(plan), "--out", str(out)])
    assert code == 1
    assert "NOT READY: reporting" in capsys.readouterr().err
    checks = pd.read_csv(out)
    assert checks.loc[checks.status == "fail", "check"].tolist() == ["reporting"]
    assert checks.evidence.notna().all() and checks.owner.notna().all()


def test_capacity_writes_contract_columns(small_data, tmp_path, capsys):
    from qualitylab.capacity import CAPACITY_COLUMNS

    out = tmp_path / "capacity.csv"
    assert (
        main(
            [
                "capacity",
                "--data",
                str(small_data),
                "--market",
                "TH",
                "--out",
                str(out),
                "--horizon",
                "7",
            ]
        )
        == 0
    )
    table = pd.read_csv(out)
    assert list(table.columns) == CAPACITY_COLUMNS
    assert table.is_forecast.any() and (~table.is_forecast).any()
    assert "queue-hours short" in capsys.readouterr().out


def test_sampling_plan_prints_plan_and_summary_and_writes_csv(small_data, tmp_path, capsys):
    out = tmp_path / "plan.csv"
    args = ["sampling-plan", "--data", str(small_data), "--market", "SG", "--budget", "300"]
    assert main([*args, "--drop", "0.08", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "recommended_audits" in text and "accuracy_se" in text and "blind_spots" in text
    assert "weekly budget 300, drop 0.08" in text
    plan = pd.read_csv(out)
    assert int(plan["recommended_audits"].sum()) == 300
    assert {"vendor", "queue", "audits_needed", "current_audits"} <= set(plan.columns)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--market", "NZ"], "'NZ' has no parameters file"),
        (["--market", "SG", "--budget", "0"], "--budget must be a whole number"),
        (["--market", "SG", "--budget", "-5"], "--budget must be a whole number"),
        (["--market", "SG", "--drop", "0"], r"--drop must be in (0, 1)"),
        (["--market", "SG", "--drop", "1.5"], r"--drop must be in (0, 1)"),
        (["--market", "SG", "--weeks", "0"], "--weeks must be >= 1"),
    ],
)
def test_sampling_plan_bad_input_is_one_line_and_exit_2(tmp_path, capsys, extra, message):
    folder = write_tables(tmp_path / "d", tiny_tables())
    assert main(["sampling-plan", "--data", str(folder), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
