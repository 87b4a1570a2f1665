"""A module that silences every warning: the layer test must reject it."""

import warnings


def quiet() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.filterwarnings("ignore", message="one named warning")  # allowed
