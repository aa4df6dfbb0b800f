"""The scvi-tools side of the interop tests; run by the scvi-tools environment's Python.

Usage: ``python scvi_side.py WORK``. ``WORK`` holds ``data.h5ad`` and the snakevi exports
``scvi_dir`` and ``scanvi_dir`` (scvi-tools format); this script loads them with scvi-tools
1.4.x, writes what scvi-tools computes from them (latents, decoder output at the posterior
mean), maps a query onto each (``load_query_data``), trains models of its own and saves them
(``scvi_written``, ``scanvi_written``) for snakevi to read, and writes ``scvi_side.json``.
"""

import json
import sys
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import scvi
import torch

warnings.filterwarnings("ignore")
work = Path(sys.argv[1])
adata = ad.read_h5ad(work / "data.h5ad")
out = {"scvi_version": scvi.__version__}


def decoded_at_mean(model, data):
    """px_scale of the first 100 cells decoded from their posterior mean, their own batches."""
    manager = model.adata_manager
    z = torch.as_tensor(model.get_latent_representation(data)[:100])
    batch = torch.as_tensor(manager.get_from_registry("batch")[:100].reshape(-1, 1).astype(np.int64))
    library = torch.log(torch.as_tensor(np.asarray(data.X[:100].sum(1)).reshape(-1, 1), dtype=torch.float32))
    with torch.no_grad():
        gen = model.module.generative(z=z, library=library, batch_index=batch, y=None)
    return gen["px"].scale.numpy()


scvi_model = scvi.model.SCVI.load(str(work / "scvi_dir"), adata=adata.copy())
np.save(work / "scvi_latent.npy", scvi_model.get_latent_representation())
np.save(work / "scvi_decoded.npy", decoded_at_mean(scvi_model, scvi_model.adata))
torch.manual_seed(0)  # the posterior draws, seeded as the snakevi side seeds them
np.save(work / "scvi_normalized.npy", scvi_model.get_normalized_expression(return_numpy=True, batch_size=128))
query = adata[:150].copy()
scvi.model.SCVI.prepare_query_anndata(query, scvi_model)
mapped = scvi.model.SCVI.load_query_data(query, scvi_model)
mapped.train(max_epochs=1, accelerator="cpu", enable_progress_bar=False)
out["scvi_query_latent_shape"] = list(mapped.get_latent_representation().shape)

scanvi_model = scvi.model.SCANVI.load(str(work / "scanvi_dir"), adata=adata.copy())
np.save(work / "scanvi_latent.npy", scanvi_model.get_latent_representation())
out["scanvi_predictions"] = [str(p) for p in scanvi_model.predict()[:50]]
scanvi_query = scvi.model.SCANVI.load_query_data(adata[:150].copy(), scanvi_model)
out["scanvi_query_predictions"] = len(scanvi_query.predict())

scvi.settings.seed = 0
own_data = adata.copy()
scvi.model.SCVI.setup_anndata(own_data, batch_key="batch")
own = scvi.model.SCVI(own_data, n_latent=6, n_hidden=32)
own.train(max_epochs=2, accelerator="cpu", enable_progress_bar=False)
own.save(str(work / "scvi_written"), overwrite=True)
np.save(work / "scvi_written_latent.npy", own.get_latent_representation())
own_scanvi = scvi.model.SCANVI.from_scvi_model(own, unlabeled_category="Unknown", labels_key="cell_line")
own_scanvi.train(max_epochs=1, accelerator="cpu", enable_progress_bar=False)
own_scanvi.save(str(work / "scanvi_written"), overwrite=True)
np.save(work / "scanvi_written_latent.npy", own_scanvi.get_latent_representation())
out["scanvi_written_predictions"] = [str(p) for p in own_scanvi.predict()]
(work / "scvi_side.json").write_text(json.dumps(out))
