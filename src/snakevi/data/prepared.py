"""The prepared-array format: training data as memory-mappable ``.npy`` files in one folder.

The workflow's prepare step writes it once; training then reads only this folder (never the
h5ad). Layout (format version 1)::

    prepared/
      loader.json          format_version, shape, nnz, dtypes, obs keys, split and loader spec,
                           sha256 of the registry it was built for
      X_data.npy           CSR values (float32), nnz
      X_indices.npy        CSR column indices, nnz         (int32, or int64 past 2**31 - 1)
      X_indptr.npy         CSR row pointers, n_obs + 1     (same dtype as X_indices)
      obs_<key>.npy        one array per minibatch key ("batch", "labels", ...), (n_obs, k)
      split_train.npy, split_validation.npy, split_test.npy   int64 cell positions

``X_indices`` and ``X_indptr`` share a dtype on purpose: scipy would otherwise copy both into a
common dtype when building the matrix, defeating the memory map.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import scipy.sparse as sp

from snakevi.data.celldata import CellData
from snakevi.data.page_cache import advise_random_access
from snakevi._atomic import atomic_path
from snakevi._safe_load import load_npy
from snakevi.data.validation import RegistrationError

#: Version of the prepared folder layout; bump on any incompatible change.
PREPARED_FORMAT_VERSION = 1
LOADER_FILE = "loader.json"
SPLIT_NAMES = ("train", "validation", "test")
_RERUN = "Run the prepare step again."


def registry_sha256(registry: dict) -> str:
    """Content hash of a registry (key order does not matter)."""
    text = json.dumps(registry, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def write_prepared(
    out_dir: str | os.PathLike,
    row_chunks: Iterable[sp.csr_matrix],
    obs: dict[str, np.ndarray],
    registry: dict,
    *,
    split: dict[str, np.ndarray] | None = None,
    spec: dict | None = None,
) -> Path:
    """Write a prepared folder atomically from CSR row chunks.

    Parameters
    ----------
    out_dir
        The folder to create (replaced if it exists, only once the new one is complete).
    row_chunks
        CSR blocks of consecutive cells, ``(rows_i, n_vars)``, in cell order; they are written
        as they come, so memory holds one block at a time plus the growing ``.npy`` files.
    obs
        Per-cell arrays keyed by minibatch key (as :attr:`CellData.obs`).
    registry
        The registry the data was encoded with; its hash goes into ``loader.json``.
    split
        ``{"train", "validation", "test"}`` int64 positions.
    spec
        Extra JSON entries for ``loader.json`` (split parameters, batch size, ...).
    """
    target = Path(out_dir)
    with atomic_path(target) as staging:
        staging.mkdir()
        n_vars = int(registry["summary"]["n_vars"])
        n_obs, nnz = _write_csr(staging, row_chunks, n_vars)
        for key, arr in obs.items():
            if arr.shape[0] != n_obs:
                raise ValueError(f"obs[{key!r}] has {arr.shape[0]} rows but the matrix has {n_obs} cells.")
            np.save(staging / f"obs_{key}.npy", np.ascontiguousarray(arr))
        meta = {
            "format_version": PREPARED_FORMAT_VERSION,
            "n_obs": n_obs,
            "n_vars": n_vars,
            "nnz": nnz,
            "obs_keys": sorted(obs),
            "registry_sha256": registry_sha256(registry),
            **(spec or {}),
        }
        (staging / LOADER_FILE).write_text(json.dumps(meta, indent=1))
        if split is not None:
            _save_split(staging, split)
    return target


def _write_csr(folder: Path, row_chunks: Iterable[sp.csr_matrix], n_vars: int) -> tuple[int, int]:
    """Append CSR chunks to raw files, then turn them into ``.npy`` files; return (n_obs, nnz)."""
    raw = {name: folder / f".{name}.raw" for name in ("data", "indices", "indptr")}
    n_obs, nnz = 0, 0
    with open(raw["data"], "wb") as fd, open(raw["indices"], "wb") as fi, open(raw["indptr"], "wb") as fp:
        np.zeros(1, dtype=np.int64).tofile(fp)
        for chunk in row_chunks:
            chunk = sp.csr_matrix(chunk)
            if chunk.shape[1] != n_vars:
                raise ValueError(f"A row chunk has {chunk.shape[1]} genes; the registry has {n_vars}.")
            chunk.sort_indices()
            chunk.data.astype(np.float32, copy=False).tofile(fd)
            chunk.indices.astype(np.int64, copy=False).tofile(fi)
            (chunk.indptr[1:].astype(np.int64) + nnz).tofile(fp)
            n_obs += chunk.shape[0]
            nnz += int(chunk.nnz)
    idx_dtype = np.int32 if max(nnz, n_vars) < np.iinfo(np.int32).max else np.int64
    for name, dtype in (("data", np.float32), ("indices", idx_dtype), ("indptr", idx_dtype)):
        stored = np.int64 if name != "data" else np.float32
        _raw_to_npy(raw[name], np.dtype(stored), folder / f"X_{name}.npy", np.dtype(dtype))
        raw[name].unlink()
    return n_obs, nnz


#: Values per block when converting a raw file into an ``.npy`` file.
_NPY_BLOCK = 1 << 22


def _raw_to_npy(raw: Path, stored: np.dtype, target: Path, dtype: np.dtype) -> None:
    """Write the 1-d raw array in ``raw`` to ``target`` as ``.npy`` of ``dtype``, block by block.

    Plain reads and writes, not memory maps: the pages of a mapped file count towards the
    process's resident memory, which at a million cells would be gigabytes for a copy.
    """
    n = raw.stat().st_size // stored.itemsize
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (n,)}
    with open(raw, "rb") as src, open(target, "wb") as out:
        np.lib.format.write_array_header_1_0(out, header)
        for start in range(0, n, _NPY_BLOCK):
            block = np.fromfile(src, dtype=stored, count=min(_NPY_BLOCK, n - start))
            block.astype(dtype, copy=False).tofile(out)


def _save_split(folder: Path, split: dict[str, np.ndarray]) -> None:
    for name in SPLIT_NAMES:
        path = folder / f"split_{name}.npy"
        np.save(path, np.asarray(split.get(name, []), dtype=np.int64))


def read_loader_spec(prepared_dir: str | os.PathLike) -> dict:
    """The ``loader.json`` of a prepared folder, with its format version checked."""
    path = Path(prepared_dir) / LOADER_FILE
    if not path.is_file():
        raise RegistrationError(
            f"{path} not found: {prepared_dir} is not a prepared folder. Create it with the prepare "
            "step (snakevi prepare ... or the workflow's prepare rule)."
        )
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RegistrationError(f"{path} is not valid JSON ({err}); run the prepare step again.") from err
    if spec.get("format_version") != PREPARED_FORMAT_VERSION:
        raise RegistrationError(
            f"{path} has format_version {spec.get('format_version')!r}; this snakevi reads "
            f"{PREPARED_FORMAT_VERSION}. Run the prepare step again."
        )
    return spec


def read_split(prepared_dir: str | os.PathLike) -> list[np.ndarray]:
    """``[train, validation, test]`` int64 cell positions stored in a prepared folder."""
    folder = Path(prepared_dir)
    out = []
    for name in SPLIT_NAMES:
        path = folder / f"split_{name}.npy"
        if not path.is_file():
            raise RegistrationError(f"{path} not found; run the prepare step again.")
        out.append(load_npy(path, fix=_RERUN).astype(np.int64, copy=False))
    return out


def load_prepared(prepared_dir: str | os.PathLike, registry: dict, *, mmap: bool = True) -> CellData:
    """A :class:`CellData` over a prepared folder (memory-mapped unless ``mmap=False``).

    Parameters
    ----------
    prepared_dir
        Folder written by :func:`write_prepared`.
    registry
        The registry the folder was prepared with; a different one is refused (the codes and
        genes would not mean what the model thinks).
    mmap
        Map the arrays instead of reading them: start-up is instant and the OS pages in only
        the rows minibatches touch.
    """
    folder = Path(prepared_dir)
    spec = read_loader_spec(folder)
    if spec.get("registry_sha256") != registry_sha256(registry):
        raise RegistrationError(
            f"{folder} was prepared with another registry than the one given (hash mismatch). "
            "Run the prepare step again with this registry."
        )
    mode = "r" if mmap else None

    def load(name: str) -> np.ndarray:
        path = folder / name
        if not path.is_file():
            raise RegistrationError(f"{path} not found: the prepared folder is incomplete; run prepare again.")
        return load_npy(path, mmap_mode=mode, fix=_RERUN)

    data, indices, indptr = load("X_data.npy"), load("X_indices.npy"), load("X_indptr.npy")
    shape = (int(spec["n_obs"]), int(spec["n_vars"]))
    if indptr.shape[0] != shape[0] + 1 or data.shape[0] != int(spec["nnz"]):
        raise RegistrationError(f"{folder}: array sizes do not match loader.json; run prepare again.")
    if mmap:
        advise_random_access((data, indices), str(folder))
    X = sp.csr_matrix((data, indices, indptr), shape=shape, copy=False)
    obs = {key: load(f"obs_{key}.npy") for key in spec["obs_keys"]}
    return CellData(X, obs, registry)
