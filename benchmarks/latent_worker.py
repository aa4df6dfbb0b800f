#!/usr/bin/env python
"""One training run of snakevi or scvi-tools on a real dataset; writes latents and predictions.

Runs under either environment (``.venv`` for snakevi, ``.venv-scvi`` for scvi-tools) and imports
only the library asked for, with the same calls and settings on both sides::

    python benchmarks/latent_worker.py --system snakevi --mode scvi --data D.h5ad \
        --batch-key donor --labels-key cell_type --epochs 100 --seed 0 --out out.npz

Modes:

- ``scvi``: SCVI with default settings; writes ``latent`` (every cell).
- ``scanvi``: the labels of the ``--hide`` batches are set to "Unknown"; SCVI is trained for
  ``--epochs``, then SCANVI from it (``from_scvi_model``, default epochs for a pretrained model);
  writes ``latent`` and ``predicted`` (every cell).
- ``arches``: a reference (SCVI then SCANVI, as above) on every batch but the ``--hide`` ones, then
  the hidden batches as a query (``prepare_query_anndata`` + ``load_query_data``, 100 epochs with
  weight decay 0, as scvi-tools' tutorial); writes ``latent``/``predicted`` of the query cells.

Every mode also writes ``cells`` (positions in the file of the cells in ``latent``), ``seconds``
(training wall time) and the library version. The scoring (accuracy, scib-style metrics) is done
by the caller, with the same code for both systems.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

UNKNOWN = "Unknown"
LABELS = "_labels_for_training"


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--system", choices=["snakevi", "scvi-tools"], required=True)
    p.add_argument("--mode", choices=["scvi", "scanvi", "arches"], default="scvi")
    p.add_argument("--data", required=True)
    p.add_argument("--batch-key", required=True)
    p.add_argument("--labels-key", required=True)
    p.add_argument("--epochs", type=int, default=None, help="SCVI epochs (None: the heuristic)")
    p.add_argument("--query-epochs", type=int, default=100)
    p.add_argument("--hide", nargs="*", default=[], help="batches whose labels are hidden (scanvi) or the query (arches)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True)
    return p.parse_args(argv)


class _Api:
    """The handful of calls that differ between the two libraries only in their module names."""

    def __init__(self, system: str, seed: int):
        if system == "scvi-tools":
            import scvi

            scvi.settings.seed = seed
            scvi.settings.dl_num_workers = 0
            self.SCVI, self.SCANVI = scvi.model.SCVI, scvi.model.SCANVI
            self.version = scvi.__version__
            self.extra = {"enable_progress_bar": False}
            self.seed_kw = {}
        else:
            import snakevi
            from snakevi.model import SCANVI, SCVI

            self.SCVI, self.SCANVI = SCVI, SCANVI
            self.version = snakevi.__version__
            self.extra = {"enable_progress_bar": False}
            self.seed_kw = {"seed": seed}
        self.system = system

    def scvi(self, adata, batch_key, epochs):
        self.SCVI.setup_anndata(adata, batch_key=batch_key, labels_key=LABELS)
        model = self.SCVI(adata, **self.seed_kw)
        model.train(max_epochs=epochs, **self.extra)
        return model

    def scanvi(self, scvi_model):
        model = self.SCANVI.from_scvi_model(scvi_model, unlabeled_category=UNKNOWN)
        model.train(**self.extra)
        return model

    def query(self, query, reference, epochs):
        self.SCANVI.prepare_query_anndata(query, reference)
        model = self.SCANVI.load_query_data(query, reference)
        model.train(max_epochs=epochs, plan_kwargs={"weight_decay": 0.0}, **self.extra)
        return model


def main(argv=None) -> int:
    args = _args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import anndata
    import torch

    torch.set_num_threads(args.threads)
    api = _Api(args.system, args.seed)
    adata = anndata.read_h5ad(args.data)
    adata.obs[args.batch_key] = adata.obs[args.batch_key].astype(str).astype("category")
    labels = adata.obs[args.labels_key].astype(str).to_numpy()
    hidden = adata.obs[args.batch_key].isin(args.hide).to_numpy()
    if args.mode != "scvi" and not hidden.any():
        sys.exit(f"--hide {args.hide} matches no value of obs[{args.batch_key!r}]")
    t0 = time.perf_counter()
    out = {}
    if args.mode == "scvi":
        adata.obs[LABELS] = labels
        model = api.scvi(adata, args.batch_key, args.epochs)
        out["latent"] = model.get_latent_representation()
        cells = np.arange(adata.n_obs)
    elif args.mode == "scanvi":
        adata.obs[LABELS] = np.where(hidden, UNKNOWN, labels)
        model = api.scanvi(api.scvi(adata, args.batch_key, args.epochs))
        out["latent"] = model.get_latent_representation()
        out["predicted"] = np.asarray(model.predict(), dtype=str)
        cells = np.arange(adata.n_obs)
    else:
        ref = adata[~hidden].copy()
        ref.obs[LABELS] = labels[~hidden]
        reference = api.scanvi(api.scvi(ref, args.batch_key, args.epochs))
        query = adata[hidden].copy()
        query.obs[LABELS] = UNKNOWN
        model = api.query(query, reference, args.query_epochs)
        out["latent"] = model.get_latent_representation()
        out["predicted"] = np.asarray(model.predict(), dtype=str)
        cells = np.flatnonzero(hidden)
    seconds = time.perf_counter() - t0
    np.savez(args.out, cells=cells, seconds=seconds, version=api.version,
             **{k: np.asarray(v) for k, v in out.items()})
    print(f"{args.system} {args.mode} seed {args.seed}: {seconds:.1f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
