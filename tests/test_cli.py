"""The command line: exit codes and readable messages."""

from __future__ import annotations

import pandas as pd

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
