"""Open a reports folder in headless Chromium offline: every page, every link.

Usage (after ``make demo`` or ``qualitylab run``)::

    .venv/bin/python tests/check_reports.py reports

Opens ``reports/index.html`` and the latest run's hub, follows every link from
them, checks that each target exists and that each linked HTML page loads with
no blocked request, console error, exception or dialog. Exits 1 on any problem.
The same checks run on a ten-market run in ``tests/test_runner.py``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse


def check(out: Path) -> list[str]:
    """Problems found under the reports folder ``out`` (empty when all is well)."""
    from browser_check import Chromium

    runs = sorted(p for p in out.iterdir() if p.is_dir() and (p / "manifest.json").exists())
    if not runs:
        return [f"{out}: no run with a manifest.json"]
    hubs = [out / "index.html", runs[-1] / "index.html"]
    problems: list[str] = []
    pages, seen, links = list(hubs), set(), 0
    with Chromium(Path(tempfile.mkdtemp(prefix="chromium-"))) as browser:
        while pages:
            page = pages.pop(0)
            if page in seen:
                continue
            seen.add(page)
            report = browser.check_page(page, settle_timeout=8)
            if not report.loaded or report.problems():
                problems.append(f"{page}: {report.problems() or 'did not load'}")
            if page not in hubs:
                continue
            for url in report.links:
                links += 1
                target = Path(unquote(urlparse(url).path))
                if not url.startswith("file:") or not target.exists():
                    problems.append(f"{page}: dead link {url}")
                elif target.suffix == ".html":
                    pages.append(target)
    print(f"pages opened: {len(seen)}, links checked: {links}, problems: {len(problems)}")
    return problems


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    found = check(Path(sys.argv[1] if len(sys.argv) > 1 else "reports"))
    for line in found:
        print(line)
    sys.exit(1 if found else 0)
