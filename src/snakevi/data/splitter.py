"""Train/validation/test split with scvi-tools' rules, and the loaders for each set.

Same seed, same ``n_obs`` and same sizes give the same split as scvi-tools' ``DataSplitter``
with ``scvi.settings.seed`` set to that seed: ``np.random.RandomState(seed).permutation(n)``
sliced validation first, then train, then test.
"""

from __future__ import annotations

import logging
import warnings
from math import ceil, floor

import numpy as np

log = logging.getLogger(__name__)


def validate_data_split(
    n_obs: int,
    train_size: float,
    validation_size: float | None = None,
    batch_size: int | None = None,
    drop_last: bool = False,
    train_size_is_none: bool = True,
) -> tuple[int, int]:
    """Sizes ``(n_train, n_val)`` of a split, as scvi-tools' ``validate_data_split``.

    ``n_train = ceil(train_size * n_obs)``; ``n_val = floor(validation_size * n_obs)``, or the
    rest when ``validation_size`` is None. If the last training minibatch would hold 1 or 2
    cells (``n_train % batch_size`` in {1, 2}) and ``drop_last`` is False, those cells move to
    the validation set (with a warning) when the user left ``train_size`` unset
    (``train_size_is_none``); otherwise it only warns. A 1-cell minibatch breaks BatchNorm
    ("Expected more than 1 value per channel").
    """
    if not 0.0 < train_size <= 1.0:
        raise ValueError(f"train_size must be in (0, 1], got {train_size!r}.")
    n_train = ceil(train_size * n_obs)
    if validation_size is None:
        n_val = n_obs - n_train
    elif not 0.0 <= validation_size < 1.0:
        raise ValueError(f"validation_size must be in [0, 1), got {validation_size!r}.")
    elif train_size + validation_size > 1:
        raise ValueError(
            f"train_size + validation_size must be at most 1, got {train_size} + {validation_size}."
        )
    else:
        n_val = floor(n_obs * validation_size)
    if n_train == 0:
        raise ValueError(
            f"With n_obs={n_obs}, train_size={train_size} and validation_size={validation_size} "
            "the training set is empty; raise train_size or use more cells."
        )
    if batch_size is not None and not drop_last:
        tail = n_train % batch_size
        if tail in (1, 2):
            if not train_size_is_none:
                warnings.warn(
                    f"The last training minibatch will have only {tail} cell(s) "
                    f"({n_train} training cells, batch_size={batch_size}), which can break "
                    "BatchNorm; change batch_size or train_size, or use drop_last=True.",
                    UserWarning,
                    stacklevel=3,
                )
            else:
                n_train -= tail
                if n_val > 0:
                    n_val += tail
                    warnings.warn(
                        f"{tail} cell(s) moved from the training set to the validation set so that "
                        "no training minibatch has 1 or 2 cells; pass train_size to avoid this.",
                        UserWarning,
                        stacklevel=3,
                    )
                else:
                    # scvi-tools moves them out of training silently here; they end in the test set.
                    warnings.warn(
                        f"{tail} cell(s) moved from the training set to the test set so that no "
                        "training minibatch has 1 or 2 cells; pass train_size to avoid this.",
                        UserWarning,
                        stacklevel=3,
                    )
    return n_train, n_val


def check_training_set(n_train: int, n_obs: int, batch_size: int, drop_last: bool) -> None:
    """Refuse a training set that cannot be trained on; log when it is one short minibatch.

    As scvi-tools, a ``batch_size`` larger than the training set is no error: each epoch is
    one minibatch of all ``n_train`` cells (scvi-tools' ``validate_data_split`` only moves or
    warns about a 1-2 cell last minibatch, ``src/scvi/dataloaders/_data_splitting.py``
    L70-91 at scverse/scvi-tools@93dc4fa, and its ``AnnDataLoader`` yields the short batch).
    Refused: fewer than 2 training cells (one cell in training mode breaks BatchNorm: "Expected
    more than 1 value per channel"; none after that rule moved a 1-2 cell tail), and
    ``drop_last`` dropping the only minibatch (an epoch without a step).
    """
    if n_train < 2:
        raise ValueError(
            f"Too few cells to train: {n_obs} cell(s) leave {n_train} for training, and training needs at "
            "least 2 (a minibatch of one cell breaks BatchNorm; without train_size, a last minibatch of 1 or "
            "2 cells is moved out of the training set, as in scvi-tools). Train on at least 3 cells."
        )
    if n_train < batch_size:
        if drop_last:
            raise ValueError(
                f"drop_last=True would drop the only training minibatch: batch_size={batch_size} is larger "
                f"than the training set ({n_train} of {n_obs} cells). Use drop_last=False (one minibatch of "
                f"{n_train} cells) or batch_size <= {n_train}."
            )
        log.info(
            "batch_size=%d is larger than the training set (%d of %d cells): each epoch trains on one "
            "minibatch of %d cells, as in scvi-tools.", batch_size, n_train, n_obs, n_train,
        )


def validate_external_indexing(n_obs: int, external_indexing) -> list[np.ndarray]:
    """Check user-given ``[train, val, test]`` positions; return them as three int64 arrays.

    Missing sets may be ``None`` or left out. Refuses non-integer positions, positions outside
    ``[0, n_obs)``, duplicates within a set, overlap between sets and (as scvi-tools) cells that
    belong to no set.
    """
    if not isinstance(external_indexing, (list, tuple)) or len(external_indexing) > 3:
        raise ValueError("external_indexing must be a list [train, validation, test] of index arrays.")
    sets = list(external_indexing) + [None] * (3 - len(external_indexing))
    names = ("train", "validation", "test")
    arrays = []
    for name, idx in zip(names, sets):
        arr = np.asarray([] if idx is None else idx)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"external_indexing {name} set must hold integer positions, got dtype {arr.dtype}.")
        arr = arr.astype(np.int64).ravel()
        if arr.size and (arr.min() < 0 or arr.max() >= n_obs):
            raise ValueError(f"external_indexing {name} set has positions outside [0, {n_obs}).")
        uniq, counts = np.unique(arr, return_counts=True)
        if (counts > 1).any():
            raise ValueError(
                f"external_indexing {name} set lists {int((counts > 1).sum())} position(s) more than once, "
                f"e.g. {uniq[counts > 1][:5].tolist()}."
            )
        arrays.append(arr)
    for i in range(3):
        for j in range(i + 1, 3):
            both = np.intersect1d(arrays[i], arrays[j])
            if both.size:
                raise ValueError(
                    f"external_indexing {names[i]} and {names[j]} sets share {both.size} position(s), "
                    f"e.g. {both[:5].tolist()}; each cell may be in one set only."
                )
    n_assigned = sum(a.size for a in arrays)
    if n_assigned < n_obs:
        raise ValueError(
            f"external_indexing assigns {n_assigned} of {n_obs} cells; put every cell in one of the "
            "three sets (or subset the data first)."
        )
    return arrays


class SplitLoaders:
    """The three loaders of a splitter; subclasses set ``train_idx``/``val_idx``/``test_idx``,
    ``drop_last`` and ``_loader(indices, shuffle, drop_last)``."""

    def train_dataloader(self):
        """Loader over the training cells, shuffled per epoch (call ``set_epoch``)."""
        return self._loader(self.train_idx, shuffle=True, drop_last=self.drop_last)

    def val_dataloader(self):
        """Loader over the validation cells in order, or ``None`` when there are none."""
        return self._loader(self.val_idx, shuffle=False, drop_last=False) if self.val_idx.size else None

    def test_dataloader(self):
        """Loader over the test cells in order, or ``None`` when there are none."""
        return self._loader(self.test_idx, shuffle=False, drop_last=False) if self.test_idx.size else None


class DataSplitter(SplitLoaders):
    """Split cells into train/validation/test and build a loader for each.

    Parameters
    ----------
    data
        A registered AnnData or a :class:`~snakevi.data.CellData`.
    train_size
        Fraction of cells for training, in (0, 1]; ``None`` means 0.9 plus scvi-tools' rule
        that moves a 1- or 2-cell last minibatch to validation (see :func:`validate_data_split`).
    validation_size
        Fraction for validation; ``None`` means all cells not in training.
    batch_size
        Cells per minibatch of every loader; one larger than the training set gives one
        short minibatch per epoch (logged; see :func:`check_training_set`).
    shuffle_set_split
        Permute cells before slicing; ``False`` slices in the data's order.
    seed
        Seed of the split permutation and of the training loader's shuffle.
    drop_last
        Drop the last incomplete training minibatch.
    external_indexing
        Explicit ``[train, validation, test]`` positions, instead of sizes.
    device
        Passed to every loader.
    """

    def __init__(self, data, train_size: float | None = None, validation_size: float | None = None,
                 batch_size: int = 128, shuffle_set_split: bool = True, seed: int = 0,
                 drop_last: bool = False, external_indexing=None, device=None) -> None:
        from snakevi.data.celldata import CellData

        self.data = data if isinstance(data, CellData) else CellData.from_anndata(data)
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.device = device
        n_obs = len(self.data)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        if external_indexing is not None:
            self.train_idx, self.val_idx, self.test_idx = validate_external_indexing(n_obs, external_indexing)
            n_tail = self.train_idx.size % self.batch_size
            if n_tail in (1, 2) and not self.drop_last:
                warnings.warn(
                    f"The last training minibatch will have only {n_tail} cell(s); change batch_size "
                    "or the external indices to avoid BatchNorm errors.",
                    UserWarning,
                    stacklevel=2,
                )
        else:
            self.train_size = 0.9 if train_size is None else float(train_size)
            n_train, n_val = validate_data_split(
                n_obs, self.train_size, validation_size, self.batch_size, self.drop_last,
                train_size_is_none=train_size is None,
            )
            indices = np.arange(n_obs)
            if shuffle_set_split:
                indices = np.random.RandomState(seed=self.seed).permutation(indices)
            self.val_idx = indices[:n_val]
            self.train_idx = indices[n_val : n_val + n_train]
            self.test_idx = indices[n_val + n_train :]
        check_training_set(self.train_idx.size, n_obs, self.batch_size, self.drop_last)

    def _loader(self, indices, shuffle: bool, drop_last: bool):
        from snakevi.data.loader import AnnDataLoader

        return AnnDataLoader(self.data, indices=indices, batch_size=self.batch_size, shuffle=shuffle,
                             drop_last=drop_last, seed=self.seed, device=self.device)
