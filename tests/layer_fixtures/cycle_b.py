"""Half of an import cycle (with cycle_a), through a lazy import."""


def back() -> object:
    from qualitylab.measure import cycle_a

    return cycle_a
