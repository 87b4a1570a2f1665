"""The package's layers: imports go down, no cycles, no private names across modules.

The rules live in ``tests/layercheck.py`` and ``ARCHITECTURE.md``. The fixture
modules in ``tests/layer_fixtures/`` each break one rule; copied into a copy of
the real package, each must be reported, which shows the check can fail.
"""

from __future__ import annotations

import functools
import importlib
import re
import shutil
from pathlib import Path

import pytest
from layercheck import LAYERS, LONG_MODULES, MAX_LINES, modules, problems, short_names

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src" / "qualitylab"
FIXTURES = Path(__file__).resolve().parent / "layer_fixtures"

#: The flat module names of the first version: users' notebooks import them.
OLD_MODULES = [
    "agreement",
    "aieval",
    "alertstore",
    "calibration",
    "capacity",
    "charts",
    "cli",
    "contract",
    "cron",
    "demo",
    "demostream",
    "detect",
    "digest",
    "escalations",
    "findings",
    "forecast",
    "headline",
    "incidents",
    "localtime",
    "metrics",
    "params",
    "prefetch",
    "rca",
    "readiness",
    "reconcile",
    "redteam",
    "replay",
    "report",
    "rollout",
    "runner",
    "sampling",
    "schedule",
    "scorecard",
    "sources",
    "stats",
    "watch",
    "watchcli",
]


def test_the_package_keeps_its_layers():
    assert problems(SRC) == []


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    root = tmp_path / "qualitylab"
    shutil.copytree(SRC, root, ignore=shutil.ignore_patterns("__pycache__", "templates"))
    return root


def _plant(root: Path, fixture: str, where: str) -> None:
    shutil.copy(FIXTURES / f"{fixture}.py", root / where)


@functools.cache
def _known() -> frozenset[str]:
    return frozenset(problems(SRC))


def _new(root: Path) -> list[str]:
    """The problems of the copy that the real package does not have."""
    return [p for p in problems(root) if p not in _known()]


def test_an_upward_import_is_reported(package_copy: Path):
    _plant(package_copy, "upward", "data/upward.py")
    assert _new(package_copy) == [
        "qualitylab.data.upward:3 (data) imports qualitylab.runs.runner (runs):"
        " an import that does not go down the layers"
    ]


def test_a_sibling_import_is_reported(package_copy: Path):
    """reporting and demodata share a level; neither may import the other."""
    (package_copy / "demodata" / "sibling.py").write_text(
        "from qualitylab.reporting import charts  # noqa: F401\n"
    )
    found = _new(package_copy)
    assert len(found) == 1 and "does not go down the layers" in found[0]


def test_private_names_across_modules_are_reported(package_copy: Path):
    _plant(package_copy, "private", "measure/private_user.py")
    found = _new(package_copy)
    assert (
        "qualitylab.measure.private_user:4 imports private"
        " qualitylab.measure.metrics._private_helper" in found
    )
    assert (
        "qualitylab.measure.private_user:8 reads qualitylab.measure.metrics._another_private"
        in found
    )
    assert len(found) == 2


def test_blanket_warning_filters_are_reported(package_copy: Path):
    _plant(package_copy, "blanket", "reporting/blanket.py")
    assert _new(package_copy) == [
        "qualitylab.reporting.blanket:8 warnings.simplefilter('ignore') with no named warning"
    ]


def test_short_names_inside_the_library_are_reported(package_copy: Path):
    _plant(package_copy, "shortname", "detection/shortname.py")
    assert _new(package_copy) == [
        "qualitylab.detection.shortname:3 imports qualitylab.measure.metrics by its short name"
    ]


def test_import_cycles_are_reported(package_copy: Path):
    _plant(package_copy, "cycle_a", "measure/cycle_a.py")
    _plant(package_copy, "cycle_b", "measure/cycle_b.py")
    assert _new(package_copy) == [
        "import cycle: qualitylab.measure.cycle_a <-> qualitylab.measure.cycle_b"
    ]


def test_a_long_module_is_reported(package_copy: Path):
    (package_copy / "runs" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    assert _new(package_copy) == [
        f"qualitylab.runs.long: {MAX_LINES + 1} lines (over {MAX_LINES}; split it by job)"
    ]


def test_long_modules_say_why():
    for path, why in LONG_MODULES.items():
        assert (SRC / path).exists(), path
        assert len(why) > 40, f"{path}: say why it is one job"


@pytest.mark.parametrize("short", OLD_MODULES)
def test_every_old_module_name_still_imports(short: str):
    """``qualitylab.<short>`` is the very module at its new home, not a copy."""
    homes = short_names(SRC)
    assert short in homes
    old = importlib.import_module(f"qualitylab.{short}")
    assert old is importlib.import_module(homes[short])
    if short != "scorecard":  # ``ql.scorecard`` is the function, as it always was
        assert getattr(importlib.import_module("qualitylab"), short) is old


def test_importing_the_scorecard_module_keeps_the_scorecard_function():
    import sys

    import qualitylab
    import qualitylab.scorecard

    module = sys.modules["qualitylab.scorecard"]
    assert module is sys.modules["qualitylab.measure.scorecard"]
    assert qualitylab.scorecard is module.scorecard


def test_from_qualitylab_import_a_module():
    from qualitylab import charts, detect, metrics, report
    from qualitylab.detect import scan
    from qualitylab.metrics import Period

    assert detect.scan is scan and metrics.Period is Period
    assert charts.__name__ == "qualitylab.reporting.charts"
    assert report.__name__ == "qualitylab.reporting.report"


def test_architecture_md_names_every_layer_and_module():
    text = (REPO / "ARCHITECTURE.md").read_text()
    for layer in LAYERS:
        assert f"`{layer}" in text, layer
    for mod in modules(SRC).values():
        if mod.path.name == "__init__.py" and (
            mod.layer is None or mod.layer in LAYERS and mod.path.parent.parent == SRC
        ):
            continue  # the package root and the layer packages
        rel = mod.path.relative_to(SRC).as_posix()
        if mod.path.name == "__init__.py":
            rel = rel.removesuffix("__init__.py")  # a package: ``detection/detect/``
        assert re.search(rf"`{re.escape(rel)}`", text), f"ARCHITECTURE.md does not name {rel}"
    layers = "|".join(LAYERS)
    for named in re.findall(rf"`((?:{layers})/[\w/]*?(?:\.py|/))`", text):
        assert (SRC / named).exists(), f"ARCHITECTURE.md names {named}, which does not exist"


def test_a_submodule_by_its_short_name_is_the_same_module():
    import qualitylab.detect.series as short
    import qualitylab.detection.detect.series as home

    assert short is home


def test_python_dash_m_with_a_short_name_runs_the_module():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "qualitylab.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip().startswith("qualitylab ")
