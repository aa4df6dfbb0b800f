"""Interop with scvi-tools: snakevi writes model directories scvi-tools loads, and reads theirs.

The round trips need scvi-tools itself, in the separate environment that
``benchmarks/setup_scvi_env.sh`` makes (``.venv-scvi``, or ``SNAKEVI_SCVI_PYTHON``); where it is
absent they are skipped with that reason, unless ``SNAKEVI_REQUIRE_SCVI=1`` (as ``.ci/run``
sets) turns the skip into a failure. The in-process round trip and the refusal of a crafted
pickle need nothing but snakevi.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from snakevi.data import simulate
from snakevi.model import SCANVI, SCVI
from snakevi.model.bundle import ModelFileError

ROOT = Path(__file__).resolve().parents[2]
SCVI_SIDE = Path(__file__).with_name("scvi_side.py")
TRAIN = {"max_epochs": 2}


def _scvi_python() -> str:
    python = os.environ.get("SNAKEVI_SCVI_PYTHON") or str(ROOT / ".venv-scvi" / "bin" / "python")
    if not Path(python).is_file():
        reason = f"no scvi-tools environment at {python} (make it with benchmarks/setup_scvi_env.sh)"
        if os.environ.get("SNAKEVI_REQUIRE_SCVI") == "1":
            pytest.fail(f"SNAKEVI_REQUIRE_SCVI=1 but {reason}")
        pytest.skip(reason)
    return python


def _decoded_at_mean(model, adata) -> np.ndarray:
    """Like scvi_side.decoded_at_mean: px_scale of the first 100 cells at their posterior mean."""
    from snakevi.data import CellData

    z = torch.as_tensor(model.get_latent_representation(adata)[:100])
    batch = torch.as_tensor(CellData.from_anndata(adata, model.registry).obs["batch"][:100].astype(np.int64))
    library = torch.log(torch.as_tensor(np.asarray(adata.X[:100].sum(1)).reshape(-1, 1), dtype=torch.float32))
    with torch.no_grad():
        gen = model.module.generative(z=z, library=library, batch_index=batch, y=None)
    return gen["px"].scale.numpy()


@pytest.fixture(scope="module")
def cellbench_small(cellbench_path, tmp_path_factory):
    import anndata as ad

    adata = ad.read_h5ad(cellbench_path)[:, :300].copy()
    labels = adata.obs["cell_line"].astype(str)
    labels.iloc[::3] = "Unknown"  # a third unlabelled, for scANVI
    adata.obs["cell_line"] = labels.astype("category")
    work = tmp_path_factory.mktemp("interop")
    adata.write_h5ad(work / "data.h5ad")
    return work, adata


def test_snakevi_models_load_in_scvi_tools_and_theirs_in_snakevi(cellbench_small):
    python = _scvi_python()
    work, adata = cellbench_small
    data = adata.copy()
    SCVI.setup_anndata(data, batch_key="batch")
    model = SCVI(data, n_latent=8)
    model.train(**TRAIN)
    model.save(work / "scvi_dir", format="scvi-tools")
    scanvi = SCANVI.from_scvi_model(model, unlabeled_category="Unknown", labels_key="cell_line")
    scanvi.train(max_epochs=1)
    scanvi.save(work / "scanvi_dir", format="scvi-tools")

    done = subprocess.run([python, str(SCVI_SIDE), str(work)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    side = json.loads((work / "scvi_side.json").read_text())
    assert side["scvi_version"].startswith("1.4.")

    # scvi-tools computes what snakevi computes from the same weights.
    assert np.abs(np.load(work / "scvi_latent.npy") - model.get_latent_representation(data)).max() < 1e-5
    assert np.abs(np.load(work / "scvi_decoded.npy") - _decoded_at_mean(model, data)).max() < 1e-5
    # get_normalized_expression samples z: the same draws give the same values. torch's DataLoader,
    # which scvi-tools iterates, takes one int64 from the global generator (its workers' base seed)
    # before the first batch; snakevi's loader does not, so that draw is taken here.
    torch.manual_seed(0)
    torch.empty((), dtype=torch.int64).random_()
    ours = model.get_normalized_expression(data, return_numpy=True, batch_size=128)
    assert np.abs(np.load(work / "scvi_normalized.npy") - ours).max() < 1e-5
    scanvi_data = scanvi.adata if getattr(scanvi, "adata", None) is not None else data
    assert np.abs(np.load(work / "scanvi_latent.npy") - scanvi.get_latent_representation(scanvi_data)).max() < 1e-5
    assert side["scanvi_predictions"] == [str(p) for p in scanvi.predict(scanvi_data)[:50]]
    # load_query_data works on both exports.
    assert side["scvi_query_latent_shape"] == [150, 8]
    assert side["scanvi_query_predictions"] == 150

    # A model scvi-tools trained and saved loads in snakevi with scvi-tools' latent.
    theirs = SCVI.load(work / "scvi_written", adata.copy())
    assert theirs.init_params["n_latent"] == 6 and theirs.is_trained
    assert np.abs(theirs.get_latent_representation(adata.copy()) - np.load(work / "scvi_written_latent.npy")).max() < 1e-5
    assert [r["epoch"] for r in theirs.history_records] == [0, 1]
    theirs_scanvi = SCANVI.load(work / "scanvi_written", adata.copy())
    ours = theirs_scanvi.get_latent_representation(adata.copy())
    assert np.abs(ours - np.load(work / "scanvi_written_latent.npy")).max() < 1e-5
    assert [str(p) for p in theirs_scanvi.predict(adata.copy())] == side["scanvi_written_predictions"]

    # ... and is a reference a query maps onto (the workflow's queries.<name>.reference_model).
    from snakevi.steps.map_query import map_query

    query = adata[:100].copy()
    query.obs["batch"] = ("query_" + query.obs["batch"].astype(str)).astype("category")
    query.write_h5ad(work / "query.h5ad")
    mapped = map_query(work / "scvi_written", work / "query.h5ad", work / "q_model", work / "q_history.csv",
                       work / "q_embedding.h5ad", train_params={"max_epochs": 1}, accelerator="cpu")
    assert mapped.obsm["X_scVI"].shape == (100, 6) and np.isfinite(mapped.obsm["X_scVI"]).all()


def _tiny_scvi():
    adata = simulate(n_cells=120, n_genes=30, seed=1)
    SCVI.setup_anndata(adata, batch_key="batch")
    model = SCVI(adata, n_latent=4, n_hidden=16)
    model.train(max_epochs=2)
    return adata, model


def test_scvi_tools_format_round_trips_in_snakevi(tmp_path):
    adata, model = _tiny_scvi()
    model.save(tmp_path / "m", format="scvi-tools")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.pt"]
    loaded = SCVI.load(tmp_path / "m", adata)
    assert np.array_equal(loaded.get_latent_representation(adata), model.get_latent_representation(adata))
    assert loaded.init_params == {"seed": 0, **{k: v for k, v in model.init_params.items() if k != "seed"}}
    assert [r["epoch"] for r in loaded.history_records] == [0, 1]
    # The same model writes the same file.
    model.save(tmp_path / "again", format="scvi-tools")
    assert (tmp_path / "m" / "model.pt").read_bytes() == (tmp_path / "again" / "model.pt").read_bytes()


class _Payload:
    """Pickles as a call to ``os.system``: what a malicious model file does."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("where", ["attr_dict", "model_state_dict"])
def test_a_model_file_with_a_reduce_payload_is_refused_and_never_runs(tmp_path, where):
    adata, model = _tiny_scvi()
    model.save(tmp_path / "m", format="scvi-tools")
    saved = torch.load(tmp_path / "m" / "model.pt", weights_only=False)
    marker = tmp_path / "payload_ran"
    saved[where]["extra"] = _Payload(f"touch {marker}")
    torch.save(saved, tmp_path / "m" / "model.pt")
    with pytest.raises(ModelFileError, match=r"posix\.system.*refused and nothing in the file was run"):
        SCVI.load(tmp_path / "m", adata)
    assert not marker.exists()


def test_format_names_are_checked(tmp_path):
    _, model = _tiny_scvi()
    with pytest.raises(ValueError, match="format='pickle'"):
        model.save(tmp_path / "m", format="pickle")
    assert not (tmp_path / "m").exists()
