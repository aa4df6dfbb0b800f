"""A model to and from its saved bundle (see :mod:`snakevi.model.bundle`).

:meth:`BaseModelClass.save <snakevi.model.base.BaseModelClass.save>` and ``load`` delegate
here: what ``model.json`` records about a model, and how a loaded model is rebuilt from it
and checked against the data it is loaded for.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from snakevi import __version__
from snakevi.model import bundle
from snakevi.model.history import json_records

if TYPE_CHECKING:  # pragma: no cover - imports for type checkers only
    from anndata import AnnData

    from snakevi.data import CellData
    from snakevi.model.base import BaseModelClass


def save_model(model: BaseModelClass, dir_path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Write ``model`` as a bundle at ``dir_path`` (see :meth:`BaseModelClass.save`)."""
    meta = {
        "model_name": type(model).__name__,
        "snakevi_version": __version__,
        "init_params": model.init_params,
        "registry": model.registry,
        "is_trained": model.is_trained,
        "history": json_records(model.history_records),
        "split": {
            "train": _index_list(model.train_indices),
            "validation": _index_list(model.validation_indices),
            "test": _index_list(model.test_indices),
        },
    }
    bundle.write_bundle(dir_path, model.module.state_dict(), meta, overwrite=overwrite)


def read_model_dir(dir_path: str | os.PathLike, *, weights: bool = True, verify: bool = True) -> tuple[dict | None, dict]:
    """``(state_dict, meta)`` of a snakevi bundle or a scvi-tools model directory.

    ``meta`` is a bundle's ``model.json`` either way (a scvi-tools registry translated). With
    ``weights=False`` a bundle's weights are not read (``state_dict`` is ``None``); a scvi-tools
    directory keeps everything in one ``model.pt``, so it is read whole, through the restricted
    unpickler of :mod:`snakevi._restricted_pickle`.
    """
    from snakevi.model import scvi_tools_format

    if scvi_tools_format.is_scvi_tools_dir(dir_path):
        state_dict, meta = scvi_tools_format.read_scvi_tools(dir_path)
        return (state_dict if weights else None), meta
    if not weights:
        return None, bundle.read_meta(dir_path)
    return bundle.read_bundle(dir_path, verify=verify)


def load_into_class(
    cls: type[BaseModelClass],
    dir_path: str | os.PathLike,
    adata: AnnData | CellData,
    *,
    accelerator: str = "cpu",
    verify: bool = True,
) -> BaseModelClass:
    """A ``cls`` model read from the bundle at ``dir_path`` for ``adata`` (see :meth:`BaseModelClass.load`)."""
    from snakevi.data import CellData, transfer_setup
    from snakevi.data.compatibility import check_compatible
    from snakevi.train.device import resolve_device

    state_dict, meta = read_model_dir(dir_path, verify=verify)
    if meta.get("model_name") != cls.__name__:
        raise bundle.ModelFileError(
            f"{dir_path} holds a {meta.get('model_name')} model; load it with "
            f"snakevi.model.{meta.get('model_name')}.load, not {cls.__name__}.load."
        )
    registry = meta["registry"]
    if isinstance(adata, CellData):
        check_compatible(registry, adata, context=f"{dir_path}: ")
        data_arg = adata
    else:
        transfer_setup(adata, registry)
        data_arg = adata
    params = dict(meta["init_params"])
    seed = params.pop("seed", 0)
    model = cls(data_arg, seed=seed, **params)
    try:
        model.module.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise bundle.ModelFileError(
            f"The weights in {dir_path} do not fit a {cls.__name__} built from its saved parameters: {err}"
        ) from err
    model.module.to(resolve_device(accelerator))
    model.module.eval()
    model.is_trained = bool(meta.get("is_trained", False))
    model.history_records = meta.get("history", [])
    split = meta.get("split", {})
    model.train_indices = _index_array(split.get("train"))
    model.validation_indices = _index_array(split.get("validation"))
    model.test_indices = _index_array(split.get("test"))
    return model


def _index_list(indices) -> list[int] | None:
    return None if indices is None else [int(i) for i in np.asarray(indices)]


def _index_array(values) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.int64)
