"""A data-layer module that imports from the runs layer: the layer test must reject it."""

from qualitylab.runs import runner


def notebooks() -> tuple:
    return runner.NOTEBOOKS
