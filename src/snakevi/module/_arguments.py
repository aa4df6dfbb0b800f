"""Checks of module constructor arguments, with messages that name the argument, value and range.

The modules call these before building any layer, so a bad ``n_latent`` or ``dropout_rate``
is refused by a ``ValueError`` that says what to pass, not by torch deep inside a layer (or,
worse, accepted: ``n_latent=0`` used to train a model with an empty latent space). The model
classes build their module from their arguments, so they get the same checks.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable


def check_int(owner: str, name: str, value: object, minimum: int) -> None:
    """Refuse ``value`` unless it is an integer (not a bool, not a float) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{owner}: {name}={value!r} is not valid; expected an integer >= {minimum}.")


def check_ints(owner: str, name: str, values: Iterable, minimum: int) -> None:
    """:func:`check_int` on each entry of a sequence (the entry's position in the name)."""
    for i, value in enumerate(values):
        check_int(owner, f"{name}[{i}]", value, minimum)


def check_rate(owner: str, name: str, value: object) -> None:
    """Refuse ``value`` unless it is a number in ``[0, 1)`` (a dropout probability)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 <= value < 1.0
    if not ok:
        raise ValueError(f"{owner}: {name}={value!r} is not valid; expected a number in [0, 1).")


def check_flag(owner: str, name: str, value: object) -> None:
    """Refuse anything but ``True``/``False`` (a string such as ``"False"`` would count as true)."""
    if not isinstance(value, bool) and type(value).__name__ != "bool_":  # numpy's bool too
        raise ValueError(f"{owner}: {name}={value!r} is not valid; expected True or False.")


def check_choice(owner: str, name: str, value: object, allowed: Iterable) -> None:
    """Refuse ``value`` unless it is one of ``allowed`` (compared with ``==``, so strings match exactly)."""
    allowed = tuple(allowed)
    if isinstance(value, bool) or value not in allowed:
        raise ValueError(f"{owner}: {name}={value!r} is not valid; choose one of {', '.join(map(repr, allowed))}.")
