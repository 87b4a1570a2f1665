"""The scheduled runner: validation first, failure isolation, atomic replacement, hub."""

from __future__ import annotations

import json
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
    assert not (day / "ID").exists()  # a failed market never lands as if it were good
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
    assert len(pd.read_parquet(out / "history.parquet").run_id.unique()) == 2


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
        for code in ALL_MARKETS:
            line = next(ln for ln in hub.text.splitlines() if ln.strip() == code)
            assert line
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
