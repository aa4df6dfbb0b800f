"""Minibatches gathered where training runs: ``DeviceCellData`` and ``DeviceAnnDataLoader``.

:class:`~snakevi.data.loader.AnnDataLoader` gathers each minibatch on the host and copies the
dense ``[B, G]`` block to the GPU, one copy per step. Here the data is copied to the device
once (the CSR pieces, or the dense matrix, and the per-cell arrays), and each minibatch is
densified there. The host still decides the epoch's order (the same ``shuffle_order``
permutation as ``AnnDataLoader``) and, from its own copy of ``indptr``, how many stored
values each minibatch holds; so the device never has to report a size back, and the loop
never waits on it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch

from snakevi._constants import REGISTRY_KEYS
from snakevi.data.celldata import CellData
from snakevi.data.loader import EpochOrder

log = logging.getLogger(__name__)

#: Elements per host-to-device copy while uploading: bounds the host memory a memory-mapped
#: prepared folder needs (one block read at a time), 64 MiB of float32.
_UPLOAD_BLOCK = 1 << 24
#: ``data_on_device="auto"`` uses the device only if the data takes less than this share of its
#: free memory; the rest is for the model, activations, the optimizer and other processes.
AUTO_MAX_FREE_FRACTION = 0.5


def _upload(arr: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``arr`` as a contiguous tensor on ``device``, copied block by block (memory maps included)."""
    out = torch.empty(tuple(arr.shape), dtype=dtype, device=device)
    flat, src = out.view(-1), np.asarray(arr).reshape(-1)
    np_dtype = np.dtype(str(dtype).removeprefix("torch."))
    for start in range(0, src.size, _UPLOAD_BLOCK):
        # np.array copies: a read-only memory-map block cannot back a tensor.
        block = np.array(src[start : start + _UPLOAD_BLOCK], dtype=np_dtype)
        flat[start : start + block.size].copy_(torch.from_numpy(block))
    return out


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype=dtype)).dtype


def device_nbytes(data: CellData) -> int:
    """Bytes that :class:`DeviceCellData` puts on the device for ``data``.

    CSR: float32 values, column indices in their stored width, int64 row pointers; dense:
    float32 ``n_obs * n_vars``; plus the per-cell arrays (:meth:`CellData.per_cell_arrays`).
    """
    X = data.X
    if sp.issparse(X):
        size = X.nnz * (4 + X.indices.dtype.itemsize) + (X.shape[0] + 1) * 8
    else:
        size = X.shape[0] * X.shape[1] * 4
    return int(size + sum(arr.nbytes for arr in data.per_cell_arrays().values()))


class DeviceCellData:
    """A :class:`~snakevi.data.CellData` copied to one device, with a gather that stays there.

    Parameters
    ----------
    data
        A :class:`~snakevi.data.CellData` (in memory or over a memory-mapped prepared folder)
        or a registered AnnData.
    device
        Where the arrays go (``None``: the CPU).

    Notes
    -----
    Build one per dataset and pass it to several :class:`DeviceAnnDataLoader` (training,
    validation): they share its device memory.
    """

    def __init__(self, data, device=None) -> None:
        data = data if isinstance(data, CellData) else CellData.from_anndata(data)
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.n_obs, self.n_vars = len(data), data.n_vars
        X = data.X
        self.is_sparse = sp.issparse(X)
        if self.is_sparse:
            indptr = np.asarray(X.indptr, dtype=np.int64)
            #: Stored values per cell, on the host: minibatch sizes without asking the device.
            self.row_nnz = np.diff(indptr)
            self.indptr = _upload(indptr, self.device, torch.int64)
            self.values = _upload(X.data, self.device, torch.float32)
            # Column indices keep their stored width (int32 halves their memory); each
            # minibatch widens only its own slice.
            index_dtype = torch.int32 if X.indices.dtype == np.int32 else torch.int64
            self.col_indices = _upload(X.indices, self.device, index_dtype)
            self.X = None
        else:
            self.row_nnz = None
            self.X = _upload(X, self.device, torch.float32)
        # Per-cell arrays keep their dtype (int64 codes, float32 covariates), as CellData.gather.
        self.obs = {key: _upload(arr, self.device, _torch_dtype(arr.dtype))
                    for key, arr in data.per_cell_arrays().items()}
        self.nbytes = device_nbytes(data)

    def __len__(self) -> int:
        return self.n_obs

    def __repr__(self) -> str:
        fmt = "csr" if self.is_sparse else "dense"
        return (f"DeviceCellData({self.n_obs} cells x {self.n_vars} genes, X {fmt}, on {self.device}, "
                f"{self.nbytes / 2**20:.1f} MiB)")

    def rows_to_device(self, rows: np.ndarray) -> torch.Tensor:
        """Cell positions (host, int64, negatives allowed) as a LongTensor on the device."""
        rows = np.asarray(rows, dtype=np.int64)
        rows = np.where(rows < 0, rows + self.n_obs, rows)
        tensor = torch.from_numpy(rows)
        if self.device.type == "cuda":
            # From pinned memory the copy is asynchronous: the host does not wait for it.
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)

    def nnz_of(self, rows: np.ndarray) -> int:
        """Stored values in cells ``rows`` (host positions), from the host copy of ``indptr``."""
        return int(self.row_nnz[np.asarray(rows, dtype=np.int64)].sum()) if self.is_sparse else 0

    def gather(self, rows, nnz: int | None = None) -> dict[str, torch.Tensor]:
        """The minibatch of cells ``rows``, as :meth:`CellData.gather` but as tensors on the device.

        Parameters
        ----------
        rows
            Cell positions: a LongTensor on this device, or host positions (numpy/list), which
            are copied there.
        nnz
            Stored values in those cells (:meth:`nnz_of`). Needed for a CSR matrix when
            ``rows`` is a tensor; without it the count is read back from the device, which
            makes the host wait.

        Returns
        -------
        dict
            ``"X"``: float32 ``[B, n_vars]`` (duplicate entries of a row summed, as scipy's
            ``toarray``), and every per-cell array indexed by ``rows``.
        """
        if not isinstance(rows, torch.Tensor):
            host = np.asarray(rows, dtype=np.int64)
            nnz = self.nnz_of(host)
            rows = self.rows_to_device(host)
        rows = rows.to(device=self.device, dtype=torch.int64)
        if self.is_sparse:
            dense = self._densify(rows, nnz)
        else:
            dense = self.X.index_select(0, rows)
        out = {REGISTRY_KEYS.X_KEY: dense}
        for key, arr in self.obs.items():
            out[key] = arr.index_select(0, rows)
        return out

    def _densify(self, rows: torch.Tensor, nnz: int | None) -> torch.Tensor:
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        if nnz is None:
            nnz = int(lengths.sum())  # a device read-back; loaders pass nnz instead
        n_rows = rows.shape[0]
        # Entry k of the minibatch belongs to row row_of[k]; it is stored at
        # starts[row] + (k - first[row]), where first[row] is where that row's entries begin
        # in the minibatch. output_size spares repeat_interleave its own read-back of the total.
        row_of = torch.repeat_interleave(torch.arange(n_rows, device=self.device), lengths, output_size=nnz)
        first = torch.cumsum(lengths, 0) - lengths
        src = torch.arange(nnz, device=self.device) + (starts - first)[row_of]
        dense = torch.zeros((n_rows, self.n_vars), dtype=torch.float32, device=self.device)
        # accumulate=True sums duplicate (row, column) entries as scipy's toarray does.
        dense.index_put_((row_of, self.col_indices[src].long()), self.values[src], accumulate=True)
        return dense


class DeviceAnnDataLoader(EpochOrder):
    """:class:`~snakevi.data.AnnDataLoader` whose minibatches are gathered on the device.

    Same parameters, order and output as ``AnnDataLoader`` (keys, dtypes, shapes, and the same
    ``shuffle_order(n, seed, epoch)`` permutation), but the tensors are born on ``device``.
    Per epoch, the host copies the epoch's order to the device once (int64, one value per
    cell); each minibatch's rows are a slice of it.

    Parameters
    ----------
    data
        A :class:`DeviceCellData` (shared, not copied), or a :class:`~snakevi.data.CellData`
        or registered AnnData (copied to ``device``).
    indices, batch_size, shuffle, drop_last, seed
        As for :class:`~snakevi.data.AnnDataLoader`.
    device
        Where the data goes when ``data`` is not yet a ``DeviceCellData`` (``None``: the CPU);
        otherwise ``None`` or that object's device.
    """

    def __init__(self, data, indices=None, batch_size: int = 128, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0, device=None) -> None:
        if isinstance(data, DeviceCellData):
            if device is not None and torch.device(device) != data.device:
                raise ValueError(
                    f"device={device!r} but the DeviceCellData lives on {data.device}; pass device=None "
                    "or build a DeviceCellData on that device."
                )
            self.data = data
        else:
            self.data = DeviceCellData(data, device)
        self.device = self.data.device
        super().__init__(len(self.data), indices, batch_size, shuffle, drop_last, seed)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        n_batches, size = len(self), self.batch_size
        if n_batches == 0:
            return
        order = self.order()[: n_batches * size]
        on_device = self.data.rows_to_device(order)
        nnz = None
        if self.data.is_sparse:
            # Stored values per minibatch, all at once on the host: cumulative counts at the
            # minibatch boundaries.
            ends = np.cumsum(self.data.row_nnz[order])
            bounds = np.minimum(np.arange(1, n_batches + 1) * size, order.size) - 1
            nnz = np.diff(ends[bounds], prepend=0)
        for b in range(n_batches):
            rows = on_device[b * size : (b + 1) * size]
            yield self.data.gather(rows, None if nnz is None else int(nnz[b]))


def resolve_data_on_device(data_on_device, data: CellData, device: torch.device) -> bool:
    """Whether training on ``device`` should gather minibatches there (see ``SCVI.train``).

    Parameters
    ----------
    data_on_device
        ``"auto"``: on for CUDA when the data takes less than half of the GPU's free memory
        (otherwise off, with a warning saying why); ``True``: always (an error if the data
        does not fit in the free memory); ``False``: never.
    data
        The training data.
    device
        The training device.
    """
    if isinstance(data_on_device, (bool, np.bool_)):
        data_on_device = bool(data_on_device)
    elif not (isinstance(data_on_device, str) and data_on_device == "auto"):
        raise ValueError(f"data_on_device={data_on_device!r}: expected 'auto', True or False.")
    if data_on_device is False or (data_on_device == "auto" and device.type != "cuda"):
        return False
    need = device_nbytes(data)
    if device.type != "cuda":
        return True
    free, total = torch.cuda.mem_get_info(device)
    where = f"{need / 2**20:.0f} MiB of data, {free / 2**20:.0f} MiB free of {total / 2**20:.0f} MiB on {device}"
    if data_on_device is True and need >= free:
        raise ValueError(
            f"data_on_device=True but the data does not fit on the GPU ({where}). Use "
            "data_on_device='auto' or False to gather minibatches on the host instead."
        )
    if data_on_device == "auto" and need >= AUTO_MAX_FREE_FRACTION * free:
        warnings.warn(
            f"data_on_device='auto': the data would take over {AUTO_MAX_FREE_FRACTION:.0%} of the GPU's "
            f"free memory ({where}), so minibatches are gathered on the host and copied each step. "
            "Free GPU memory, or pass data_on_device=True to force it.",
            UserWarning,
            stacklevel=3,
        )
        return False
    log.info("minibatches gathered on %s (%s)", device, where)
    return True


def device_dataloaders(data: CellData, train_idx, val_idx, *, batch_size: int, seed: int, drop_last: bool,
                       device) -> tuple[DeviceAnnDataLoader, DeviceAnnDataLoader | None]:
    """Training and validation loaders that share one device copy of ``data``.

    Mirrors :meth:`DataSplitter.train_dataloader` (shuffled per epoch) and
    :meth:`DataSplitter.val_dataloader` (in order).

    Parameters
    ----------
    data
        The data to copy to ``device``, once.
    train_idx, val_idx
        Cell positions of the training and validation sets.
    batch_size, seed, drop_last
        As for :class:`DeviceAnnDataLoader` (``drop_last`` applies to training only).
    device
        Where the data goes.

    Returns
    -------
    (train_loader, val_loader)
        ``val_loader`` is ``None`` when ``val_idx`` is empty.
    """
    shared = DeviceCellData(data, device)
    train = DeviceAnnDataLoader(shared, train_idx, batch_size=batch_size, shuffle=True, drop_last=drop_last,
                                seed=seed)
    val = None
    if len(val_idx):
        val = DeviceAnnDataLoader(shared, val_idx, batch_size=batch_size, shuffle=False, drop_last=False, seed=seed)
    return train, val
