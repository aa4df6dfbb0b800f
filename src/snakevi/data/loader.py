"""``AnnDataLoader``: minibatches of torch tensors from a registered AnnData or a CellData.

The only module of ``snakevi.data`` that imports torch. Each minibatch is gathered in one call
(like scvi-tools, whose loader fetches a whole minibatch per ``__getitem__``), and the shuffle
order is a pure function of ``(seed, epoch)``, so resuming at epoch ``e`` needs no loader state.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from snakevi.data.celldata import CellData


def _as_celldata(data) -> CellData:
    return data if isinstance(data, CellData) else CellData.from_anndata(data)


def shuffle_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of ``range(n)`` used for epoch ``epoch``: ``default_rng([seed, epoch])``."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


class EpochOrder:
    """What every loader shares: which cells, in minibatches of what size, in what order per epoch.

    Parameters
    ----------
    n_obs
        Cells in the data the positions refer to.
    indices, batch_size, shuffle, drop_last, seed
        As for :class:`AnnDataLoader`.
    """

    def __init__(self, n_obs: int, indices=None, batch_size: int = 128, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        n = int(n_obs)
        if indices is None:
            self.indices = np.arange(n, dtype=np.int64)
        else:
            self.indices = np.asarray(indices, dtype=np.int64).ravel()
            if self.indices.size and (self.indices.min() < -n or self.indices.max() >= n):
                raise IndexError(f"indices must lie in [0, {n}) for data with {n} cells.")
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.epoch = 0
        self.rank, self.world_size, self.pad = 0, 1, False

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle order of epoch ``epoch`` for the next iteration."""
        self.epoch = int(epoch)

    def shard(self, rank: int, world_size: int, *, pad: bool) -> None:
        """Visit only rank ``rank``'s share of each epoch's order, for a run of ``world_size`` processes.

        Every rank computes the same order (from ``(seed, epoch)``) and takes every
        ``world_size``-th cell of it, starting at ``rank``; so minibatch ``k`` of all ranks together
        is minibatch ``k`` of one process with a ``world_size`` times larger ``batch_size``.

        Parameters
        ----------
        rank, world_size
            This process's index and the number of processes.
        pad
            Repeat the first cells of the order until every rank has as many cells (and so as
            many minibatches) as the others: training needs it, since each step waits for every
            rank. Validation does not (no step), and then counts each cell once.
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must lie in [0, world_size={world_size}).")
        if self.indices.size < world_size and (pad or self.indices.size):
            which = "training" if pad else "validation"
            raise ValueError(
                f"{self.indices.size} {which} cell(s) cannot be shared by {world_size} processes: each "
                f"needs at least one. Give the {which} set at least {world_size} cells, or train with "
                "fewer processes (devices)."
            )
        self.rank, self.world_size, self.pad = int(rank), int(world_size), bool(pad)

    def _n_visited(self) -> int:
        n, w = self.indices.size, self.world_size
        if w == 1:
            return n
        return -(-n // w) if self.pad else len(range(self.rank, n, w))

    def __len__(self) -> int:
        n = self._n_visited()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self) -> np.ndarray:
        """Cell positions in the order this epoch visits them (this rank's share, when sharded)."""
        order = self.indices
        if self.shuffle:
            order = order[shuffle_order(order.size, self.seed, self.epoch)]
        if self.world_size == 1:
            return order
        if self.pad and order.size % self.world_size:
            # As torch's DistributedSampler: the order wraps around to give every rank a full share.
            order = np.resize(order, -(-order.size // self.world_size) * self.world_size)
        return order[self.rank :: self.world_size]


class AnnDataLoader(EpochOrder):
    """Iterate minibatch dicts of torch tensors (keys and dtypes as in CONTRACTS: "X", "batch", ...).

    Parameters
    ----------
    data
        A registered AnnData (see :func:`snakevi.data.setup_anndata`) or a :class:`CellData`.
    indices
        Cells to iterate over (positions); ``None`` means all cells, in order.
    batch_size
        Cells per minibatch.
    shuffle
        Visit ``indices`` in a new order each epoch; the order depends only on ``(seed, epoch)``.
    drop_last
        Drop the last minibatch when it has fewer than ``batch_size`` cells.
    seed
        Seed of the shuffle order.
    device
        Where to put the tensors (``None``: leave them on the CPU).

    Notes
    -----
    Call :meth:`set_epoch` before each epoch (the trainer does); without it every pass over a
    shuffled loader uses the order of epoch 0.
    """

    def __init__(self, data, indices=None, batch_size: int = 128, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0, device=None) -> None:
        self.data = _as_celldata(data)
        super().__init__(len(self.data), indices, batch_size, shuffle, drop_last, seed)
        self.device = None if device is None else torch.device(device)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        order = self.order()
        for b in range(len(self)):
            batch = self.data.gather(order[b * self.batch_size : (b + 1) * self.batch_size])
            tensors = {k: torch.from_numpy(v) for k, v in batch.items()}
            if self.device is not None:
                tensors = {k: t.to(self.device, non_blocking=True) for k, t in tensors.items()}
            yield tensors
