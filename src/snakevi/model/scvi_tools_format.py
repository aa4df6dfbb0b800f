"""scvi-tools' model directory: written from a snakevi model, read into one.

A scvi-tools model directory holds one ``model.pt``, a ``torch.save`` of::

    {"model_state_dict": module state_dict + {"pyro_param_store": {"params": {}, "constraints": {}}},
     "var_names": object array of gene names,
     "attr_dict": {"registry_": {scvi_version, model_name, setup_method_name, setup_args,
                                 field_registries: {key: {data_registry, state_registry,
                                                          summary_stats}}, _scvi_uuid},
                   "init_params_": {"non_kwargs": {...}, "kwargs": {<**name>: {...}}},
                   "is_trained_", "train_indices_", "validation_indices_", "test_indices_",
                   "history_" (metric -> DataFrame indexed by epoch), ...}}

snakevi's modules have scvi-tools' parameter names, so the weights go across as they are; what
this module translates is the registry (snakevi's JSON registry <-> scvi-tools' field
registries) and the constructor parameters. Writing needs no scvi-tools (plain dicts, numpy
arrays, tensors and pandas frames); reading goes through :mod:`snakevi._restricted_pickle`,
so no code from the file runs. Verified against scvi-tools 1.4.2 (``SCVI.load``,
``SCANVI.load``, ``load_query_data``; ``tests/interop``).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import numpy as np

from snakevi._atomic import atomic_path
from snakevi.model.bundle import WEIGHTS_FILE, ModelFileError

#: The scvi-tools version whose format this writes (recorded as the registry's scvi_version).
SCVI_TOOLS_VERSION = "1.4.2"
#: Named constructor parameters of scvi-tools 1.4.2's models, in its ``init_params_`` "non_kwargs";
#: the rest go into the ``**kwargs`` group named by ``_KWARGS_NAME``.
_NON_KWARGS = {
    "SCVI": {"n_hidden": 128, "n_latent": 10, "n_layers": 1, "dropout_rate": 0.1, "dispersion": "gene",
             "gene_likelihood": "zinb", "use_observed_lib_size": True, "latent_distribution": "normal"},
    "SCANVI": {"n_hidden": 128, "n_latent": 10, "n_layers": 1, "dropout_rate": 0.1, "dispersion": "gene",
               "gene_likelihood": "zinb", "use_observed_lib_size": True, "linear_classifier": False,
               "datamodule": None},
}
_KWARGS_NAME = {"SCVI": "kwargs", "SCANVI": "model_kwargs"}
#: snakevi-only constructor parameters that scvi-tools' models do not take.
_SNAKEVI_ONLY = ("seed",)


def is_scvi_tools_dir(dir_path: str | os.PathLike) -> bool:
    """Whether ``dir_path`` looks like a scvi-tools model directory (``model.pt``, no ``model.json``)."""
    directory = Path(dir_path)
    return (directory / WEIGHTS_FILE).is_file() and not (directory / "model.json").exists()


# ---- writing ------------------------------------------------------------------------------
def save_scvi_tools(model, dir_path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``model`` (SCVI or SCANVI) as a scvi-tools model directory, atomically."""
    return write_scvi_tools(scvi_tools_payload(model), dir_path, overwrite=overwrite)


def scvi_tools_payload(model) -> dict:
    """The dict scvi-tools' ``model.pt`` holds, built from a snakevi model."""
    return payload_from_parts(
        type(model).__name__, model.module.state_dict(), registry=model.registry, init_params=model.init_params,
        is_trained=model.is_trained, history=model.history_records,
        split={"train": model.train_indices, "validation": model.validation_indices, "test": model.test_indices},
    )


def payload_from_bundle(state_dict: dict, meta: dict) -> dict:
    """The same dict from a snakevi bundle's weights and ``model.json`` (no model is built)."""
    return payload_from_parts(meta["model_name"], state_dict, registry=meta["registry"],
                              init_params=meta["init_params"], is_trained=meta.get("is_trained", False),
                              history=meta.get("history", []), split=meta.get("split", {}))


def payload_from_parts(name: str, state_dict: dict, *, registry: dict, init_params: dict, is_trained: bool,
                       history: list[dict], split: dict) -> dict:
    """scvi-tools' ``model.pt`` dict of a ``name`` model (SCVI or SCANVI)."""
    if name not in _NON_KWARGS:
        raise ValueError(f"the scvi-tools format is for SCVI and SCANVI models, not {name}; "
                         "keep it in snakevi's format (format='snakevi').")
    state = {k: v.detach().cpu() for k, v in state_dict.items()}
    state["pyro_param_store"] = {"params": {}, "constraints": {}}
    var_names = np.asarray(registry["fields"]["X"]["column_names"], dtype=object)
    attrs = {
        "registry_": _scvi_registry(registry, name),
        "init_params_": _scvi_init_params(init_params, name),
        "is_trained_": bool(is_trained),
        "train_indices_": _indices(split.get("train")),
        "validation_indices_": _indices(split.get("validation")),
        "test_indices_": _indices(split.get("test")),
        "history_": _history_frames(history),
        "get_normalized_function_name_": "get_normalized_expression",
        "run_name_": "", "run_id_": "",
    }
    if name == "SCANVI":
        attrs["unlabeled_category_"] = registry["fields"]["labels"].get("unlabeled_category")
    return {"model_state_dict": state, "var_names": var_names, "attr_dict": attrs}


def write_scvi_tools(payload: dict, dir_path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``payload`` as a scvi-tools model directory (``model.pt``), atomically."""
    import torch

    target = Path(dir_path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True to replace it or choose another directory.")
    with atomic_path(target) as staging:
        staging.mkdir()
        torch.save(payload, staging / WEIGHTS_FILE)
    return target


def _scvi_registry(registry: dict, name: str) -> dict:
    fields, setup_args = registry["fields"], dict(registry["setup_args"])
    if name == "SCANVI":
        setup_args.setdefault("unlabeled_category", fields["labels"].get("unlabeled_category"))
        setup_args["use_minified"] = False
    x = fields["X"]
    out = {
        "X": {"data_registry": {"attr_name": x["attr_name"], "attr_key": x["attr_key"]},
              "state_registry": {"n_obs": int(x["n_obs"]), "n_vars": int(x["n_vars"]),
                                 "column_names": np.asarray(x["column_names"], dtype=object)},
              "summary_stats": {"n_vars": int(x["n_vars"]), "n_cells": int(x["n_obs"])}},
        "batch": _categorical("batch", fields["batch"], "n_batch"),
        "labels": _categorical("labels", fields["labels"], "n_labels"),
    }
    size_key = fields["size_factor"].get("original_key")
    out["size_factor"] = {"data_registry": {"attr_name": "obs", "attr_key": size_key} if size_key else {},
                          "state_registry": {}, "summary_stats": {}}
    cats = fields["extra_categorical_covs"]
    out["extra_categorical_covs"] = (
        {"data_registry": {"attr_name": "obsm", "attr_key": "_scvi_extra_categorical_covs"},
         "state_registry": {"mappings": {k: _mapping_array(v) for k, v in cats["mappings"].items()},
                            "field_keys": list(cats["field_keys"]), "n_cats_per_key": list(cats["n_cats_per_key"])},
         "summary_stats": {"n_extra_categorical_covs": len(cats["field_keys"])}}
        if cats["field_keys"] else
        {"data_registry": {}, "state_registry": {}, "summary_stats": {"n_extra_categorical_covs": 0}})
    conts = fields["extra_continuous_covs"]["columns"]
    out["extra_continuous_covs"] = (
        {"data_registry": {"attr_name": "obsm", "attr_key": "_scvi_extra_continuous_covs"},
         "state_registry": {"columns": np.asarray(conts, dtype=object)},
         "summary_stats": {"n_extra_continuous_covs": len(conts)}}
        if conts else
        {"data_registry": {}, "state_registry": {}, "summary_stats": {"n_extra_continuous_covs": 0}})
    digest = hashlib.sha256(json.dumps(registry, sort_keys=True, default=str).encode()).digest()
    return {
        "scvi_version": SCVI_TOOLS_VERSION, "model_name": name, "setup_args": setup_args,
        "field_registries": out, "setup_method_name": registry.get("setup_method_name", "setup_anndata"),
        # Derived from the registry, so the same model always writes the same file.
        "_scvi_uuid": str(uuid.UUID(bytes=digest[:16], version=4)),
    }


def _categorical(key: str, field: dict, count_name: str) -> dict:
    original = field.get("original_key")
    state = {"categorical_mapping": _mapping_array(field["categorical_mapping"]),
             "original_key": original if original is not None else f"_scvi_{key}"}
    if field.get("unlabeled_category") is not None:
        state["unlabeled_category"] = field["unlabeled_category"]
    return {"data_registry": {"attr_name": "obs", "attr_key": f"_scvi_{key}"}, "state_registry": state,
            "summary_stats": {count_name: len(field["categorical_mapping"])}}


def _mapping_array(values: list) -> np.ndarray:
    """Category values as pandas keeps them: strings in an object array, numbers as numbers."""
    return np.asarray(values, dtype=object) if any(isinstance(v, str) for v in values) else np.asarray(values)


def _scvi_init_params(init_params: dict, name: str) -> dict:
    params = {k: v for k, v in init_params.items() if k not in _SNAKEVI_ONLY}
    non_kwargs = {k: params.pop(k, default) for k, default in _NON_KWARGS[name].items()}
    return {"kwargs": {_KWARGS_NAME[name]: params}, "non_kwargs": non_kwargs}


def _indices(indices) -> np.ndarray:
    return np.zeros(0, dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)


def _history_frames(records: list[dict]) -> dict:
    """snakevi's per-epoch records as scvi-tools' history: one DataFrame per metric, indexed by epoch."""
    import pandas as pd

    frames = {}
    keys = [k for r in records for k in r if k != "epoch"]
    for key in dict.fromkeys(keys):
        rows = [(r.get("epoch", i), r[key]) for i, r in enumerate(records) if key in r and r[key] is not None]
        index = pd.Index([int(e) for e, _ in rows], name="epoch")
        frames[key] = pd.DataFrame({key: [float(v) for _, v in rows]}, index=index)
    return frames


# ---- reading ------------------------------------------------------------------------------
def read_scvi_tools(dir_path: str | os.PathLike) -> tuple[dict, dict]:
    """``(state_dict, meta)`` of a scvi-tools model directory, ``meta`` as a snakevi bundle's ``model.json``.

    Raises
    ------
    ModelFileError
        The file names a type such files never hold (nothing of it ran), or it is not a
        scvi-tools model of a kind snakevi has.
    """
    from snakevi._restricted_pickle import UnsafeModelFile, load_restricted

    path = Path(dir_path) / WEIGHTS_FILE
    try:
        saved = load_restricted(path)
    except UnsafeModelFile as err:
        raise ModelFileError(f"{path} was refused: {err}.") from err
    except Exception as err:  # noqa: BLE001 - any other failure means an unreadable file
        raise ModelFileError(f"{path} could not be read as a scvi-tools model file ({type(err).__name__}: {err}).") from err
    if not isinstance(saved, dict) or not {"model_state_dict", "attr_dict"} <= set(saved):
        raise ModelFileError(f"{path} is not a scvi-tools model file (no model_state_dict and attr_dict).")
    attrs = saved["attr_dict"]
    registry = attrs.get("registry_") or {}
    name = registry.get("model_name")
    if name not in _NON_KWARGS:
        raise ModelFileError(f"{path} holds a scvi-tools {name} model; snakevi reads SCVI and SCANVI models.")
    state = {k: v for k, v in saved["model_state_dict"].items() if k != "pyro_param_store"}
    meta = {
        "model_name": name,
        "init_params": _snakevi_init_params(attrs.get("init_params_", {}), name),
        "registry": snakevi_registry(registry),
        "is_trained": bool(attrs.get("is_trained_", False)),
        "history": _history_records(attrs.get("history_")),
        "split": {k: _index_list(attrs.get(f"{k}_indices_")) for k in ("train", "validation", "test")},
        "source": f"scvi-tools {registry.get('scvi_version', '?')}",
    }
    return state, meta


def snakevi_registry(scvi_registry: dict) -> dict:
    """snakevi's registry for the data a scvi-tools model was set up on (its field registries)."""
    from snakevi import __version__
    from snakevi._constants import REGISTRY_FORMAT_VERSION

    fields = scvi_registry["field_registries"]
    args = scvi_registry.get("setup_args", {})
    x_data, x_state = fields["X"]["data_registry"], fields["X"]["state_registry"]

    def categorical(key):
        state = fields.get(key, {}).get("state_registry", {})
        original = state.get("original_key")
        out = {"original_key": None if original in (None, f"_scvi_{key}") else original,
               "categorical_mapping": _plain(state.get("categorical_mapping", [0]))}
        if state.get("unlabeled_category") is not None:
            out["unlabeled_category"] = _plain_value(state["unlabeled_category"])
        return out

    cats = fields.get("extra_categorical_covs", {}).get("state_registry", {})
    conts = fields.get("extra_continuous_covs", {}).get("state_registry", {})
    size = fields.get("size_factor", {}).get("data_registry", {})
    batch, labels = categorical("batch"), categorical("labels")
    setup_args = {k: args.get(k) for k in ("layer", "batch_key", "labels_key", "size_factor_key",
                                          "categorical_covariate_keys", "continuous_covariate_keys")}
    if args.get("unlabeled_category") is not None:
        setup_args["unlabeled_category"] = _plain_value(args["unlabeled_category"])
    mappings = {k: _plain(v) for k, v in cats.get("mappings", {}).items()}
    field_keys = list(cats.get("field_keys", []))
    columns = _plain(conts.get("columns", []))
    return {
        "format_version": REGISTRY_FORMAT_VERSION, "snakevi_version": __version__,
        "model_name": scvi_registry["model_name"],
        "setup_method_name": scvi_registry.get("setup_method_name", "setup_anndata"),
        "setup_args": setup_args,
        "fields": {
            "X": {"attr_name": x_data.get("attr_name", "X"), "attr_key": x_data.get("attr_key"),
                  "n_obs": int(x_state["n_obs"]), "n_vars": int(x_state["n_vars"]),
                  "column_names": [str(g) for g in x_state["column_names"]]},
            "batch": batch, "labels": labels,
            "size_factor": {"original_key": size.get("attr_key")},
            "extra_categorical_covs": {"field_keys": field_keys, "mappings": mappings,
                                       "n_cats_per_key": [len(mappings[k]) for k in field_keys]},
            "extra_continuous_covs": {"columns": columns},
        },
        "summary": {"n_obs": int(x_state["n_obs"]), "n_vars": int(x_state["n_vars"]),
                    "n_batch": len(batch["categorical_mapping"]), "n_labels": len(labels["categorical_mapping"]),
                    "n_cats_per_cov": [len(mappings[k]) for k in field_keys],
                    "n_extra_continuous_covs": len(columns), "has_size_factor": bool(size.get("attr_key"))},
    }


def _snakevi_init_params(init_params: dict, name: str) -> dict:
    params = dict(init_params.get("non_kwargs", {}))
    for group in init_params.get("kwargs", {}).values():  # scvi-tools flattens its **kwargs groups too
        params.update(group or {})
    params.pop("datamodule", None)
    if name == "SCVI" and params.get("use_observed_lib_size", True):
        params.pop("use_observed_lib_size", None)  # snakevi's SCVI default; kept only when False
    return params


def _history_records(history) -> list[dict]:
    if not isinstance(history, dict):
        return []
    by_epoch: dict[int, dict] = {}
    for key, frame in history.items():
        for epoch, value in zip(frame.index, frame.iloc[:, 0]):
            by_epoch.setdefault(int(epoch), {"epoch": int(epoch)})[key] = float(value)
    return [by_epoch[e] for e in sorted(by_epoch)]


def _plain(values) -> list:
    return [_plain_value(v) for v in np.asarray(values).tolist()]


def _plain_value(value):
    return value.item() if isinstance(value, np.generic) else value


def _index_list(indices) -> list[int] | None:
    return None if indices is None else [int(i) for i in np.asarray(indices)]
