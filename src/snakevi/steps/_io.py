"""Helpers shared by the steps: clear errors, atomic writes, reading h5ad files safely.

Every output of a step is written to a temporary sibling and renamed into place, so a crash
(or a kill) never leaves a half-written file that looks complete; a write that cannot fit raises
:class:`DiskFullError` (refused up front where the size is known).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from snakevi._atomic import DiskFullError, atomic_path, write_text_atomic  # noqa: F401 - re-exported for the steps
from snakevi._digest import canonical_json, fingerprint  # noqa: F401 - re-exported for the steps
from snakevi._safe_load import load_npy


class StepError(ValueError):
    """A step cannot run on its inputs; the message names the file, key or value and the fix."""


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=1, allow_nan=False) + "\n")


def check_input_file(path: str | os.PathLike, what: str) -> Path:
    """Refuse a missing input with a message naming it."""
    p = Path(path)
    if not p.exists():
        raise StepError(f"{what} {str(p)!r} does not exist; check the path (in the config: the run's 'dataset').")
    if p.is_dir():
        raise StepError(f"{what} {str(p)!r} is a folder; give the path of an .h5ad file.")
    return p


def _check_hdf5(path: Path) -> None:
    """Refuse a file that is not HDF5 (h5ad files are) before anndata gives a cryptic error."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head != b"\x89HDF\r\n\x1a\n":
        raise StepError(
            f"{str(path)!r} is not an .h5ad file (it does not start with the HDF5 signature). "
            "Convert it to AnnData's h5ad format first, e.g. anndata.read_csv(...).write_h5ad(...) "
            "or scanpy.read_10x_h5(...).write_h5ad(...)."
        )


def _check_anndata_layout(path: Path) -> None:
    """Refuse an HDF5 file that is not AnnData (a 10x .h5, a .loom) with how to convert it."""
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            keys = sorted(fh.keys())
    except Exception:  # noqa: BLE001 - a damaged file: read_h5ad reports it with the reason
        return
    if not {"obs", "var"} <= set(keys):
        raise StepError(
            f"{str(path)!r} is an HDF5 file but not AnnData: it has no 'obs' and 'var' groups "
            f"(top-level keys: {keys[:10]}). Convert it to .h5ad first, e.g. "
            "scanpy.read_10x_h5(path).write_h5ad(...) for a 10x .h5 file or "
            "anndata.read_loom(path).write_h5ad(...) for a .loom file."
        )


def read_h5ad(path: str | os.PathLike):
    """Read an .h5ad file into memory, turning unreadable files into a :class:`StepError`."""
    import anndata

    p = check_input_file(path, "The dataset")
    _check_hdf5(p)
    _check_anndata_layout(p)
    try:
        return anndata.read_h5ad(p)
    except Exception as err:  # noqa: BLE001 - h5py/anndata raise many types for damaged files
        _refuse_half_precision_sparse(p)
        raise StepError(
            f"Could not read {str(p)!r} as AnnData ({type(err).__name__}: {err}). The file may be "
            "truncated or corrupted (an interrupted copy or download?); copy or write it again."
        ) from err


def _refuse_half_precision_sparse(path: Path) -> None:
    """Explain the one readable file anndata cannot load: a sparse matrix with float16 values.

    scipy.sparse has no float16, so anndata fails on such a file (written by other tools) with a
    message that hides which matrix it is; dense float16 counts load and are widened to float32.
    """
    import h5py

    try:
        fh = h5py.File(path, "r")
    except OSError:
        return  # truncated or damaged: the caller's message says so
    with fh:
        groups = [("X", fh.get("X"))] + [(f"layers/{k}", v) for k, v in fh.get("layers", {}).items()]
        for key, elem in groups:
            if isinstance(elem, h5py.Group) and "data" in elem and elem["data"].dtype == np.float16:
                raise StepError(
                    f"{str(path)!r} stores {key} as a sparse matrix of float16 values, which scipy (and so "
                    "anndata) cannot read. Widen them in place with h5py, e.g. "
                    f"with h5py.File(path, 'r+') as f: d = f['{key}/data'][:]; del f['{key}/data']; "
                    f"f['{key}/data'] = d.astype('float32')"
                )


@contextlib.contextmanager
def open_h5ad_group(path: str | os.PathLike) -> Iterator:
    """Open an .h5ad file with h5py for streaming reads (no matrix is loaded)."""
    import h5py

    p = check_input_file(path, "The dataset")
    _check_hdf5(p)
    try:
        fh = h5py.File(p, "r")
    except Exception as err:  # noqa: BLE001
        raise StepError(
            f"Could not open {str(p)!r} as HDF5 ({type(err).__name__}: {err}); the file may be "
            "truncated or corrupted; copy or write it again."
        ) from err
    try:
        yield fh
    finally:
        fh.close()


def h5ad_bytes(adata) -> int:
    """About the size of ``adata`` written as .h5ad (uncompressed, anndata's default): its arrays.

    ``X``, layers, ``obsm``/``varm``/``obsp``/``varp`` as stored; ``obs``/``var`` are left out, so
    the figure is a lower bound and a write is never refused for room it would not need.
    """
    def nbytes(m) -> int:
        if hasattr(m, "indptr"):  # scipy sparse
            return int(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes)
        return int(getattr(m, "nbytes", 0) or 0)

    arrays = [adata.X] if adata.X is not None else []
    for mapping in (adata.layers, adata.obsm, adata.varm, adata.obsp, adata.varp):
        arrays.extend(mapping.values())
    return sum(nbytes(m) for m in arrays)


def write_h5ad_atomic(adata, path: str | os.PathLike) -> None:
    """``adata.write_h5ad`` to a temporary file beside ``path``, then rename.

    Refused with :class:`DiskFullError` before anything is written when the filesystem has less
    room than the arrays take: HDF5 running out of space in the middle of a write leaves the
    process to crash at exit (SIGSEGV) after the error.
    """
    with atomic_path(path, needed_bytes=h5ad_bytes(adata)) as tmp:
        # anndata picks the format from the suffix, so the temporary name keeps ".h5ad".
        staged = tmp.with_name(tmp.name + ".h5ad")
        try:
            adata.write_h5ad(staged)
            os.replace(staged, tmp)
        finally:
            staged.unlink(missing_ok=True)


def write_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    """``np.save`` to a temporary file beside ``path``, then rename (refused up front if it cannot fit)."""
    with atomic_path(path, needed_bytes=np.asarray(array).nbytes + 128) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


def read_latent(path: str | os.PathLike, n_obs: int | None = None) -> np.ndarray:
    """The train step's ``latent.npy`` (cells x dims, float32), checked against ``n_obs`` cells."""
    p = check_input_file(path, "latent representation")
    try:
        Z = load_npy(p, fix="Rerun the train step.")
    except OSError as err:
        raise StepError(f"Could not read the latent representation {str(p)!r} ({err}); rerun the train step.") from err
    if Z.ndim != 2 or not np.issubdtype(Z.dtype, np.floating):
        raise StepError(f"{str(p)!r} holds a {Z.dtype} array of shape {Z.shape}, not cells x dims floats; "
                        "rerun the train step.")
    if n_obs is not None and Z.shape[0] != n_obs:
        raise StepError(f"{str(p)!r} has {Z.shape[0]} cells but the data has {n_obs}; it belongs to another "
                        "dataset: rerun the train step for this one.")
    return Z


def load_scored_run(latent_npy: str | os.PathLike, prepared_dir: str | os.PathLike,
                    registry_json: str | os.PathLike):
    """What the report and integration steps read: ``(registry, prepared CellData, latent)``.

    Never the h5ad nor the model, so neither step needs anndata or torch and both run beside
    the export step.
    """
    from snakevi.data.prepared import load_prepared
    from snakevi.data.registry import registry_from_json
    from snakevi.data.validation import RegistrationError

    registry = registry_from_json(registry_json)
    try:
        data = load_prepared(prepared_dir, registry)
    except RegistrationError as err:
        raise StepError(str(err)) from err
    return registry, data, read_latent(latent_npy, len(data))
