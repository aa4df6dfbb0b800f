"""Step 2, prepare: .h5ad + registry -> ``prepared/`` (memory-mappable arrays, split, loader spec).

The count matrix is streamed from the file in row chunks through h5py (CSR and dense storage;
a CSC matrix is read whole, as rows cannot be streamed from it), restricted to the registry's
genes, re-checked (raw counts, no empty cell) and appended to the ``.npy`` files. Only ``obs``
and ``var`` are read into memory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from snakevi._atomic import make_room
from snakevi.steps._io import StepError, open_h5ad_group

if TYPE_CHECKING:
    import pandas as pd
    import scipy.sparse as sp

log = logging.getLogger(__name__)

#: Cells per streamed chunk.
CHUNK_ROWS = 8192


def prepare(
    h5ad: str | os.PathLike,
    registry_json: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    train_size: float | None = None,
    validation_size: float | None = None,
    batch_size: int = 128,
    shuffle_set_split: bool = True,
    seed: int = 0,
    chunk_rows: int = CHUNK_ROWS,
) -> dict:
    """Write the training arrays, the seeded split and the loader spec of a registered dataset.

    Parameters
    ----------
    h5ad
        The dataset the registry was made from (the same cells; genes may be a superset).
    registry_json
        Output of the register step.
    out_dir
        The prepared folder to write (atomically; see :mod:`snakevi.data.prepared`).
    train_size, validation_size, shuffle_set_split
        The split, as in :class:`snakevi.data.DataSplitter` (scvi-tools' rules): ``None`` means
        90% training, the rest validation.
    batch_size
        Cells per training minibatch (recorded in the loader spec; training uses it).
    seed
        Seed of the split permutation (and of the loader's per-epoch shuffles).
    chunk_rows
        Cells read per chunk.

    Returns
    -------
    dict
        The loader spec written to ``loader.json``.
    """
    from snakevi.data import DataSplitter, registry_from_json
    from snakevi.data.missing_labels import apply_missing_labels
    from snakevi.data.prepared import write_prepared

    registry = registry_from_json(registry_json)
    fields = registry["fields"]
    genes = list(fields["X"]["column_names"])
    layer = fields["X"]["attr_key"]
    with open_h5ad_group(h5ad) as fh:
        obs, var_names = _read_obs_var(fh, h5ad)
        # setup.missing_labels, as the register step applied it: the same cells, the same labels.
        obs, keep = apply_missing_labels(obs, registry.get("missing_labels"))
        if len(obs) != registry["summary"]["n_obs"]:
            raise StepError(
                f"{h5ad} has {len(obs)} cells but {registry_json} was made for "
                f"{registry['summary']['n_obs']}; run the register step again on this file."
            )
        col_idx = _gene_positions(var_names, genes, h5ad, registry_json)
        codes, stub = _encode_obs(obs, genes, layer, registry, h5ad)
        # The split needs only the number of cells, so it is decided before any count is read.
        try:
            splitter = DataSplitter(stub, train_size=train_size, validation_size=validation_size,
                                    batch_size=batch_size, shuffle_set_split=shuffle_set_split, seed=seed)
        except ValueError as err:
            raise StepError(f"Cannot split {h5ad} for training: {err} (config: the run's 'split' section).") from err
        split = {"train": splitter.train_idx, "validation": splitter.val_idx, "test": splitter.test_idx}
        chunks = _row_chunks(fh, layer, col_idx, chunk_rows, obs.index, genes, h5ad, keep=keep)
        spec = {
            "source": str(h5ad),
            "loader": {"batch_size": int(batch_size), "shuffle": True, "drop_last": False, "seed": int(seed)},
            "split_params": {"train_size": train_size, "validation_size": validation_size,
                             "shuffle_set_split": bool(shuffle_set_split), "seed": int(seed)},
            "split_sizes": {k: int(v.size) for k, v in split.items()},
        }
        make_room(out_dir, _prepared_bytes(fh, layer, len(genes), len(var_names), len(obs), codes))
        write_prepared(out_dir, chunks, codes, registry, split=split, spec=spec)
    log.info("prepared %d cells x %d genes -> %s (train %d, validation %d, test %d)", len(obs), len(genes),
             out_dir, splitter.train_idx.size, splitter.val_idx.size, splitter.test_idx.size)
    return spec


def _prepared_bytes(fh, layer, n_genes: int, n_file_genes: int, n_obs: int, codes: dict) -> int | None:
    """About the peak room the prepared folder takes while written; None if unknown (dense counts).

    ``write_prepared`` appends the CSR pieces to raw files (float32 values, int64 indices and
    row pointers), then converts them one by one into ``.npy`` files: the peak is the values'
    ``.npy`` plus the raw and final indices, ``nnz * (4 + 8 + 8)`` bytes at most. The stored
    entries of a gene subset are taken as proportional to its share of the file's genes.
    """
    import h5py

    elem = fh.get("X" if layer is None else f"layers/{layer}")
    if not isinstance(elem, h5py.Group) or "data" not in elem:
        return None
    nnz = elem["data"].shape[0] * n_genes / max(n_file_genes, 1)
    return int(nnz * 20 + 8 * (n_obs + 1) * 3 + sum(a.nbytes for a in codes.values()))


def _read_obs_var(fh, source) -> tuple[pd.DataFrame, pd.Index]:
    import pandas as pd
    from anndata.io import read_elem

    try:
        obs = read_elem(fh["obs"])
        var = read_elem(fh["var"])
    except Exception as err:  # noqa: BLE001
        raise StepError(f"Could not read obs/var of {source} ({type(err).__name__}: {err}); is it an h5ad file?") from err
    return obs, pd.Index(var.index.astype(str))


def _gene_positions(var_names: pd.Index, genes: list[str], source, registry_json) -> np.ndarray | None:
    """Positions of the registry's genes in the file (``None`` when they are all, in order)."""
    if len(var_names) == len(genes) and list(var_names) == genes:
        return None
    if not var_names.is_unique:
        raise StepError(f"{source} has duplicated var_names; make them unique and register again.")
    pos = var_names.get_indexer(genes)
    if (pos < 0).any():
        missing = [g for g, p in zip(genes, pos) if p < 0][:5]
        raise StepError(
            f"{source} lacks {int((pos < 0).sum())} gene(s) of {registry_json} (e.g. {missing}); "
            "the file changed since registration: run the register step again."
        )
    return pos


def _encode_obs(obs: pd.DataFrame, genes: list[str], layer, registry: dict, source):
    """Per-cell codes and covariates, encoded exactly as :meth:`CellData.from_anndata` does.

    Returns the codes and the count-less ``CellData`` they came from (enough to split cells).
    """
    import anndata
    import pandas as pd
    import scipy.sparse as sp

    from snakevi.data import CellData, RegistrationError

    # A stand-in AnnData with the real obs and an all-zero matrix: CellData encodes obs from it
    # without the counts ever being loaded.
    empty = sp.csr_matrix((len(obs), len(genes)), dtype=np.float32)
    stub = anndata.AnnData(X=empty, obs=obs, var=pd.DataFrame(index=genes))
    if layer is not None:
        stub.layers[layer] = empty
    try:
        data = CellData.from_anndata(stub, registry)
    except RegistrationError as err:
        raise StepError(f"{source}: {err}") from err
    return data.obs, data


def _check_chunk(block: sp.csr_matrix, start: int, cell_names, genes, source) -> None:
    """Refuse non-count values and empty cells in one chunk (the file may differ from registration)."""
    data = block.data
    bad = ~np.isfinite(data) | (data < 0) | (data != np.floor(data))
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        row = int(np.searchsorted(block.indptr, pos, side="right") - 1)
        raise StepError(
            f"{source}: the count for cell {cell_names[start + row]!r}, gene {genes[block.indices[pos]]!r} is "
            f"{data[pos].item()!r}, not a raw count (finite non-negative integer). Register the file again "
            "(the register step explains how to fix the data)."
        )
    totals = np.asarray(block.sum(axis=1)).ravel()
    if (totals == 0).any():
        row = int(np.flatnonzero(totals == 0)[0])
        raise StepError(
            f"{source}: cell {cell_names[start + row]!r} has zero counts over the registered genes; "
            "the file changed since registration: run the register step again."
        )


def _widen_half(rows: np.ndarray) -> np.ndarray:
    """float16 counts as float32: scipy.sparse holds no float16, and CellData widens them the same way."""
    return rows.astype(np.float32) if rows.dtype == np.float16 else rows


def _row_chunks(fh, layer, col_idx, chunk_rows, cell_names, genes, source, keep=None) -> Iterator[sp.csr_matrix]:
    """Yield CSR blocks of ``chunk_rows`` file rows restricted to the registry's genes.

    ``keep`` (a mask over the file's rows) leaves cells out (``setup.missing_labels: drop``);
    ``cell_names`` are the names of the cells kept.
    """
    import h5py
    import scipy.sparse as sp
    from anndata.io import sparse_dataset

    key = "X" if layer is None else f"layers/{layer}"
    if key not in fh:
        raise StepError(f"{source} has no {key!r}; register the file again (setup.layer).")
    elem = fh[key]
    n_obs = len(cell_names) if keep is None else len(keep)
    if isinstance(elem, h5py.Group):
        ds = sparse_dataset(elem)
        if ds.format == "csc":
            log.warning("%s stores %s as CSC; it is read whole (rows cannot be streamed from CSC)", source, key)
            whole = ds.to_memory().tocsr()
            read = lambda a, b: whole[a:b]  # noqa: E731
        else:
            read = lambda a, b: ds[a:b]  # noqa: E731
    else:
        read = lambda a, b: sp.csr_matrix(_widen_half(elem[a:b]))  # noqa: E731
    kept = 0  # position of the block's first cell among the cells kept
    for start in range(0, n_obs, chunk_rows):
        stop = min(start + chunk_rows, n_obs)
        block = sp.csr_matrix(read(start, stop))
        if keep is not None:
            block = block[keep[start:stop]]
            if block.shape[0] == 0:
                continue
        if col_idx is not None:
            block = block[:, col_idx]
        _check_chunk(block, kept, cell_names, genes, source)
        kept += block.shape[0]
        yield block
