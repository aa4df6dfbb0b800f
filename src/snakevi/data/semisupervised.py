"""Semi-supervised data: split labelled and unlabelled cells alike, load ``(full, labelled)`` pairs.

scvi-tools' ``SemiSupervisedDataSplitter`` + ``SemiSupervisedDataLoader``/``ConcatDataLoader``:

- the split is made separately for the labelled and the unlabelled cells, each with the
  :class:`~snakevi.data.DataSplitter` rule and the same seed, so both keep the same shares in
  the training, validation and test sets;
- a loader walks its cells (labelled and unlabelled) in minibatches and pairs each with a
  minibatch of its labelled cells; the labelled loader is cycled until the full one ends, so
  an epoch has ``len(full loader)`` steps;
- ``n_samples_per_label`` keeps at most that many labelled cells per class, drawn anew by
  :meth:`SemiSupervisedDataLoader.resample_labels` (the ``SubSampleLabels`` callback calls it
  at each epoch start);
- under DDP (:meth:`SemiSupervisedDataLoader.shard`) both halves of a pair are a rank's share of
  the pair one process sees with a ``world_size`` times larger batch.

Every random choice is a pure function of ``(seed, epoch)`` (the full minibatches use the
same order as :class:`~snakevi.data.AnnDataLoader`), so a resumed run sees the same minibatches.
Differences from scvi-tools: each new pass over the labelled cells within an epoch is shuffled
anew (scvi-tools' ``itertools.cycle`` replays the first pass), a loader without labelled cells
yields plain dicts (scvi-tools' yields nothing), and the split warns once about a 1- or 2-cell
last training minibatch of the combined training set (scvi-tools warns per group).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np

from snakevi._constants import REGISTRY_KEYS
from snakevi.data.celldata import CellData
from snakevi.data.splitter import SplitLoaders, check_training_set, validate_data_split, validate_external_indexing


def unlabeled_code(registry: dict) -> int | None:
    """Label code of the registry's unlabelled category, or ``None`` when none was registered."""
    field = registry["fields"][REGISTRY_KEYS.LABELS_KEY]
    category = field.get("unlabeled_category")
    if category is None:
        return None
    return list(field["categorical_mapping"]).index(category)


def labelled_mask(data: CellData) -> np.ndarray:
    """Boolean ``(n_obs,)``: cells whose label is not the unlabelled category (all, without one)."""
    codes = data.obs[REGISTRY_KEYS.LABELS_KEY][:, 0]
    code = unlabeled_code(data.registry)
    return np.ones(codes.shape[0], dtype=bool) if code is None else codes != code


class SemiSupervisedDataLoader:
    """Iterate ``(full, labelled)`` pairs of minibatch dicts over the cells ``indices``.

    Parameters
    ----------
    data
        A :class:`~snakevi.data.CellData` (or registered AnnData), or a
        :class:`~snakevi.data.device_loader.DeviceCellData` to gather on its device.
    indices
        Cells to iterate over; ``None`` means all.
    labels
        Host label codes of all cells, ``(n_obs,)``; read from ``data`` when it is a CellData.
    unlabeled_code
        The code of unlabelled cells; read from the CellData's registry when not given.
    n_samples_per_label
        Keep at most this many labelled cells per class (``None``: all of them).
    batch_size, shuffle, drop_last, seed
        As for :class:`~snakevi.data.AnnDataLoader` (both halves of a pair).
    device
        Where host-gathered tensors go (``None``: the CPU); ignored for a DeviceCellData.

    Notes
    -----
    ``len(loader)`` is the number of full minibatches. Without labelled cells among
    ``indices`` (or with ``drop_last`` and fewer than ``batch_size`` of them) it yields plain
    dicts instead of pairs.
    """

    def __init__(self, data, indices=None, *, labels=None, unlabeled_code: int | None = None,
                 n_samples_per_label: int | None = None, batch_size: int = 128, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0, device=None) -> None:
        from snakevi.data.device_loader import DeviceAnnDataLoader, DeviceCellData
        from snakevi.data.loader import AnnDataLoader

        if not isinstance(data, (CellData, DeviceCellData)):
            data = CellData.from_anndata(data)
        if labels is None or unlabeled_code is None:
            if not isinstance(data, CellData):
                raise ValueError("SemiSupervisedDataLoader over a DeviceCellData needs labels= and unlabeled_code=.")
            labels = data.obs[REGISTRY_KEYS.LABELS_KEY][:, 0] if labels is None else labels
            if unlabeled_code is None:
                unlabeled_code = _registry_unlabeled_code(data)
        if n_samples_per_label is not None and (isinstance(n_samples_per_label, bool) or int(n_samples_per_label) < 1):
            raise ValueError(f"n_samples_per_label must be None or a positive integer, got {n_samples_per_label!r}.")
        self.data = data
        self.device = None if isinstance(data, DeviceCellData) else device
        loader_cls = DeviceAnnDataLoader if isinstance(data, DeviceCellData) else AnnDataLoader
        kwargs = {} if isinstance(data, DeviceCellData) else {"device": device}
        self.full = loader_cls(data, indices, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                               seed=seed, **kwargs)
        self.indices = self.full.indices
        self.batch_size, self.shuffle, self.drop_last, self.seed = batch_size, bool(shuffle), bool(drop_last), int(seed)
        self.n_samples_per_label = None if n_samples_per_label is None else int(n_samples_per_label)
        self.epoch = 0
        self.rank, self.world_size, self.pad = 0, 1, False
        # Positions (into the data) of this loader's labelled cells, one array per class.
        cell_labels = np.asarray(labels).reshape(-1)[self.indices]
        self.labeled_locs = [self.indices[cell_labels == code] for code in np.unique(cell_labels)
                             if code != unlabeled_code]
        self.labelled_indices = self._subsample(0)

    # -- epochs and labels -------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select epoch ``epoch``'s shuffles (the trainer calls this before each epoch)."""
        self.epoch = int(epoch)
        self.full.set_epoch(epoch)

    def resample_labels(self) -> None:
        """Draw the labelled cells for the current epoch (at most ``n_samples_per_label`` per class)."""
        self.labelled_indices = self._subsample(self.epoch)

    def _subsample(self, epoch: int) -> np.ndarray:
        if not self.labeled_locs:
            return np.zeros(0, dtype=np.int64)
        n = self.n_samples_per_label
        if n is None:
            return np.concatenate(self.labeled_locs)
        rng = np.random.default_rng([self.seed, int(epoch), 2])
        return np.concatenate([loc if len(loc) < n else rng.choice(loc, n, replace=False) for loc in self.labeled_locs])

    def shard(self, rank: int, world_size: int, *, pad: bool) -> None:
        """Visit only rank ``rank``'s share of each pair, for a run of ``world_size`` processes.

        The full minibatches are sharded as :meth:`~snakevi.data.loader.EpochOrder.shard` does.
        The labelled cells (the same draw on every rank) are ordered and cycled as one process
        with a ``world_size`` times larger batch would, and each rank takes every
        ``world_size``-th cell of each labelled minibatch: so pair ``k`` of all ranks together is
        pair ``k`` of that process. With ``pad`` (training) the labelled order wraps around, as
        the full one does, so every rank has labelled cells in every pair (each step waits for
        every rank's classifier). Without it (validation) each cell counts once: the last full
        minibatch may reach only some ranks, which then share its labelled minibatch among
        themselves, and a rank whose share of a labelled minibatch is empty gets the full
        minibatch alone.
        """
        self.full.shard(rank, world_size, pad=pad)
        self.rank, self.world_size, self.pad = int(rank), int(world_size), bool(pad)

    # -- iteration ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.full)

    def _n_labelled(self) -> int:
        """Labelled cells in one pass over all ranks (padded to a multiple of the ranks when ``pad``)."""
        n, w = self.labelled_indices.size, self.world_size
        return -(-n // w) * w if self.pad and w > 1 else n

    def _n_labelled_batches(self) -> int:
        n, size = self._n_labelled(), self.batch_size * self.world_size
        return n // size if self.drop_last else -(-n // size)

    def _labelled_order(self, pass_index: int) -> np.ndarray:
        order = self.labelled_indices
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch, 1, pass_index])
            order = order[rng.permutation(order.size)]
        # As the full order: wrapped around to give every rank a full share (no-op alone).
        return np.resize(order, self._n_labelled()) if order.size else order

    def _gather(self, rows: np.ndarray) -> dict:
        if not isinstance(self.data, CellData):
            return self.data.gather(rows)
        import torch

        tensors = {k: torch.from_numpy(v) for k, v in self.data.gather(rows).items()}
        if self.device is not None:
            tensors = {k: t.to(self.device, non_blocking=True) for k, t in tensors.items()}
        return tensors

    def __iter__(self) -> Iterator:
        n_labelled_batches = self._n_labelled_batches()
        if n_labelled_batches == 0:
            yield from self.full
            return
        size, pass_index, b, order = self.batch_size * self.world_size, 0, 0, self._labelled_order(0)
        w, n_full = self.world_size, self.full.indices.size
        n_full = -(-n_full // w) * w if self.pad else n_full
        for k, full_batch in enumerate(self.full):
            if b == n_labelled_batches:
                pass_index, b = pass_index + 1, 0
                order = self._labelled_order(pass_index)
            # The ranks that hold a share of full minibatch k share its labelled minibatch.
            n_ranks = min(w, n_full - k * size)
            rows = order[b * size : (b + 1) * size][self.rank :: n_ranks]
            yield (full_batch, self._gather(rows)) if rows.size else full_batch
            b += 1


def _registry_unlabeled_code(data: CellData) -> int:
    code = unlabeled_code(data.registry)
    # Without an unlabelled category every cell is labelled: -1 matches no code.
    return -1 if code is None else code


class SemiSupervisedDataSplitter(SplitLoaders):
    """Split labelled and unlabelled cells separately; loaders of ``(full, labelled)`` pairs.

    Parameters
    ----------
    data
        A :class:`~snakevi.data.CellData` (or registered AnnData) whose registry names the
        unlabelled category (``SCANVI.setup_anndata``); without one every cell is labelled.
    train_size, validation_size
        As for :class:`~snakevi.data.DataSplitter`, applied to each group (``SCANVI.train``
        passes ``train_size=0.9`` explicitly, as scvi-tools does, so no cells are moved).
    batch_size, shuffle_set_split, seed, drop_last, external_indexing
        As for :class:`~snakevi.data.DataSplitter`; the seed also drives the loaders.
    n_samples_per_label
        Passed to the loaders (see :class:`SemiSupervisedDataLoader`).
    device
        Where minibatches go (``None``: the CPU).
    data_on_device
        Copy the data to ``device`` once and gather minibatches there.

    Attributes
    ----------
    train_idx, val_idx, test_idx
        Cell positions of each set: the labelled cells first, then the unlabelled ones.
    """

    def __init__(self, data, train_size: float | None = None, validation_size: float | None = None,
                 batch_size: int = 128, shuffle_set_split: bool = True, n_samples_per_label: int | None = None,
                 seed: int = 0, drop_last: bool = False, external_indexing=None, device=None,
                 data_on_device: bool = False) -> None:
        self.data = data if isinstance(data, CellData) else CellData.from_anndata(data)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        self.drop_last, self.seed = bool(drop_last), int(seed)
        self.n_samples_per_label = n_samples_per_label
        self.device, self.data_on_device = device, bool(data_on_device)
        self._device_data = None
        self.labels = self.data.obs[REGISTRY_KEYS.LABELS_KEY][:, 0]
        self.unlabeled_code = _registry_unlabeled_code(self.data)
        mask = self.labels != self.unlabeled_code
        self.labeled_indices, self.unlabeled_indices = np.flatnonzero(mask), np.flatnonzero(~mask)
        n_obs = len(self.data)
        if external_indexing is not None:
            self.train_idx, self.val_idx, self.test_idx = validate_external_indexing(n_obs, external_indexing)
        else:
            self.train_size = 0.9 if train_size is None else float(train_size)
            parts = [self._split_group(g, train_size, validation_size, shuffle_set_split)
                     for g in (self.labeled_indices, self.unlabeled_indices)]
            self.train_idx, self.val_idx, self.test_idx = (np.concatenate([p[i] for p in parts]) for i in range(3))
        n_train = self.train_idx.size
        check_training_set(n_train, n_obs, self.batch_size, self.drop_last)
        tail = n_train % self.batch_size
        if tail in (1, 2) and not self.drop_last:
            warnings.warn(
                f"The last training minibatch will have only {tail} cell(s) ({n_train} training cells, "
                f"batch_size={self.batch_size}), which can break BatchNorm; change batch_size or train_size, "
                "or use drop_last=True.",
                UserWarning,
                stacklevel=2,
            )

    def _split_group(self, group: np.ndarray, train_size, validation_size, shuffle_set_split):
        """scvi-tools' split of one group: ``RandomState(seed)`` permutation, validation first."""
        if group.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        with warnings.catch_warnings():
            # The 1-2 cell tail matters for the combined training set, checked once afterwards.
            warnings.simplefilter("ignore", UserWarning)
            n_train, n_val = validate_data_split(
                group.size, self.train_size, validation_size, self.batch_size, self.drop_last,
                train_size_is_none=train_size is None,
            )
        if shuffle_set_split:
            group = group[np.random.RandomState(seed=self.seed).permutation(group.size)]
        return group[n_val : n_val + n_train], group[:n_val], group[n_val + n_train :]

    @property
    def has_labels(self) -> bool:
        """Whether any cell is labelled (otherwise the loaders are plain ``AnnDataLoader``)."""
        return self.labeled_indices.size > 0

    def _source(self):
        if not self.data_on_device:
            return self.data
        if self._device_data is None:
            from snakevi.data.device_loader import DeviceCellData

            self._device_data = DeviceCellData(self.data, self.device)
        return self._device_data

    def _loader(self, indices, shuffle: bool, drop_last: bool):
        source = self._source()
        if self.has_labels:
            return SemiSupervisedDataLoader(
                source, indices, labels=self.labels, unlabeled_code=self.unlabeled_code,
                n_samples_per_label=self.n_samples_per_label, batch_size=self.batch_size, shuffle=shuffle,
                drop_last=drop_last, seed=self.seed, device=self.device,
            )
        if self.data_on_device:
            from snakevi.data.device_loader import DeviceAnnDataLoader

            return DeviceAnnDataLoader(source, indices, batch_size=self.batch_size, shuffle=shuffle,
                                       drop_last=drop_last, seed=self.seed)
        from snakevi.data.loader import AnnDataLoader

        return AnnDataLoader(source, indices, batch_size=self.batch_size, shuffle=shuffle, drop_last=drop_last,
                             seed=self.seed, device=self.device)


__all__ = ["SemiSupervisedDataLoader", "SemiSupervisedDataSplitter", "labelled_mask", "unlabeled_code"]
