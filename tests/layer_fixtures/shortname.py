"""A library module importing by a user-facing short name: the layer test must reject it."""

from qualitylab import metrics


def period() -> object:
    return metrics.Period
