"""Pure schedule functions: the KL warm-up weight and the default number of epochs.

Both are plain functions of integers (nanoGPT's ``get_lr(it)`` style) so they can be tested
with a table and reused by the model layer without a trainer.
"""

from __future__ import annotations

import warnings


def compute_kl_weight(
    epoch: int,
    step: int,
    n_epochs_kl_warmup: int | None,
    n_steps_kl_warmup: int | None,
    max_kl_weight: float = 1.0,
    min_kl_weight: float = 0.0,
) -> float:
    """Weight on the KL divergence for the current epoch or optimizer step.

    The weight rises linearly from ``min_kl_weight`` to ``max_kl_weight`` over
    ``n_epochs_kl_warmup`` epochs or, when that is ``None`` (or 0), over ``n_steps_kl_warmup``
    optimizer steps; afterwards it stays at ``max_kl_weight``. With both ``None`` the weight is
    ``max_kl_weight`` from the start. Same rule as scvi-tools' ``_compute_kl_weight``.

    Parameters
    ----------
    epoch
        Current epoch, counted from 0.
    step
        Optimizer steps taken so far (the trainer's ``global_step``), counted from 0.
    n_epochs_kl_warmup
        Epochs of warm-up; takes precedence over ``n_steps_kl_warmup`` when set.
    n_steps_kl_warmup
        Optimizer steps of warm-up; used only when ``n_epochs_kl_warmup`` is ``None`` or 0.
    max_kl_weight
        Weight at the end of warm-up.
    min_kl_weight
        Weight at the start of warm-up.

    Returns
    -------
    float
        The KL weight.

    Examples
    --------
    >>> compute_kl_weight(epoch=200, step=0, n_epochs_kl_warmup=400, n_steps_kl_warmup=None)
    0.5
    """
    if min_kl_weight > max_kl_weight:
        raise ValueError(
            f"min_kl_weight={min_kl_weight} is larger than max_kl_weight={max_kl_weight}; "
            "the KL weight warms up from min to max, so pass min_kl_weight <= max_kl_weight."
        )
    slope = max_kl_weight - min_kl_weight
    if n_epochs_kl_warmup:
        if epoch < n_epochs_kl_warmup:
            return slope * (epoch / n_epochs_kl_warmup) + min_kl_weight
    elif n_steps_kl_warmup:
        if step < n_steps_kl_warmup:
            return slope * (step / n_steps_kl_warmup) + min_kl_weight
    return float(max_kl_weight)


def get_max_epochs_heuristic(n_obs: int, epochs_cap: int = 400, decay_at_n_obs: int = 20000) -> int:
    """Default number of training epochs for a dataset of ``n_obs`` cells (scvi-tools' rule).

    ``max(1, min(round(decay_at_n_obs / n_obs * epochs_cap), epochs_cap))``: small datasets get
    ``epochs_cap`` epochs, larger ones proportionally fewer so the number of optimizer steps
    stays roughly constant (100 000 cells -> 80 epochs).

    Parameters
    ----------
    n_obs
        Number of cells in the dataset (all of them, not just the training split).
    epochs_cap
        Largest number of epochs returned.
    decay_at_n_obs
        Dataset size above which the number of epochs starts to decrease.

    Returns
    -------
    int
        Number of epochs, at least 1. Warns when the result is 1, which usually means a very
        large dataset where one pass may not be enough.
    """
    if n_obs < 1:
        raise ValueError(f"n_obs={n_obs}: the dataset has no cells; pass the number of cells (>= 1).")
    max_epochs = max(1, min(round(decay_at_n_obs / n_obs * epochs_cap), epochs_cap))
    if max_epochs == 1:
        warnings.warn(
            f"get_max_epochs_heuristic: {n_obs} cells give max_epochs=1; a single pass may not "
            "train the model well. Pass max_epochs explicitly to train for longer.",
            UserWarning,
            stacklevel=2,
        )
    return max_epochs
