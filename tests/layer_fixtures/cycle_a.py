"""Half of an import cycle (with cycle_b): the layer test must reject it."""

from qualitylab.measure import cycle_b  # noqa: F401
