"""Small constructed embeddings with known answers for the metric tests."""

from __future__ import annotations

import numpy as np


def grid_design(n_labels: int, n_batches: int, per_cell: int):
    """Label and batch codes with ``per_cell`` cells for every (label, batch) pair."""
    labels = np.repeat(np.arange(n_labels), n_batches * per_cell)
    batch = np.tile(np.repeat(np.arange(n_batches), per_cell), n_labels)
    return labels, batch


def embedding(labels, batch, *, label_sep: float, batch_sep: float, dims: int = 5, seed: int = 0):
    """Unit-variance noise around a centre per label, shifted by ``batch_sep`` per batch.

    ``batch_sep = 0``: batches perfectly mixed within each label; large ``batch_sep``: every
    batch an island. ``label_sep = 0``: labels mixed; large: every label its own cluster.
    Centres sit on orthogonal axes so no two groups are closer than intended.
    """
    rng = np.random.default_rng(seed)
    n_l, n_b = labels.max() + 1, batch.max() + 1
    X = rng.normal(size=(labels.size, dims + n_l + n_b))
    X[np.arange(labels.size), dims + labels] += label_sep
    X[np.arange(labels.size), dims + n_l + batch] += batch_sep
    return X


def mixed_batches(n_labels=2, n_batches=2, per_cell=40, seed=0):
    """Labels far apart, batches perfectly mixed inside each label: ideal integration."""
    labels, batch = grid_design(n_labels, n_batches, per_cell)
    return embedding(labels, batch, label_sep=30.0, batch_sep=0.0, seed=seed), batch, labels


def separated_batches(n_labels=2, n_batches=2, per_cell=40, seed=0):
    """Labels far apart and, inside each, every batch a far island: no integration at all."""
    labels, batch = grid_design(n_labels, n_batches, per_cell)
    return embedding(labels, batch, label_sep=60.0, batch_sep=30.0, seed=seed), batch, labels


def mixed_labels(n_labels=3, n_batches=2, per_cell=30, seed=0):
    """One blob where labels are assigned at random: no biology conserved (batches also mixed)."""
    labels, batch = grid_design(n_labels, n_batches, per_cell)
    rng = np.random.default_rng(seed + 1)
    return embedding(labels, batch, label_sep=0.0, batch_sep=0.0, seed=seed), batch, rng.permutation(labels)
