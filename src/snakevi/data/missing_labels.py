"""Cells whose label is missing (NaN in ``labels_key``): ``setup.missing_labels``.

``"error"`` (the default) refuses them at registration. ``"unlabeled"`` gives them the label
``unlabeled_category`` (scANVI then predicts them; every model class leaves them out of the
label-based metrics). ``"drop"`` leaves those cells out of the run.

The register step applies the rule and records it in the registry (``"missing_labels"``); the
prepare and export steps read the same .h5ad and apply the recorded rule again, so every step
sees the same cells with the same labels.
"""

from __future__ import annotations

import numpy as np

MISSING_LABELS = ("error", "unlabeled", "drop")


def missing_label_mask(obs, labels_key: str) -> np.ndarray:
    """Boolean mask of the cells whose ``obs[labels_key]`` is missing."""
    return obs[labels_key].isna().to_numpy()


def apply_missing_labels(obs, rule: dict | None):
    """``(obs, keep)`` after ``rule`` (a registry's ``"missing_labels"`` entry; ``None``: nothing).

    ``keep`` is the boolean mask of the cells kept (``None`` when every cell is); ``obs`` is a
    new frame when anything changed, the given one otherwise.
    """
    if not rule or rule.get("mode", "error") == "error":
        return obs, None
    key = rule["labels_key"]
    if key not in obs.columns:
        return obs, None  # the usual missing-column error comes from the registry checks
    missing = missing_label_mask(obs, key)
    if not missing.any():
        return obs, None
    if rule["mode"] == "drop":
        return obs.loc[~missing].copy(), ~missing
    filled = obs.copy()
    column = filled[key]
    value = rule["unlabeled_category"]
    if hasattr(column, "cat"):
        if value not in column.cat.categories:
            column = column.cat.add_categories([value])
        filled[key] = column.fillna(value)
    else:
        filled[key] = column.astype(object).where(~missing, value)
    return filled, None


def apply_missing_labels_to_anndata(adata, rule: dict | None):
    """``(adata, keep)``: :func:`apply_missing_labels` on an AnnData (the kept cells' copy if any drop)."""
    obs, keep = apply_missing_labels(adata.obs, rule)
    if keep is not None:
        return adata[keep].copy(), keep
    if obs is not adata.obs:
        adata.obs = obs
    return adata, None


def missing_labels_rule(mode: str, labels_key: str | None, unlabeled_category: str | None,
                        n_cells: int) -> dict | None:
    """The registry's ``"missing_labels"`` entry (``None`` for the default, ``"error"``)."""
    if mode == "error":
        return None
    return {"mode": mode, "labels_key": labels_key, "unlabeled_category": unlabeled_category,
            "n_cells": int(n_cells)}
