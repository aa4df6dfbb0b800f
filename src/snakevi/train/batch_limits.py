"""``limit_train_batches`` / ``limit_val_batches``: how many minibatches of an epoch to use.

Lightning's semantics: an int is a number of minibatches, a float in [0, 1] a fraction of the
loader's (``int(fraction * len(loader))``, refused when that rounds to none), ``1.0`` or
``None`` all of them. ``limit_val_batches=0`` turns validation off; training needs at least one
minibatch. The first minibatches of the epoch's order are taken, so a limited run sees the
same cells as the start of an unlimited one.
"""

from __future__ import annotations


def check_limit(name: str, value) -> None:
    """Refuse a limit that is neither None, an int >= 0 nor a float in [0, 1], naming it."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}={value!r}: expected an int (minibatches) or a float in [0, 1] (a fraction).")
    if isinstance(value, float) and not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={value!r}: a float is a fraction of the minibatches, in [0, 1]; "
                         "give an int for a number of minibatches.")
    if isinstance(value, int) and value < 0:
        raise ValueError(f"{name}={value!r}: expected a number of minibatches >= 0.")
    if name == "limit_train_batches" and value == 0:
        raise ValueError("limit_train_batches=0 would train on nothing; give at least 1 minibatch (or a fraction > 0).")


def batches_to_use(name: str, value, loader) -> int | None:
    """How many minibatches of ``loader`` an epoch takes (None: all of them)."""
    if value is None or (isinstance(value, float) and value == 1.0):
        return None
    if isinstance(value, int):
        return value
    try:
        total = len(loader)
    except TypeError as err:
        raise ValueError(f"{name}={value!r} is a fraction, but the loader has no len(); give an int.") from err
    count = int(value * total)
    if count == 0 and value > 0:
        raise ValueError(
            f"{name}={value!r} of {total} minibatches is less than one; use at least {1 / total:.4g} "
            "or an int number of minibatches."
        )
    return count
