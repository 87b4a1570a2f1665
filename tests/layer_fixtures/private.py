"""A module that takes another module's private helper: the layer test must reject it."""

from qualitylab.measure import metrics as m
from qualitylab.measure.metrics import _private_helper


def uses() -> object:
    return m._another_private, _private_helper
