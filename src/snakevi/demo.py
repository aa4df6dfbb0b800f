"""Train scVI on the embedded simulated dataset: ``python -m snakevi.demo``.

A stand-in for the demo workflow until the Snakemake rules land. It writes
``results/demo/`` (model bundle, history.csv, embedding.h5ad) and prints a short summary.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m snakevi.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/demo", help="output directory (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    args = parser.parse_args(argv)

    from snakevi.data import simulate
    from snakevi.model import SCVI

    out = Path(args.out)
    adata = simulate(n_cells=3000, n_genes=1000, n_batches=3, n_groups=5, seed=args.seed)
    SCVI.setup_anndata(adata, batch_key="batch", labels_key="label")
    model = SCVI(adata, seed=args.seed)
    model.train(max_epochs=args.epochs, check_val_every_n_epoch=1)
    model.save(out / "model", overwrite=True)
    model.history.to_csv(out / "history.csv")
    adata.obsm["X_scVI"] = model.get_latent_representation()
    adata.write_h5ad(out / "embedding.h5ad")
    last = model.history.iloc[-1]
    print(
        f"trained {args.epochs} epochs on {adata.n_obs} cells x {adata.n_vars} genes; "
        f"elbo_validation {last['elbo_validation']:.2f}; outputs in {out}/"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
