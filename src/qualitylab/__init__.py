"""qualitylab: a notebook workbench for Trust & Safety quality operations.

The code is layered (see ``ARCHITECTURE.md``): :mod:`qualitylab.data`,
:mod:`qualitylab.measure`, :mod:`qualitylab.detection`,
:mod:`qualitylab.operations`, :mod:`qualitylab.reporting` and
:mod:`qualitylab.demodata`, :mod:`qualitylab.runs`. Every module keeps the
short name it had before the layers (``qualitylab.metrics``,
``qualitylab.detect``, ``qualitylab.report``, ...): :data:`MODULES` maps each
short name to its home, and ``import qualitylab.metrics`` gives the very same
module object as ``import qualitylab.measure.metrics``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

from qualitylab.errors import (
    DataContractError,
    NotebookRunError,
    ParameterError,
    QualityLabError,
)
from qualitylab.version import __version__

#: Short module name -> the module's home in its layer.
MODULES: dict[str, str] = {
    # data
    "contract": "qualitylab.data.contract",
    "localtime": "qualitylab.data.localtime",
    "params": "qualitylab.data.params",
    "sources": "qualitylab.data.sources",
    # measurement
    "agreement": "qualitylab.measure.agreement",
    "aieval": "qualitylab.measure.aieval",
    "calibration": "qualitylab.measure.calibration",
    "metrics": "qualitylab.measure.metrics",
    "reconcile": "qualitylab.measure.reconcile",
    "scorecard": "qualitylab.measure.scorecard",
    "stats": "qualitylab.measure.stats",
    # detection and explanation
    "alertstore": "qualitylab.detection.alertstore",
    "detect": "qualitylab.detection.detect",
    "findings": "qualitylab.detection.findings",
    "incidents": "qualitylab.detection.incidents",
    "rca": "qualitylab.detection.rca",
    "sampling": "qualitylab.detection.sampling",
    # operations
    "capacity": "qualitylab.operations.capacity",
    "escalations": "qualitylab.operations.escalations",
    "forecast": "qualitylab.operations.forecast",
    "readiness": "qualitylab.operations.readiness",
    "redteam": "qualitylab.operations.redteam",
    "rollout": "qualitylab.operations.rollout",
    "watch": "qualitylab.operations.watch",
    # reporting
    "charts": "qualitylab.reporting.charts",
    "digest": "qualitylab.reporting.digest",
    "headline": "qualitylab.reporting.headline",
    "prefetch": "qualitylab.reporting.prefetch",
    "report": "qualitylab.reporting.report",
    # demo data
    "demo": "qualitylab.demodata.generate",
    "demostream": "qualitylab.demodata.stream",
    # runs
    "cli": "qualitylab.runs.cli",
    "cron": "qualitylab.runs.cron",
    "replay": "qualitylab.runs.replay",
    "runner": "qualitylab.runs.runner",
    "schedule": "qualitylab.runs.schedule",
    "watchcli": "qualitylab.runs.watchcli",
}


def _home(fullname: str) -> str | None:
    """``qualitylab.detect.series`` -> ``qualitylab.detection.detect.series``; None if not short."""
    prefix, _, rest = fullname.partition(".")
    short, dot, tail = rest.partition(".")
    if prefix != "qualitylab" or short not in MODULES:
        return None
    return MODULES[short] + dot + tail


class _ShortNames(importlib.abc.MetaPathFinder, importlib.abc.InspectLoader):
    """Import ``qualitylab.<short>[.<sub>]`` as the module at its home (same object, not a copy)."""

    def find_spec(self, fullname, path=None, target=None):
        if _home(fullname) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return importlib.import_module(_home(spec.name))

    def exec_module(self, module):
        """Nothing to run: the module was executed at its home."""

    def get_code(self, fullname):  # ``python -m qualitylab.cli`` runs the home's code
        home = importlib.util.find_spec(_home(fullname))
        return home.loader.get_code(home.name)

    def get_source(self, fullname):
        home = importlib.util.find_spec(_home(fullname))
        return home.loader.get_source(home.name)


if not any(isinstance(f, _ShortNames) for f in sys.meta_path):
    sys.meta_path.insert(0, _ShortNames())

from qualitylab.data.params import load_parameters  # noqa: E402
from qualitylab.data.sources import Dataset, open_dataset  # noqa: E402
from qualitylab.measure import metrics  # noqa: E402
from qualitylab.measure.scorecard import scorecard  # noqa: E402

# Short names of the modules imported above are registered now: a later
# ``import qualitylab.scorecard`` then finds the module loaded and does not set
# the package attribute ``scorecard`` (the function) to the module.
for _short, _where in MODULES.items():
    if _where in sys.modules:
        sys.modules.setdefault(f"qualitylab.{_short}", sys.modules[_where])
del _short, _where


def __getattr__(name: str):  # lazy submodules: ``ql.detect``, ``ql.charts``, ...
    if name in MODULES:
        return importlib.import_module(f"qualitylab.{name}")
    raise AttributeError(f"module 'qualitylab' has no attribute {name!r}")


__all__ = [
    "MODULES",
    "Dataset",
    "load_parameters",
    "metrics",
    "open_dataset",
    "scorecard",
    "DataContractError",
    "NotebookRunError",
    "ParameterError",
    "QualityLabError",
    "__version__",
]
