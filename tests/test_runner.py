"""The scheduled runner: validation first, failure isolation, atomic replacement, hub."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from browser_check import CHROMIUM, Chromium

from qualitylab import ParameterError
from qualitylab.runner import NOTEBOOKS, PORTFOLIO, check_notebook_parameters, redact, run

PARAMS_CELL = """
market: str = "SG"  # market
data: str = ""  # data
as_of: str = ""  # as of
weeks: int = 4  # weeks
parameters: str = ""  # parameters folder
interactive: bool = True  # widgets
"""


def _fake_notebook(path: Path, body: str, params: str = PARAMS_CELL) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params.strip())
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Fake\n\n## Section"),
        cell,
        nbformat.v4.new_code_cell(body),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, str(path))


@pytest.fixture
def fake_notebooks(tmp_path):
    """Fast stand-ins for the real notebooks; the ai notebook fails for ID."""
    folder = tmp_path / "nbs"
    folder.mkdir()
    body = (
        "import qualitylab as ql\n"
        "ds = ql.open_dataset(data, parameters=parameters)\n"
        "print(market, ds.table('decisions').count().to_pyarrow().as_py())\n"
        "from IPython.display import HTML\n"
        "HTML('<p>' + __import__('html').escape(market) + '</p>')"
    )
    for key, name in NOTEBOOKS.items():
        extra = (
            "\nif market == 'ID':\n    raise ValueError('boom for ' + market)"
            if key == "ai"
            else ""
        )
        _fake_notebook(folder / name, body + extra)
    port_params = PARAMS_CELL.replace('market: str = "SG"  # market', 'markets: str = "all"  # m')
    port_params += 'history: str = ""  # history\n'
    _fake_notebook(folder / PORTFOLIO, "print(markets)", port_params)
    return folder


def test_redact_hides_passwords():
    assert redact("postgres://bob:hunter2@db/x and trino://a:b@h") == (
        "postgres://bob:***@db/x and trino://a:***@h"
    )
    assert redact("/data/demo") == "/data/demo"


def test_unknown_notebook_parameter_is_refused(tmp_path):
    nbp = tmp_path / "n.ipynb"
    _fake_notebook(nbp, "pass")
    with pytest.raises(ParameterError, match=r"n\.ipynb: unknown notebook parameter 'colour'"):
        check_notebook_parameters(nbp, {"market": "SG", "colour": "red"})


def test_unknown_market_and_notebook_names(small_data, fake_notebooks, tmp_path):
    with pytest.raises(ParameterError, match="unknown market 'NZ'"):
        run(str(small_data), markets="NZ", out=tmp_path / "r", notebooks_dir=fake_notebooks)
    with pytest.raises(ParameterError, match="unknown notebook 'scorecards'"):
        run(
            str(small_data),
            notebooks="scorecards",
            out=tmp_path / "r",
            notebooks_dir=fake_notebooks,
        )


def test_run_isolates_failures_and_keeps_last_good_report(small_data, fake_notebooks, tmp_path):
    out = tmp_path / "reports"
    first = run(
        str(small_data),
        markets="SG,ID",
        notebooks="scorecard,ai",
        out=out,
        jobs=2,
        notebooks_dir=fake_notebooks,
        progress=False,
    )
    assert not first.ok
    status = {(r.market, r.notebook): r.status for r in first.results}
    assert status[("SG", "scorecard")] == "ok" and status[("SG", "ai")] == "ok"
    assert status[("ID", "ai")] == "failed" and status[("ALL", "portfolio")] == "ok"
    failure = next(r for r in first.results if r.market == "ID" and r.notebook == "ai")
    assert failure.error["ename"] == "ValueError" and "boom for ID" in failure.error["evalue"]
    assert failure.error["cell_index"] is not None

    day = first.out
    sg = day / "SG"
    for f in (
        "scorecard.ipynb",
        "scorecard.html",
        "scorecard.stakeholder.html",
        "alerts.csv",
        "scorecard.csv",
    ):
        assert (sg / f).is_file(), f
    # ID's good notebook lands; its failed one never lands as if it were good
    assert (day / "ID" / "scorecard.stakeholder.html").is_file()
    assert not (day / "ID" / "ai.html").exists()
    assert (day / ".failed" / first.run_id / "ID" / "ai.ipynb").is_file()
    manifest = json.loads((day / "manifest.json").read_text())
    assert {"run_id", "qualitylab_version", "data_hash", "jobs"} <= set(manifest)
    assert {j["status"] for j in manifest["jobs"]} == {"ok", "failed"}
    hub = (day / "index.html").read_text()
    assert "boom for ID" in hub and "SG/scorecard.stakeholder.html" in hub
    assert (out / "history.parquet").is_file() and (out / "index.html").is_file()
    alerts = pd.read_csv(sg / "alerts.csv")
    assert list(alerts.columns[:12]) == [
        "market",
        "metric",
        "dimension",
        "segment",
        "start_date",
        "end_date",
        "observed",
        "expected",
        "direction",
        "severity",
        "detector",
        "p_value",
    ]
    stamp = (sg / "scorecard.html").stat().st_mtime_ns

    # A second run where SG fails must not replace SG's last good report.
    broken = fake_notebooks / NOTEBOOKS["scorecard"]
    _fake_notebook(broken, "raise RuntimeError('SG broke')")
    second = run(
        str(small_data),
        markets="SG",
        notebooks="scorecard",
        out=out,
        notebooks_dir=fake_notebooks,
        progress=False,
        portfolio=False,
    )
    assert not second.ok
    assert (sg / "scorecard.html").stat().st_mtime_ns == stamp
    history = pd.read_parquet(out / "history.parquet")
    # one row set per market and date: SG's rows are the second run's, ID's the first's
    assert not history.duplicated(["as_of", "market", "metric"]).any()
    assert set(history.loc[history.market == "SG", "run_id"]) == {second.run_id}
    assert set(history.loc[history.market == "ID", "run_id"]) == {first.run_id}
    jobs = {
        (j["market"], j["notebook"]): j
        for j in json.loads((day / "manifest.json").read_text())["jobs"]
    }
    kept = jobs[("SG", "scorecard")]
    assert kept["status"] == "failed" and kept["run_id"] == second.run_id
    assert kept["last_good"]["run_id"] == first.run_id
    assert jobs[("SG", "ai")]["status"] == "ok" and jobs[("SG", "ai")]["run_id"] == first.run_id
    assert "last good report" in (day / "index.html").read_text()


# --------------------------------------------------------------------------- #
# The hub in a browser: ten markets, every link works, every status shows
# --------------------------------------------------------------------------- #
ALL_MARKETS = ["SG", "ID", "TH", "VN", "PH", "MY", "JP", "KR", "TW", "AU"]


@pytest.fixture(scope="module")
def ten_market_run(tmp_path_factory):
    """A run over all ten markets (small data, fast stand-in notebooks, ID's ai fails)."""
    from qualitylab.demo import generate

    root = tmp_path_factory.mktemp("hub")
    data = root / "data"
    generate(data, scale="small", seed=11, days=42, markets=ALL_MARKETS)
    nbs = root / "nbs"
    nbs.mkdir()
    body = (
        "import qualitylab as ql\n"
        "ds = ql.open_dataset(data, parameters=parameters)\n"
        "print(market, ds.table('decisions').count().to_pyarrow().as_py())\n"
        "if market == 'ID':\n    raise ValueError('boom for ' + market)"
    )
    for name in NOTEBOOKS.values():
        _fake_notebook(nbs / name, body)
    port_params = PARAMS_CELL.replace('market: str = "SG"  # market', 'markets: str = "all"  # m')
    _fake_notebook(nbs / PORTFOLIO, "print(markets)", port_params + 'history: str = ""  # h\n')
    summary = run(
        str(data),
        markets="all",
        notebooks="scorecard",
        out=root / "reports",
        jobs=2,
        notebooks_dir=nbs,
        progress=False,
    )
    return summary, root / "reports"


def test_hub_kpis_are_the_data(ten_market_run):
    """Each market's headline volume and accuracy on the hub, against pandas on the raw rows."""
    import re

    from qualitylab.params import load_parameters
    from qualitylab.report import context
    from qualitylab.runner import HUB_METRICS

    summary, out = ten_market_run
    data = out.parent / "data"
    html = (summary.out / "index.html").read_text(encoding="utf-8")
    dec = pd.read_parquet(data / "decisions")
    qa = pd.read_parquet(data / "qa_audits.parquet")
    qa = qa[qa["qa_source"] == "internal"]
    for code in ALL_MARKETS:
        row = re.search(rf"<tr><th>{code}</th>(.*?)</tr>", html, re.S)
        assert row, code
        cells = re.findall(
            r'<td class="(\w+)" title="[^"]*">([^<]*)<br><small>(\w+)</small></td>', row[1]
        )
        assert len(cells) == len(HUB_METRICS), (code, row[1])
        shown = dict(zip(HUB_METRICS, cells, strict=True))
        assert all(cls == status for cls, _, status in cells), cells
        # the period the run reports on (the last four full weeks before the data's end)
        ctx = context(str(data), code)
        tz = load_parameters().market(code).tz
        d = dec[dec["market"] == code]
        d = d.assign(date=d["created_at"].dt.tz_convert(tz).dt.date)
        d = d[(d["date"] >= ctx.start) & (d["date"] <= ctx.end)]
        assert shown["volume"][1] == f"{len(d):,}", (code, shown["volume"], len(d))
        assert shown["volume"][2] == "na"  # volume has no target
        # accuracy: the design-weighted share of internal audits that agree with the decision
        j = qa.merge(d[d["action"].notna()], on="decision_id")
        enforced, qa_enforced = j["action"] != "no_action", j["qa_action"] != "no_action"
        correct = (enforced == qa_enforced) & (
            ~enforced | (j["policy"].fillna("none") == j["qa_policy"])
        )
        w = j["sample_weight"].fillna(1.0)
        acc = (w * correct).sum() / w.sum()
        assert shown["accuracy"][1] == f"{100 * acc:.1f}%", (code, shown["accuracy"], acc)


def _local_path(url: str) -> Path:
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(url).path))


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed")
def test_hub_in_browser_links_work_and_statuses_show(ten_market_run, tmp_path):
    summary, out = ten_market_run
    assert {r.market for r in summary.results} == {*ALL_MARKETS, "ALL"}
    with Chromium(tmp_path / "profile") as browser:
        root_page = browser.check_page(out / "index.html")
        hub = browser.check_page(summary.out / "index.html")
        for page in (root_page, hub):
            assert page.loaded and not page.problems(), (page.url, page.problems())
        assert (summary.out / "index.html").resolve() in {
            _local_path(u).resolve() for u in root_page.links
        }
        # every market's row shows each notebook's status and its headline KPIs
        from qualitylab.runner import HUB_METRICS

        table = [ln.strip() for ln in hub.text.split("\nReports\n", 1)[1].splitlines()]
        table = [ln for ln in table if ln]
        starts = sorted(table.index(code) for code in ALL_MARKETS)
        statuses = {(r.market, r.notebook): r.status for r in summary.results}
        for i, j in zip(starts, [*starts[1:], len(table)], strict=True):
            code, row = table[i], table[i + 1 : j]
            assert row[0].split()[0] == statuses[(code, "scorecard")], (code, row)
            kpi_statuses = [w for w in row if w in {"green", "amber", "red", "na"}]
            assert len(kpi_statuses) == len(HUB_METRICS), (code, row)
        assert statuses[("ID", "scorecard")] == "failed"
        assert hub.text.count("ok ") >= len(ALL_MARKETS) - 1
        assert hub.text.count("failed") >= 1 and "boom for ID" in hub.text
        # every link resolves to a file on disk, and every linked page opens offline
        targets = {_local_path(u) for u in hub.links if u.startswith("file:")}
        assert not [u for u in hub.links if not u.startswith("file:")]
        expected = {
            summary.out / code / f"{k}{suffix}"
            for code in ALL_MARKETS
            if code != "ID"
            for k in ("scorecard",)
            for suffix in (".html", ".stakeholder.html")
        }
        assert expected <= {t.resolve() for t in targets}
        missing = [t for t in targets if not t.exists()]
        assert not missing, missing
        for target in sorted(t for t in targets if t.suffix == ".html"):
            page = browser.check_page(target, settle_timeout=5)
            assert page.loaded and not page.problems(), (target, page.problems())


# --------------------------------------------------------------------------- #
# Partial data (issue #14): every real notebook completes on a young market and
# on a market without rows in the optional tables; the hub names what was short.
# (Runs with the optional tables absent altogether are in test_partial_data.py.)
# --------------------------------------------------------------------------- #
#: Sections over an emptied optional table, per notebook (report.require_rows).
EMPTIED_SECTIONS = {
    "scorecard": {"Reported by the vendor against measured", "Calibration"},
    "ai": {"Red team"},
    "triage": {"Escalations in the period"},
}


@pytest.fixture(scope="module")
def partial_run(tmp_path_factory):
    """The real notebooks over the young market and the emptied market, with the portfolio."""
    from notebook_runs import EMPTIED_MARKET, NOTEBOOK_DIR, YOUNG_MARKET, partial_data

    root = tmp_path_factory.mktemp("partial")
    data = partial_data(root / "data")
    summary = run(
        str(data),
        markets=f"{EMPTIED_MARKET},{YOUNG_MARKET}",
        notebooks="all",
        out=root / "reports",
        jobs=2,
        notebooks_dir=str(NOTEBOOK_DIR),
        progress=False,
    )
    return summary, data


def _sentence(note: dict) -> str:
    """The note's sentence as the page shows it, once unescaped."""
    return (
        f"{note['section']}</strong>: not shown, too little data ({note['reason'].rstrip('. ')})."
    )


def test_partial_data_run_completes_every_notebook(partial_run):
    from notebook_runs import EMPTIED_MARKET, YOUNG_MARKET

    summary, _ = partial_run
    assert summary.ok, summary.table().to_string()
    codes = (EMPTIED_MARKET, YOUNG_MARKET)
    assert {(r.market, r.notebook) for r in summary.results} == {
        *((c, k) for c in codes for k in NOTEBOOKS),
        ("ALL", "portfolio"),
    }
    for code in codes:  # a market short of data is a success: its reports land
        for key in NOTEBOOKS:
            assert (summary.out / code / f"{key}.stakeholder.html").is_file(), (code, key)
    assert (summary.out / "portfolio" / "portfolio.stakeholder.html").is_file()


def test_partial_data_notes_reach_manifest_pages_and_hub(partial_run):
    import html

    from notebook_runs import EMPTIED_MARKET

    from qualitylab.report import notebook_notes

    summary, _ = partial_run
    manifest = json.loads(summary.manifest.read_text())
    jobs = {(j["market"], j["notebook"]): j for j in manifest["jobs"]}
    for key, sections in EMPTIED_SECTIONS.items():
        notes = {n["section"]: n["reason"] for n in jobs[(EMPTIED_MARKET, key)]["notes"]}
        assert sections <= set(notes), (key, notes)
        for section in sections:
            assert f"has no rows for {EMPTIED_MARKET}" in notes[section]
    hub = (summary.out / "index.html").read_text()
    total = 0
    for (market, key), job in jobs.items():
        assert job["status"] == "ok", (market, key)
        assert job["notes"] == notebook_notes(job["paths"]["ipynb"]), (market, key)
        for page in ("html", "stakeholder_html"):
            text = html.unescape(Path(job["paths"][page]).read_text())
            for note in job["notes"]:
                assert _sentence(note) in text, (market, key, page, note)
        for note in job["notes"]:
            assert html.escape(note["section"]) in hub and html.escape(note["reason"]) in hub
        total += len(job["notes"])
    noted = sum(bool(j["notes"]) for j in jobs.values())
    assert total >= 4 and f"{total} sections in {noted} notebooks show a note" in hub
    assert f"{noted} with sections short of" in hub


def test_hub_lists_sections_short_of_data_escaped(tmp_path):
    from qualitylab.runner import JobResult
    from qualitylab.runs.runner.hub import hub_page as _hub

    bad = "<script>alert(1)</script>"
    notes = [
        {"section": f"Control chart of accuracy for site {bad}", "reason": f"no rows {bad}"},
        {"section": "Red team", "reason": "the dataset has no red_team table"},
    ]
    results = [
        JobResult("SG", "trends", status="ok", duration=3.0, notes=notes),
        JobResult("SG", "ai", status="ok", duration=2.0),
    ]
    manifest = {
        "run_id": "r1",
        "markets": ["SG"],
        "notebooks": ["trends", "ai"],
        "jobs": [{**asdict(r), "run_id": "r1"} for r in results],
    }
    page = _hub("2026-11-22", manifest, None, tmp_path)
    assert "<script>" not in page and page.count("&lt;script&gt;") >= 4
    assert "2 sections short of data" in page
    assert "Sections with too little data" in page and "2 sections in 1 notebooks" in page
    assert "the dataset has no red_team table" in page


def test_market_cache_keeps_a_market_whose_scorecard_has_too_little_data(small_data, monkeypatch):
    """The market still runs (its notebooks say why); a bug or bad parameter still stops it."""
    import importlib

    from qualitylab import QualityLabError, open_dataset
    from qualitylab.runs.runner.caches import scorecard_or_empty as _scorecard_or_empty
    from qualitylab.scorecard import SCORECARD_COLUMNS

    module = importlib.import_module("qualitylab.scorecard")
    ds = open_dataset(small_data)

    def thin(*_args, **_kwargs):
        raise QualityLabError("no decisions for SG in 2026-11-16..2026-11-22")

    monkeypatch.setattr(module, "scorecard", thin)
    empty = _scorecard_or_empty(ds, "SG", ["vendor"], None, None)
    assert list(empty.columns) == ["market", "vendor", *SCORECARD_COLUMNS] and empty.empty
    assert empty.attrs["note"] == "no decisions for SG in 2026-11-16..2026-11-22"
    for error in (ParameterError("bad key", key="x"), ValueError("bug")):

        def broken(*_args, error=error, **_kwargs):
            raise error

        monkeypatch.setattr(module, "scorecard", broken)
        with pytest.raises(type(error)):
            _scorecard_or_empty(ds, "SG", [], None, None)


# --------------------------------------------------------------------------- #
# Scheduled runs (issue #15): runs add to a date's folder, name their report
# date, and a backfill reports its own date.
# --------------------------------------------------------------------------- #
def _files(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()}


def test_two_notebooks_one_after_the_other_keep_both_reports(small_data, fake_notebooks, tmp_path):
    out = tmp_path / "reports"
    common = dict(markets="SG", out=out, notebooks_dir=fake_notebooks, progress=False)
    first = run(str(small_data), notebooks="scorecard", portfolio=False, **common)
    second = run(str(small_data), notebooks="trends", portfolio=False, **common)
    assert first.ok and second.ok and first.out == second.out
    sg = second.out / "SG"
    for key in ("scorecard", "trends"):
        for suffix in (".ipynb", ".html", ".stakeholder.html"):
            assert (sg / f"{key}{suffix}").is_file(), (key, suffix)
    manifest = json.loads((second.out / "manifest.json").read_text())
    produced = {(j["market"], j["notebook"]): j["run_id"] for j in manifest["jobs"]}
    assert produced == {("SG", "scorecard"): first.run_id, ("SG", "trends"): second.run_id}
    assert [r["run_id"] for r in manifest["runs"]] == [first.run_id, second.run_id]
    assert manifest["notebooks"] == ["scorecard", "trends"]
    market_manifest = json.loads((sg / "manifest.json").read_text())
    assert {j["notebook"]: j["run_id"] for j in market_manifest["jobs"]} == {
        "scorecard": first.run_id,
        "trends": second.run_id,
    }
    hub = (second.out / "index.html").read_text()
    assert "SG/scorecard.stakeholder.html" in hub and "SG/trends.stakeholder.html" in hub
    assert "2 runs for this date" in hub
    history = pd.read_parquet(out / "history.parquet")
    assert set(history["run_id"]) == {second.run_id}  # one row set for SG and this date
    assert not history.duplicated(["as_of", "market", "metric"]).any()
    assert len(history) == history["metric"].nunique()
    # the run log keeps both runs
    log = (second.out / "run.log").read_text()
    assert f"run {first.run_id}" in log and f"run {second.run_id}" in log

    # A failed notebook keeps the last good copy of itself and of every other one.
    before = _files(sg)
    _fake_notebook(fake_notebooks / NOTEBOOKS["trends"], "raise RuntimeError('trends broke')")
    third = run(str(small_data), notebooks="trends", portfolio=False, **common)
    assert not third.ok
    after = _files(sg)
    for name in ("trends.html", "trends.stakeholder.html", "trends.ipynb", "scorecard.html"):
        assert after[name] == before[name], name
    jobs = {
        j["notebook"]: j for j in json.loads((second.out / "manifest.json").read_text())["jobs"]
    }
    assert jobs["trends"]["status"] == "failed" and jobs["trends"]["run_id"] == third.run_id
    assert jobs["trends"]["last_good"]["run_id"] == second.run_id
    assert jobs["scorecard"]["run_id"] == first.run_id and jobs["scorecard"]["status"] == "ok"
    assert "trends broke" in (second.out / "index.html").read_text()


def test_as_of_yesterday_is_resolved_in_the_markets_zone(small_data, fake_notebooks, tmp_path):
    from datetime import UTC, datetime

    # 2026-11-22 17:30 UTC is already 23 November in Singapore (01:30) and Jakarta (00:30)
    at = datetime(2026, 11, 22, 17, 30, tzinfo=UTC)
    summary = run(
        str(small_data),
        markets="SG,ID",
        notebooks="scorecard",
        as_of="yesterday",
        now=at,
        out=tmp_path / "r",
        notebooks_dir=fake_notebooks,
        progress=False,
        portfolio=False,
    )
    assert summary.as_of == "2026-11-22" and summary.out.name == "2026-11-22"
    assert {r.parameters["as_of"] for r in summary.results} == {"2026-11-22"}
    # 16:30 UTC: 23 November in Singapore, still 22 November in Jakarta: the earlier day
    early = datetime(2026, 11, 22, 16, 30, tzinfo=UTC)
    summary = run(
        str(small_data),
        markets="SG,ID",
        notebooks="scorecard",
        as_of="today",
        now=early,
        out=tmp_path / "r",
        notebooks_dir=fake_notebooks,
        progress=False,
        portfolio=False,
    )
    assert summary.as_of == "2026-11-22"
    assert "already 2026-11-23 in SG" in (summary.out / "run.log").read_text()
    # data that has not landed yet for the report date is said in one line, not hidden
    late = run(
        str(small_data),
        markets="SG",
        notebooks="scorecard",
        as_of="yesterday",
        now=datetime(2026, 11, 25, 3, 0, tzinfo=UTC),
        out=tmp_path / "r",
        notebooks_dir=fake_notebooks,
        progress=False,
        portfolio=False,
    )
    assert late.ok and late.as_of == "2026-11-24"
    assert (
        "SG: the data ends 2026-11-22, 2 day(s) before the report date 2026-11-24"
        in (late.out / "run.log").read_text()
    )
    with pytest.raises(ParameterError, match=r"--as-of: report date 'last tuesday' is not a date"):
        run(
            str(small_data),
            markets="SG",
            as_of="last tuesday",
            out=tmp_path / "r",
            notebooks_dir=fake_notebooks,
        )


def _truncated(source: Path, dest: Path, market: str, last_day: str) -> Path:
    """The data as it stood at the end of ``last_day`` (market-local) for one market."""
    import shutil
    from datetime import date

    from qualitylab.localtime import period_bounds_utc

    shutil.copytree(source, dest)
    _, end = period_bounds_utc(date(2026, 1, 1), date.fromisoformat(last_day), "Asia/Singapore")
    dec = pd.read_parquet(source / "decisions")
    keep = dec[(dec["market"] == market) & (dec["created_at"] < pd.Timestamp(end))]
    shutil.rmtree(dest / "decisions")
    (dest / "decisions").mkdir()
    keep.to_parquet(dest / "decisions" / "part-00000.parquet", index=False)
    qa = pd.read_parquet(source / "qa_audits.parquet")
    qa[qa["decision_id"].isin(set(keep["decision_id"]))].to_parquet(
        dest / "qa_audits.parquet", index=False
    )
    return dest


def test_a_backfill_reports_its_own_date(small_data, fake_notebooks, tmp_path):
    """``--as-of D`` on today's data gives the report a run on D's data gave."""
    day = "2026-11-08"  # two weeks before the data's last day
    common = dict(
        markets="SG",
        notebooks="scorecard",
        notebooks_dir=fake_notebooks,
        progress=False,
        portfolio=False,
    )
    backfill = run(str(small_data), as_of=day, out=tmp_path / "backfill", **common)
    then = _truncated(small_data, tmp_path / "then", "SG", day)
    original = run(str(then), out=tmp_path / "original", **common)
    assert backfill.ok and original.ok
    assert backfill.as_of == original.as_of == day
    for name in ("scorecard.csv", "alerts.csv"):
        a = pd.read_csv(backfill.out / "SG" / name)
        b = pd.read_csv(original.out / "SG" / name)
        assert len(a), name
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9)
    alerts = pd.read_csv(backfill.out / "SG" / "alerts.csv")
    assert (alerts["end_date"].astype(str) <= day).all()  # nothing after the report date
    latest = run(str(small_data), out=tmp_path / "latest", **common)
    assert latest.as_of == "2026-11-22"
    assert not pd.read_csv(latest.out / "SG" / "scorecard.csv").equals(
        pd.read_csv(backfill.out / "SG" / "scorecard.csv")
    )


def _run_market(args: tuple[str, str, str, str]) -> str:
    data, market, out, nbs = args
    return run(
        data,
        markets=market,
        notebooks="scorecard",
        out=out,
        notebooks_dir=nbs,
        progress=False,
        portfolio=False,
    ).run_id


def test_runs_finishing_at_once_for_two_markets_both_land(small_data, fake_notebooks, tmp_path):
    """Two scheduled tasks (SG and ID, one report date) at the same time: one manifest with both."""
    import concurrent.futures as cf
    import multiprocessing as mp

    out = tmp_path / "reports"
    args = [(str(small_data), m, str(out), str(fake_notebooks)) for m in ("SG", "ID")]
    with cf.ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        run_ids = list(pool.map(_run_market, args))
    day = next(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    manifest = json.loads((day / "manifest.json").read_text())
    assert {(j["market"], j["run_id"]) for j in manifest["jobs"]} == set(
        zip(("SG", "ID"), run_ids, strict=True)
    )
    assert sorted(r["run_id"] for r in manifest["runs"]) == sorted(run_ids)
    history = pd.read_parquet(out / "history.parquet")
    assert set(history["market"]) == {"SG", "ID"} and len(set(history["run_id"])) == 2
    assert not [p for p in day.iterdir() if p.name.startswith(".tmp")]


def test_a_second_run_of_the_same_market_waits_or_names_the_run_holding_it(
    small_data, fake_notebooks, tmp_path
):
    import threading

    from qualitylab.runner import ReportsBusy
    from qualitylab.runs.runner.landing import run_locks as _run_locks

    out = tmp_path / "reports"
    common = dict(
        markets="SG",
        notebooks="scorecard",
        out=out,
        notebooks_dir=fake_notebooks,
        progress=False,
        portfolio=False,
    )
    with (
        _run_locks(out.resolve(), ["SG"], "20261206T050000Z-abc123", 0),
        pytest.raises(
            ReportsBusy, match=r"SG is being written by run 20261206T050000Z-abc123 \(pid"
        ),
    ):
        run(str(small_data), **common)
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp")]
    # another market goes on beside it
    with _run_locks(out.resolve(), ["SG"], "other", 0):
        assert run(str(small_data), **{**common, "markets": "ID"}).ok
    # with --wait, the run starts once the holder lets go
    held = _run_locks(out.resolve(), ["SG"], "holder", 0)
    held.__enter__()
    timer = threading.Timer(2.0, lambda: held.__exit__(None, None, None))
    timer.start()
    try:
        summary = run(str(small_data), wait=60, **common)
    finally:
        timer.join()
    assert summary.ok


# --------------------------------------------------------------------------- #
# The daily loop (issue #16): the store, the hub's new alerts, the digest, the
# webhook, and a run killed mid-way.
# --------------------------------------------------------------------------- #
def test_runs_remember_alerts_label_mutes_and_digest(small_data, fake_notebooks, tmp_path):
    from qualitylab import alertstore

    out = tmp_path / "reports"
    common = dict(
        markets="SG",
        notebooks="scorecard",
        out=out,
        notebooks_dir=fake_notebooks,
        progress=False,
        portfolio=False,
    )
    first = run(str(small_data), as_of="2026-11-15", **common)
    store = alertstore.read_store(out)
    assert len(store) and set(store["run_id"]) == {first.run_id}
    assert set(store["status"]) <= {"new", "resolved"} and (store["status"] == "new").any()
    alerts = pd.read_csv(first.out / "SG" / "alerts.csv")
    assert {"alert_id", "status", "incident_id"} <= set(alerts.columns)
    assert alerts["alert_id"].notna().all()
    hub = (first.out / "index.html").read_text()
    assert "New since the last run" in hub
    lead = store[(store["status"] == "new") & (store["incident_role"] != "child")].iloc[0]
    assert lead["alert_id"] in hub
    assert (first.out / "digest.md").is_file() and (first.out / "digest.html").is_file()

    # a person marks it a false alarm; the next day's run shows it muted, not counted
    alertstore.label_alert(out, lead["alert_id"], "false_alarm", note="known test traffic")
    second = run(str(small_data), as_of="2026-11-16", **common)
    day = alertstore.read_store(out)
    day = day[day["as_of"].astype(str).str[:10] == "2026-11-16"]
    row = day[day["alert_id"] == lead["alert_id"]]
    if len(row) and row["status"].iloc[0] != "resolved":
        assert row["status"].iloc[0] == "muted"
        hub = (second.out / "index.html").read_text()
        assert "muted alert" in hub
        assert lead["alert_id"] not in (second.out / "digest.md").read_text()
    kept = day[(day["status"] != "new") & day["alert_id"].isin(store["alert_id"])]
    assert len(kept)  # alerts seen again keep their ids


def test_a_run_killed_mid_way_leaves_store_labels_and_reports(small_data, fake_notebooks, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from qualitylab import alertstore

    out = tmp_path / "reports"
    first = run(
        str(small_data),
        markets="SG",
        notebooks="scorecard",
        out=out,
        notebooks_dir=fake_notebooks,
        progress=False,
        portfolio=False,
    )
    lead = alertstore.read_store(out)["alert_id"].iloc[0]
    alertstore.label_alert(out, lead, "confirmed")
    before = {
        p.relative_to(out): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and ".locks" not in p.parts and ".tmp" not in str(p)
    }
    slow = fake_notebooks / NOTEBOOKS["scorecard"]
    _fake_notebook(slow, "import time\ntime.sleep(600)")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qualitylab.cli",
            "run",
            "--data",
            str(small_data),
            "--markets",
            "SG",
            "--notebooks",
            "scorecard",
            "--out",
            str(out),
            "--notebooks-dir",
            str(fake_notebooks),
            "--no-portfolio",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # wait until the notebook kernel is running
        tmp = [p for p in out.glob(".tmp-*") if (p / "SG").is_dir()]
        if tmp and any((p / "SG" / "alerts.csv").exists() for p in tmp):
            break
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the run never reached its notebooks")
    time.sleep(3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    after = {
        p.relative_to(out): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and ".locks" not in p.parts and ".tmp" not in str(p)
    }
    assert after == before  # store, labels, reports, manifest, history, hub: byte for byte
    # the killed run left no stale lock: the next run goes ahead at once
    _fake_notebook(slow, "print('back')")
    again = run(
        str(small_data),
        markets="SG",
        notebooks="scorecard",
        out=out,
        notebooks_dir=fake_notebooks,
        progress=False,
        portfolio=False,
    )
    assert again.ok and again.as_of == first.as_of


def test_notify_posts_the_digest_and_a_dead_webhook_is_only_a_warning(
    small_data, fake_notebooks, tmp_path
):
    import http.server
    import socket
    import threading

    got: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    common = dict(
        markets="SG",
        notebooks="scorecard",
        notebooks_dir=fake_notebooks,
        progress=False,
        portfolio=False,
    )
    messages: list[str] = []
    try:
        summary = run(
            str(small_data),
            out=tmp_path / "a",
            notify=f"http://127.0.0.1:{server.server_port}/hook",
            echo=messages.append,
            **common,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert summary.ok and len(got) == 1
    assert got[0]["as_of"] == summary.as_of and got[0]["run_id"] == summary.run_id
    assert got[0]["text"] == (summary.out / "digest.md").read_text().rstrip("\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    messages.clear()
    down = run(
        str(small_data),
        out=tmp_path / "b",
        notify=f"http://127.0.0.1:{port}/hook",
        echo=messages.append,
        **common,
    )
    assert down.ok
    assert any(m.startswith(f"warning: could not notify http://127.0.0.1:{port}") for m in messages)


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed")
def test_hub_new_alerts_render_offline_and_hostile_segments_stay_inert(tmp_path):
    from qualitylab import alertstore
    from qualitylab.runs.runner.hub import hub_page as _hub

    out = tmp_path / "reports"
    day = out / "2026-11-22"
    (day / "SG").mkdir(parents=True)
    bad = "<img src=x onerror=alert(1)><script>document.title='pwned'</script>"
    alerts = pd.DataFrame(
        {
            "market": ["SG", "SG"],
            "metric": ["ai_recall", "override_rate"],
            "dimension": ["language", "policy"],
            "segment": [bad, "hate"],
            "start_date": ["2026-11-16", "2026-11-16"],
            "end_date": ["2026-11-22", "2026-11-22"],
            "observed": [0.6, 0.3],
            "expected": [0.8, 0.2],
            "direction": ["down", "up"],
            "severity": ["high", "medium"],
            "detector": ["ewma", "p_chart"],
            "p_value": [1e-6, 1e-4],
            "incident_id": ["k1", "k1"],
            "incident_role": ["lead", "child"],
            "incident_cause": [f"model release {bad}", ""],
        }
    )
    rows = alertstore.track(
        alertstore.read_store(out),
        alerts,
        None,
        run_id="r1",
        as_of="2026-11-22",
        market="SG",
        period=("2026-10-26", "2026-11-22"),
    )
    alertstore.commit(out, rows)
    manifest = {"run_id": "r1", "markets": ["SG"], "notebooks": ["scorecard"], "jobs": []}
    (day / "index.html").write_text(_hub("2026-11-22", manifest, None, out))
    with Chromium(tmp_path / "profile") as browser:
        page = browser.check_page(day / "index.html")
        assert page.loaded and not page.problems(), page.problems()
        assert "New since the last run (1)" in page.text
        assert "ai_recall down in language" in page.text and bad in page.text
        assert "1 related alert (same cause)" in page.text
        assert "pwned" not in page.title


# --------------------------------------------------------------------------- #
# kernels forked from the warm kernel server
# --------------------------------------------------------------------------- #
LEAKY = """
import os, sys
import numpy as np
import qualitylab
import qualitylab.report as report
leaked = {
    "global": "left_behind" in globals(),
    "module": hasattr(qualitylab, "_left_behind"),
    "memo": len(report._ALERTS_MEMO),
    "env": os.environ.get("QL_LEFT_BEHIND"),
    "argv_module": "qualitylab_left_behind" in sys.modules,
}
first_draw = float(np.random.random())
left_behind = 1
qualitylab._left_behind = 1
report._ALERTS_MEMO[report] = {}
os.environ["QL_LEFT_BEHIND"] = "1"
sys.modules["qualitylab_left_behind"] = qualitylab
print(__import__("json").dumps({"leaked": leaked, "pid": os.getpid(), "ppid": os.getppid(),
                                "cwd": os.getcwd(), "draw": first_draw}))
"""


@pytest.mark.skipif(
    not __import__("qualitylab.runner").runner.fork_kernels_enabled(), reason="Linux"
)
def test_forked_kernels_share_no_state(tmp_path):
    """Two notebooks in a row on one kernel server: the second sees nothing the first did.

    Each kernel is its own process forked from the server (which only imported
    modules): globals, module attributes, library caches, environment
    variables and ``sys.modules`` changes stay in the notebook that made them,
    and numpy's global generator is seeded afresh per kernel, as in a new
    interpreter.
    """
    import papermill as pm

    from qualitylab.runs.runner.kernels import KernelServer as _KernelServer
    from qualitylab.runs.runner.kernels import forking_kernel_manager as _forking_kernel_manager

    nb = tmp_path / "leaky.ipynb"
    _fake_notebook(nb, LEAKY)
    seen = []
    try:
        assert _KernelServer.get() is not None
        for i in range(2):
            out = tmp_path / f"out{i}.ipynb"
            pm.execute_notebook(
                str(nb),
                str(out),
                parameters={"market": "SG"},
                cwd=str(tmp_path),
                kernel_name="python3",
                progress_bar=False,
                kernel_manager_class=_forking_kernel_manager(),
            )
            text = nbformat.read(str(out), as_version=4).cells[-1].outputs[0]["text"]
            seen.append(json.loads(text))
        server_pid = _KernelServer._instance.proc.pid  # type: ignore[union-attr]
    finally:
        _KernelServer.close()
    for s in seen:
        assert s["leaked"] == {
            "global": False,
            "module": False,
            "memo": 0,
            "env": None,
            "argv_module": False,
        }
        assert s["ppid"] == server_pid  # forked, not started the usual way
        assert s["cwd"] == str(tmp_path)
    assert seen[0]["pid"] != seen[1]["pid"]
    assert seen[0]["draw"] != seen[1]["draw"]


def test_forked_kernel_off_switch(monkeypatch):
    """``QUALITYLAB_FORK_KERNELS=0`` starts every kernel the usual way."""
    from qualitylab.runner import fork_kernels_enabled

    monkeypatch.setenv("QUALITYLAB_FORK_KERNELS", "0")
    assert not fork_kernels_enabled()


def test_run_fills_the_chart_images_its_kernels_deferred(small_data, fake_notebooks, tmp_path):
    """Kernels of a run leave their charts' SVG to the worker; the landed files have them."""
    import os

    from qualitylab.reporting.charts.offline import DEFER_ENV, PENDING_MIME

    _fake_notebook(
        fake_notebooks / NOTEBOOKS["trends"],
        "import os\n"
        "import altair as alt, pandas as pd\n"
        "from qualitylab import charts\n"
        "charts.enable_offline_renderer()\n"
        f"print('deferred:', os.environ.get({DEFER_ENV!r}))\n"
        "df = pd.DataFrame({'x': list('abc'), 'y': list('aab'), 'v': [1.0, 2.0, 3.0]})\n"
        "display(alt.Chart(df).mark_rect().encode(x='x:N', y='y:N', color='v:Q'))",
    )
    res = run(
        str(small_data),
        markets="SG",
        notebooks="trends",
        out=tmp_path / "reports",
        notebooks_dir=fake_notebooks,
        progress=False,
        portfolio=False,
    )
    assert res.ok
    assert DEFER_ENV not in os.environ  # the kernel's variable only
    nb = nbformat.read(str(res.out / "SG" / "trends.ipynb"), as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("deferred: 1" in o.get("text", "") for o in outputs)
    charts = [o.data for o in outputs if "text/html" in o.get("data", {})]
    assert len(charts) == 1 and PENDING_MIME not in charts[0]
    assert charts[0]["image/svg+xml"].startswith("<svg")
    assert 'id="gradient_0"' in charts[0]["image/svg+xml"]
    assert "data:image/svg+xml;base64,PHN2Zy" in charts[0]["text/html"]  # base64 of "<svg"
    for page in ("trends.html", "trends.stakeholder.html"):
        text = (res.out / "SG" / page).read_text()
        assert "ql-pending-svg" not in text and "data:image/svg+xml;base64,PHN2Zy" in text


def test_notebook_scorecards_come_from_the_market_cache(small_data, tmp_path, monkeypatch):
    """Notebook 01 shows the scorecards the run stored, equal to computing them again."""
    import importlib

    import qualitylab as ql
    from qualitylab import report
    from qualitylab.data.sources import CHECKS_TABLE
    from qualitylab.runs.runner.caches import build_market_cache

    path = tmp_path / "SG.duckdb"
    build_market_cache(str(small_data), "SG", path, parameters=None)
    ctx = report.context(str(path), "SG")
    assert CHECKS_TABLE in ctx.ds.backend.list_tables()
    computed = {
        by: ql.scorecard(ctx.ds, "SG", by=list(by), start=ctx.start, end=ctx.end)
        for by in ((), ("vendor",))
    }
    module = importlib.import_module("qualitylab.scorecard")

    def not_again(*_args, **_kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(module, "scorecard", not_again)
    for by, want in computed.items():
        got = report.period_scorecard(ctx, by=by)
        pd.testing.assert_frame_equal(got, want, rtol=1e-12)
        assert got.attrs == want.attrs and got.attrs["period"] == (str(ctx.start), str(ctx.end))
    with pytest.raises(AssertionError, match="computed again"):  # not stored: computed
        report.period_scorecard(ctx, by=["queue"])
