"""Stakeholder HTML of every notebook: offline, no code, titled, aliased, safe in a browser.

The pages are rendered from the executed notebooks of :mod:`notebook_runs`
(the runs on data with hostile strings planted, see :mod:`hostile`) with
moderator ids aliased, as the scheduled run publishes them. The browser tests
open each page in headless Chromium with the network blocked
(:mod:`browser_check`); they are skipped where ``/usr/bin/chromium`` is missing
(CI installs it).
"""

from __future__ import annotations

import base64
import html
import re
import warnings
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import notebook_runs
import pandas as pd
import pytest
from browser_check import CHROMIUM, Chromium
from hostile import HOSTILE_SITES, HOSTILE_STRINGS
from notebook_runs import NOTEBOOKS, REPO

from qualitylab import open_dataset, report
from qualitylab.charts import vega_bundle

SVG_DATA_URI = r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"
SUBTITLE = 'Small demo data & "hostile" <strings>'
_XSS = (
    "cell 'report.say(ql.rca.summarize(result, ranking))' passes data text (the summary names "
    "sites) as say()'s trusted template, unescaped: site '\"><svg onload=alert(3)>' opens a dialog"
)
#: Known defects of one notebook's page (check → notebook stem → reason), xfail until fixed.
PAGE_DEFECTS: dict[str, dict[str, str]] = {"active": {}, "browser": {}, "moderators": {}}


def _pages(check: str = "") -> list:
    """One param per notebook, xfail where its run or this check has a known defect."""
    params = []
    for nb in NOTEBOOKS:
        marks = notebook_runs.marks(nb, notebook_runs.report_run(nb)[0])
        reason = PAGE_DEFECTS.get(check, {}).get(nb.stem)
        if reason and not marks:
            marks = [pytest.mark.xfail(reason=reason, strict=False)]
        params.append(pytest.param(nb, id=nb.stem, marks=marks))
    return params


needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def runs(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> notebook_runs.Runs:
    return notebook_runs.runs(small_data, tmp_path_factory)


@pytest.fixture(scope="module")
def moderator_ids(runs: notebook_runs.Runs) -> list[str]:
    ids = pd.read_parquet(runs.hostile_data / "decisions", columns=["moderator_id"])
    return sorted(ids["moderator_id"].dropna().unique())


@pytest.fixture(scope="module")
def pages(runs: notebook_runs.Runs, moderator_ids: list[str], tmp_path_factory):
    """Notebook → (run, stakeholder page), rendered on first use."""
    folder = tmp_path_factory.mktemp("pages")
    aliases = report.moderator_aliases(moderator_ids)
    cache: dict[Path, tuple[notebook_runs.Run, Path]] = {}

    def page(source: Path) -> tuple[notebook_runs.Run, Path]:
        if source not in cache:
            markets, hostile = notebook_runs.report_run(source)
            run = runs.get(source, markets, hostile=hostile)
            if run.error is not None:
                pytest.fail(f"{run.label} failed to execute:\n{run.error}")
            out = report.render_html(
                run.output,
                folder / f"{source.stem}.html",
                stakeholder=True,
                title=_title(source, markets),
                subtitle=SUBTITLE,
                aliases=aliases,
            )
            cache[source] = (run, out)
        return cache[source]

    return page


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    with Chromium(tmp_path_factory.mktemp("chromium-profile")) as browser:
        yield browser


def _title(source: Path, markets: str) -> str:
    name = source.stem.partition("-")[2] or source.stem
    return f"{name.replace('-', ' ').capitalize()} – {markets}"


def _headings(nb: nbformat.NotebookNode) -> list[str]:
    return [
        line
        for cell in nb.cells
        if cell.cell_type == "markdown"
        for line in cell.source.splitlines()
        if re.match(r"^#{2,3}\s", line)
    ]


def _code_lines(nb: nbformat.NotebookNode) -> list[str]:
    """Distinctive source lines of the notebook's code cells."""
    return [
        line.strip()
        for cell in nb.cells
        if cell.cell_type == "code"
        for line in cell.source.splitlines()
        if len(line.strip()) >= 25
    ]


def _table_html(nb: nbformat.NotebookNode) -> str:
    """The ``text/html`` outputs that are not charts (tables, sentences)."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text = out.get("data", {}).get("text/html", "")
            text = "".join(text) if isinstance(text, list) else text
            if "vegaEmbed(" not in text:
                parts.append(text)
    return "\n".join(parts)


class _Scripts(HTMLParser):
    """Script elements and script-bearing attributes of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[str] = []
        self.attributes: list[str] = []
        self._script: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            url = (value or "").strip().lower()
            if name.startswith("on") or url.startswith("javascript:"):
                self.attributes.append(f"<{tag} {name}={value!r}>")
        if tag in ("iframe", "object", "embed", "base"):
            self.attributes.append(f"<{tag}>")
        if tag == "script":
            self._script = []

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            self.scripts.append("".join(self._script))
            self._script = None


def _active_content(page: str) -> list[str]:
    """Scripts other than the vega bundle and chart fragments, and event handlers."""
    parser = _Scripts()
    parser.feed(page)
    parser.close()
    foreign = [
        script[:120]
        for script in parser.scripts
        if not script.startswith(vega_bundle()[:80])
        and not (script.startswith("(function () {") and "vegaEmbed(" in script)
    ]
    return parser.attributes + foreign


# --------------------------------------------------------------------------- #
# the page as written
# --------------------------------------------------------------------------- #
def test_hostile_data_keeps_the_contract(runs: notebook_runs.Runs):
    ds = open_dataset(runs.hostile_data, parameters=REPO / "parameters")
    problems = ds.validate().frame
    assert problems[problems["severity"].isin(["fatal", "error"])].empty, problems
    sites = ds.table("decisions").select("site").distinct().to_pandas()["site"]
    assert set(HOSTILE_SITES.values()) <= set(sites)


@pytest.mark.parametrize("source", _pages())
def test_stakeholder_page_is_offline_titled_and_without_code(pages, source: Path):
    run, path = pages(source)
    page = path.read_text(encoding="utf-8")
    nb = run.notebook()

    assert report.external_references(page) == []
    assert not re.search(r"<script[^>]+src=", page), "a script is loaded from a file or URL"
    prompts = re.findall(r'class="[^"]*\b(jp-InputPrompt|jp-OutputPrompt|highlight)\b', page)
    assert prompts == [], "code or prompts shown"
    shown_code = [line for line in _code_lines(nb) if html.escape(line, quote=False) in page]
    assert shown_code == []

    title = _title(source, run.markets)
    assert f"<h1>{html.escape(title, quote=False)}</h1>" in page
    assert f"<p>{html.escape(SUBTITLE, quote=False)}</p>" in page
    toc = re.search(r'<nav class="ql-toc">(.*?)</nav>', page, re.S)
    assert toc, "no table of contents"
    assert toc.group(1).count("<li") == len(_headings(nb)) > 0


@pytest.mark.parametrize("source", _pages("active"))
def test_stakeholder_page_runs_only_its_own_scripts(pages, source: Path):
    """Data text is escaped: no script, event handler or ``javascript:`` URL came from it."""
    _, path = pages(source)
    page = path.read_text(encoding="utf-8")
    assert [s for s in HOSTILE_STRINGS if s in page] == [], "data text written unescaped"
    assert _active_content(page) == []


@pytest.mark.parametrize("source", _pages("moderators"))
def test_stakeholder_page_hides_moderator_ids(pages, moderator_ids, source: Path):
    _, path = pages(source)
    page = path.read_text(encoding="utf-8")
    assert [i for i in moderator_ids if i in page] == []
    images = [base64.b64decode(b).decode("utf-8") for b in re.findall(SVG_DATA_URI, page)]
    leaked = sorted({i for i in moderator_ids for svg in images if i in svg})
    assert leaked == [], f"moderator ids left in static chart images: {leaked[:5]}"


@pytest.mark.parametrize("source", _pages())
def test_stakeholder_page_shows_no_python_warnings(pages, source: Path):
    _, path = pages(source)
    page = path.read_text(encoding="utf-8")
    assert 'data-mime-type="application/vnd.jupyter.stderr"' not in page


def test_aliases_replace_moderator_ids(moderator_ids: list[str], tmp_path: Path):
    ids = moderator_ids[:5]
    aliases = report.moderator_aliases(ids)
    assert len(set(report.moderator_aliases(moderator_ids).values())) == len(moderator_ids)
    assert aliases == report.moderator_aliases(list(reversed(ids)))
    assert all(re.fullmatch(r"M-[0-9a-f]{6}", a) for a in aliases.values())

    frame = pd.DataFrame({"moderator_id": ids, "metric": "accuracy", "value": 0.9})
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("## Moderators\n\nPeople with the most overturned calls."),
        nbformat.v4.new_code_cell(
            "report.table(frame)",
            outputs=[
                nbformat.v4.new_output(
                    "execute_result",
                    {"text/html": report.table(frame).data, "text/plain": repr(frame)},
                    execution_count=1,
                )
            ],
            execution_count=1,
        ),
    ]
    page = report.render_html(
        nb, tmp_path / "stakeholder.html", stakeholder=True, aliases=aliases
    ).read_text(encoding="utf-8")
    assert [i for i in ids if i in page] == []
    assert all(a in page for a in aliases.values())

    full = report.render_html(nb, tmp_path / "full.html", aliases=aliases).read_text("utf-8")
    assert all(i in full for i in ids), "aliases are for the stakeholder rendering only"


# --------------------------------------------------------------------------- #
# the page in a browser
# --------------------------------------------------------------------------- #
@needs_chromium
@pytest.mark.parametrize("source", _pages("browser"))
def test_stakeholder_page_in_browser(pages, chromium, source: Path, record_property):
    run, path = pages(source)
    nb = run.notebook()
    expected = notebook_runs.chart_outputs(nb)
    seen = chromium.check_page(path)
    shown = [s for s in HOSTILE_STRINGS if s in seen.text]
    record_property("charts", f"{seen.drawn}/{expected}")
    record_property("hostile_shown", shown)
    print(
        f"\n{source.stem}: {seen.drawn}/{expected} charts drawn in {seen.seconds:.1f} s, "
        f"{len(seen.requests)} local requests, hostile strings shown as text: {shown}"
    )

    assert seen.loaded
    assert seen.problems() == {}
    assert expected > 0
    assert (seen.charts, seen.drawn, seen.fallbacks) == (expected, expected, 0)
    assert seen.code_inputs == 0
    assert seen.stderr_outputs == 0
    assert seen.toc_links > 0 and seen.dead_toc_links == []
    assert seen.title == _title(source, run.markets)
    assert SUBTITLE in seen.text
    # hostile strings that the notebook shows in a table or sentence appear as
    # literal text (charts draw data text as SVG text, also literal)
    in_tables = [s for s in HOSTILE_STRINGS if html.escape(s) in _table_html(nb)]
    assert [s for s in in_tables if s not in seen.text] == []


@needs_chromium
def test_browser_check_sees_a_bad_page(chromium, tmp_path: Path):
    """The checker itself: a request off the machine, console error, exception, dialog."""
    page = tmp_path / "bad.html"
    page.write_text(
        "<html><body><p>bad</p>"
        '<img src="https://example.invalid/pixel.png">'
        "<script>console.error('boom'); alert('hi');</script>"
        "<script>throw new Error('thrown');</script>"
        "</body></html>",
        encoding="utf-8",
    )
    seen = chromium.check_page(page, settle_timeout=3)
    assert seen.loaded
    assert seen.blocked == ["https://example.invalid/pixel.png"]
    assert seen.console_errors == ["boom"]
    assert seen.dialogs == ["alert: hi"]
    assert any("thrown" in e for e in seen.exceptions)
    assert set(seen.problems()) >= {"blocked requests", "console errors", "exceptions", "dialogs"}


# --- alerts prefetched in a helper process ----------------------------------------


def _wait_ready(job, seconds: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while job.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.ready(), f"helper exited with {job.process.returncode}"


def test_prefetched_alerts_equal_an_in_process_scan(small_data, monkeypatch):
    monkeypatch.setenv("QUALITYLAB_PREFETCH", "1")
    ctx = report.context(str(small_data), "ID", prefetch_alerts=True)
    job = report._PREFETCH[ctx.ds][report._alerts_key(ctx)]
    _wait_ready(job)
    got = report.alerts(ctx, current_only=False)
    assert not job.out.exists()  # consumed and cleaned up
    assert report._alerts_key(ctx) not in report._PREFETCH[ctx.ds]
    want = report.scan_period(open_dataset(small_data), report.context(str(small_data), "ID"))
    assert len(want) > 0
    pd.testing.assert_frame_equal(got, want)
    assert got.attrs["period"] == want.attrs["period"]
    assert got.attrs["skipped"] == want.attrs["skipped"]


def test_failed_prefetch_falls_back_to_an_in_process_scan(small_data, monkeypatch):
    monkeypatch.setenv("QUALITYLAB_PREFETCH", "1")
    ctx = report.context(str(small_data), "SG", prefetch_alerts=True)
    job = report._PREFETCH[ctx.ds][report._alerts_key(ctx)]
    job.process.kill()  # the helper dies before writing its result
    got = report.alerts(ctx, current_only=False)
    assert job.process.poll() is not None and not job.out.exists()
    want = report.scan_period(open_dataset(small_data), report.context(str(small_data), "SG"))
    pd.testing.assert_frame_equal(got, want)


def test_prefetch_can_be_turned_off(small_data, monkeypatch):
    monkeypatch.setenv("QUALITYLAB_PREFETCH", "0")
    ctx = report.context(str(small_data), "SG", prefetch_alerts=True)
    assert not report._PREFETCH.get(ctx.ds)


def test_portfolio_from_helper_processes_equals_in_process(small_data, monkeypatch):
    monkeypatch.setenv("QUALITYLAB_PREFETCH", "1")
    helped = report.portfolio(str(small_data), "all")
    monkeypatch.setenv("QUALITYLAB_PREFETCH", "0")
    here = report.portfolio(str(small_data), "all")
    assert helped.markets == here.markets and len(here.markets) == 3
    assert helped.as_of == here.as_of
    for name in ("by_market", "by_vendor", "movers", "alert_counts"):
        pd.testing.assert_frame_equal(getattr(helped, name), getattr(here, name), obj=name)
    assert here.alert_counts["alerts"].sum() > 0


# --------------------------------------------------------------------------- #
# Sections short of data (issue #14): report.section, require, require_rows
# --------------------------------------------------------------------------- #
@pytest.fixture
def shown(monkeypatch) -> list:
    """What report.section displays (IPython's display, recorded)."""
    out: list = []
    monkeypatch.setattr("IPython.display.display", lambda *objs, **_: out.extend(objs))
    return out


def test_section_turns_a_qualitylab_error_into_a_note(shown):
    from qualitylab.errors import DataContractError, QualityLabError

    reached = []
    with report.section("Red team") as s:
        reached.append("before")
        raise QualityLabError("no red-team items in the selection\nsecond line not kept")
    reached.append("after")  # the notebook goes on
    assert reached == ["before", "after"]
    assert s.note == report.SectionNote("Red team", "no red-team items in the selection")
    assert shown == [s.note]
    bundle = s.note._repr_mimebundle_()
    assert bundle[report.NOTE_MIMETYPE] == {
        "section": "Red team",
        "reason": "no red-team items in the selection",
    }
    assert bundle["text/html"] == (
        '<p class="ql-note"><strong>Red team</strong>: not shown, too little data '
        "(no red-team items in the selection).</p>"
    )
    with report.section("Staffing") as s2:  # a subclass (an absent table) too
        raise DataContractError("table 'staffing' is not in x", table="staffing")
    assert s2.note.reason == "table 'staffing' is not in x" and len(shown) == 2


def test_section_lets_other_errors_propagate(shown):
    from qualitylab.errors import ParameterError

    with pytest.raises(ValueError, match="boom"), report.section("Trends"):
        raise ValueError("boom")  # a bug: the notebook must still fail
    with pytest.raises(KeyError), report.section("Trends"):
        {}["x"]
    with pytest.raises(ParameterError, match="segment"), report.section("RCA"):
        raise ParameterError("segment must look like dimension:value", key="segment")
    with report.section("Fine") as s:
        pass
    assert s.note is None and shown == []


def test_section_note_escapes_text_from_data(shown):
    from qualitylab.errors import QualityLabError

    hostile = "<script>alert(1)</script>"
    with report.section(f"Control chart for site {hostile}") as s:
        raise QualityLabError(f"no audits for site {hostile}")
    page = s.note._repr_mimebundle_()["text/html"]
    assert "<script>" not in page and page.count("&lt;script&gt;") == 2
    assert len(s.note.reason) <= 300
    with report.section("Long") as s:
        raise QualityLabError("x" * 1000)
    assert len(s.note.reason) == 300 and s.note.reason.endswith("…")


def test_require_names_what_is_missing():
    from qualitylab.errors import QualityLabError

    frame = pd.DataFrame({"a": [1]})
    assert report.require(frame, "the frame") is frame
    with pytest.raises(QualityLabError, match="needs the vendor scorecard, which could not"):
        report.require(None, "the vendor scorecard")
    empty = pd.DataFrame(columns=["metric"])
    empty.attrs["note"] = "market MY: 14 days of data, the scan needs 29"
    with pytest.raises(QualityLabError, match="^the alert scan: market MY: 14 days"):
        report.require(empty, "the alert scan")


def test_require_rows_counts_a_markets_rows_in_the_period(small_data, tiny):
    from qualitylab.errors import QualityLabError

    ctx = report.context(str(small_data), "ID")
    red = pd.read_parquet(small_data / "red_team.parquet")
    local = red["created_at"].dt.tz_convert(ctx.params.timezone).dt.date
    want = int(((red["market"] == "ID") & local.between(ctx.start, ctx.end)).sum())
    assert report.require_rows(ctx, "red_team") == want > 0
    dec = pd.read_parquet(small_data / "decisions", columns=["decision_id", "market"])
    qa = pd.read_parquet(small_data / "qa_audits.parquet").merge(dec, on="decision_id")
    qa_local = qa["audited_at"].dt.tz_convert(ctx.params.timezone).dt.date
    want_qa = int(((qa["market"] == "ID") & qa_local.between(ctx.start, ctx.end)).sum())
    assert report.require_rows(ctx, "qa_audits") == want_qa > 0
    assert report.require_rows(ctx, "vendor_reported") > 0
    assert report.require_rows(ctx, "staffing") > 0
    with pytest.raises(QualityLabError, match="red_team table has no rows for ID from 2025-01-01"):
        report.require_rows(ctx, "red_team", start="2025-01-01", end="2025-01-31")
    with pytest.raises(QualityLabError, match="unknown table 'redteam'"):
        report.require_rows(ctx, "redteam")

    tiny_ctx = report.context(str(tiny), "SG")  # decisions, qa_audits, staffing, events
    with pytest.raises(QualityLabError, match="^the dataset has no red_team table$"):
        report.require_rows(tiny_ctx, "red_team")
    assert report.require_rows(tiny_ctx, "events", start="2026-03-01", end="2026-03-07") == 1
    id_ctx = report.context(str(tiny), "ID")  # the events row is for every market ('*')
    assert report.require_rows(id_ctx, "events", start="2026-03-01", end="2026-03-07") == 1
    with pytest.raises(QualityLabError, match="staffing table has no rows for ID"):
        report.require_rows(id_ctx, "staffing", start="2026-03-01", end="2026-03-07")


def test_notebook_notes_read_back_what_sections_displayed(tmp_path: Path):
    note = report.SectionNote("Red team", 'no rows for "<MY>"')
    bundle = note._repr_mimebundle_()
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("## Red team"),
        nbformat.v4.new_code_cell("x = 1", outputs=[nbformat.v4.new_output("stream", text="x")]),
        nbformat.v4.new_code_cell(
            "...", outputs=[nbformat.v4.new_output("display_data", data=bundle)]
        ),
    ]
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    assert report.notebook_notes(path) == [
        {"section": "Red team", "reason": 'no rows for "<MY>"', "cell": 2}
    ]
    page = report.render_html(path, tmp_path / "n.html", stakeholder=True, title="t")
    text = page.read_text()
    sentence = re.search(r"Red team</strong>: not shown, too little data \(([^)]*)\)", text)
    assert sentence and "&lt;MY&gt;" in sentence.group(1) and "<MY>" not in text
    assert report.NOTE_MIMETYPE not in text  # the JSON stays in the notebook


def test_scan_period_scans_a_young_market_over_its_whole_range(tmp_path: Path):
    """A period that starts before the market's data: no baseline, so the whole range."""
    import warnings

    from qualitylab import detect
    from qualitylab.demo import generate
    from qualitylab.errors import QualityLabError

    generate(tmp_path, markets=["SG"], days=21, scale="small", seed=3, young_market="MY")
    ctx = report.context(str(tmp_path), "MY")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(QualityLabError):  # an explicit start needs a baseline before it
            detect.scan(ctx.ds, "MY", start=ctx.start, end=ctx.end)
        got = report.scan_period(ctx.ds, ctx)
        want = detect.scan(ctx.ds, "MY", end=ctx.end)
    assert not got.attrs.get("note")
    pd.testing.assert_frame_equal(got, want)
    # a scan that cannot run at all: an empty table whose note require() reports
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        none = report.scan_period(ctx.ds, report.context(str(tmp_path), "MY", as_of="2026-10-01"))
    assert none.empty and none.attrs["note"]
    with pytest.raises(QualityLabError, match="^the alert scan: "):
        report.require(none, "the alert scan")


def test_header_says_when_the_data_starts_after_the_baseline(tmp_path: Path):
    # a market with 14 days of history: the header must not read as 28 + 28 days of data
    from qualitylab.demo import generate

    generate(tmp_path / "y", scale="small", seed=3, young_market="MY", parameters=None)
    ctx = report.context(str(tmp_path / "y"), "MY")
    assert ctx.data_start == ctx.as_of - timedelta(days=13)
    assert ctx.period.days == 28 and ctx.data_start > ctx.baseline.end
    text = report.header(ctx).data
    assert f"MY&#x27;s data starts on {ctx.data_start}" in text
    assert "14 of the period&#x27;s 28 days have data, and none of the 28 days before." in text
    old = report.context(str(tmp_path / "y"), "SG")  # 90 days: nothing to say
    assert old.coverage == "" and "starts on" not in report.header(old).data


# --------------------------------------------------------------------------- #
# Blind spots and the sampling plan (issue #18), as notebooks 01 and 02 show them
# --------------------------------------------------------------------------- #
def test_blind_spot_helpers_escape_data_and_agree_with_detectability(small_data: Path):
    from qualitylab import sampling

    ctx = report.context(str(small_data), "SG")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = sampling.detectability(ctx.ds, "SG", end=ctx.end)
    blind = d[d["blind_spot"]]
    # the table lists exactly the blind segment x metric rows, the sentence counts them
    rows = report.blind_spot_table(d, max_rows=10_000).data.count("<tr>") - 1
    assert rows == len(blind) > 0
    k = blind[["vendor", "queue"]].drop_duplicates().shape[0]
    n = d[["vendor", "queue"]].drop_duplicates().shape[0]
    assert f"<p>{k} of {n} vendor × queue segments in SG " in report.blind_spot_sentence(d).data
    # text from data is escaped in both tables
    bad = "<script>alert(1)</script>"
    hostile = d.assign(vendor=bad)
    hostile.attrs = dict(d.attrs)
    for shown in (report.blind_spot_table(hostile), report.blind_spot_sentence(hostile)):
        assert bad not in shown.data
    wide = hostile.rename(columns={"vendor": "segment", "queue": "dimension"})
    assert bad not in report.blind_segment_table(wide).data
    # nothing blind: a sentence saying so, and no table
    clear = d.assign(blind_spot=False)
    clear.attrs = dict(d.attrs)
    assert report.blind_spot_sentence(clear).data.startswith(f"<p>All {n} vendor × queue")


def test_scan_blind_spots_judges_each_scanned_dimension(small_data: Path):
    ctx = report.context(str(small_data), "SG")
    got = report.scan_blind_spots(ctx, dimensions=("vendor", "policy"))
    assert list(got.columns[:4]) == ["market", "dimension", "segment", "metric"]
    assert set(got["dimension"]) == {"vendor", "policy"}
    assert got["segment"].notna().all()  # decisions without a policy are no series of the scan
    from qualitylab import sampling

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = sampling.detectability(ctx.ds, "SG", by=["vendor"], end=ctx.end)
    mine = got[got["dimension"] == "vendor"].reset_index(drop=True)
    pd.testing.assert_series_equal(mine["mdc"], one["mdc"])
    assert got.attrs["series"] == one.attrs["series"]


def test_sampling_plan_summary_and_sentence(small_data: Path):
    from qualitylab import sampling

    ctx = report.context(str(small_data), "SG")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = sampling.sampling_plan(ctx.ds, "SG", end=ctx.end, drop=0.2)
    text = report.sampling_plan_sentence(plan).data
    assert f"{plan.budget:,} weekly audits" in text
    assert f"from {100 * plan.se_before:.2f} to {100 * plan.se_after:.2f} points" in text
    assert f"from {plan.blind_before} to {plan.blind_after} of {len(plan.plan)}" in text
    if plan.unreachable:
        assert f"{len(plan.unreachable)} strat" in text and "at any budget" in text
    table_html = report.sampling_plan_summary(plan).data
    assert f"{100 * plan.se_after:.2f} pts" in table_html
    no_audits = plan.__class__(**{**plan.__dict__, "se_before": float("inf")})
    assert "not bounded" in report.sampling_plan_summary(no_audits).data


def test_pages_keep_the_bundle_and_chart_images_whole(tmp_path: Path):
    """The bundle and base64 images pass nbconvert as placeholders and come back whole."""
    import base64
    import json

    import altair as alt

    from qualitylab.reporting.charts import offline, vega_bundle

    frame = pd.DataFrame({"moderator_id": ["mod-000123", "mod-000456"], "n": [3.0, 5.0]})
    chart = alt.Chart(frame).mark_bar().encode(x="moderator_id:N", y="n:Q").to_dict()
    bundle = offline._renderer(chart)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("## Chart"),
        nbformat.v4.new_code_cell(
            "chart", outputs=[nbformat.v4.new_output("display_data", bundle)], execution_count=1
        ),
    ]
    before = json.dumps(nb, sort_keys=True)
    uri = re.search(r"data:image/svg\+xml;base64,[A-Za-z0-9+/=]+", bundle["text/html"]).group(0)
    full = report.render_html(nb, tmp_path / "full.html").read_text("utf-8")
    assert full.count(vega_bundle()) == 1 and uri in full and "ql-blob-" not in full
    aliases = {"mod-000123": "M-aaaaaa"}
    page = report.render_html(nb, tmp_path / "s.html", stakeholder=True, aliases=aliases)
    text = page.read_text("utf-8")
    assert "ql-blob-" not in text and text.count(vega_bundle()) == 1
    svgs = [
        svg
        for m in re.findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", text)
        if 'class="marks"' in (svg := base64.b64decode(m).decode())  # the chart, not the icons
    ]
    assert len(svgs) == 1 and "M-aaaaaa" in svgs[0] and "mod-000123" not in svgs[0]
    assert json.dumps(nb, sort_keys=True) == before  # the notebook given is not modified
