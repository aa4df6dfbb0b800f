#!/usr/bin/env python
"""Train scvi-tools' and snakevi's SCVI modules in lockstep: same weights, minibatches and noise.

Usage (from the repository root; makes .venv-scvi on first use)::

    envs/venv-run python benchmarks/lockstep.py --data ../shared/data/cellbench_lung_celseq2_dropseq.h5ad \
        --batch-key batch --epochs 3 --dtype float64

Both models are built from the same AnnData with the same seed (their initial weights are
compared, then scvi-tools' are loaded into snakevi's module so the check does not depend on
that). Each optimizer step then feeds both modules the same minibatch (scvi-tools' own loader,
a seeded random order per epoch) under the same torch seed, so dropout masks and the
reparametrised draws are the same; each side uses its own training plan's optimizer
(``configure_optimizers``) and KL weight rule. Printed per epoch: both losses and the largest
absolute difference between any two parameters or buffers.

In float64 the two stay equal to ~1e-13 (the same arithmetic in a different order); in float32
they drift apart by rounding (fused vs. foreach Adam) at a rate set by the dynamics, not by a
difference in the algorithm. The first is the check: it says the model, loss, KL schedule and
optimizer are scvi-tools', so differences between whole runs come from the random split,
shuffling and noise.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCVI_PYTHON = ROOT / ".venv-scvi" / "bin" / "python"


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cellbench_lung_celseq2_dropseq.h5ad"))
    p.add_argument("--batch-key", default="batch")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-cells", type=float, default=0.9, help="fraction of cells used for the minibatches")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def _reexec_in_scvi_env(argv) -> int:
    """Run this script again under .venv-scvi (which has scvi-tools), with snakevi on the path."""
    subprocess.run(["bash", str(HERE / "setup_scvi_env.sh")], check=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([str(SCVI_PYTHON), __file__, *argv], env=env).returncode


def _max_difference(a: dict, b: dict) -> float:
    return max((x.double() - y.double()).abs().max().item()
               for x, y in zip(a.values(), b.values()) if x.is_floating_point())


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _args(argv)
    try:
        import scvi  # noqa: F401
    except ImportError:
        return _reexec_in_scvi_env(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import anndata
    import numpy as np
    import scvi
    import torch
    from scvi.train import TrainingPlan as ScviPlan

    from snakevi.model import SCVI
    from snakevi.train import TrainingPlan

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    adata = anndata.read_h5ad(args.data)
    adata.obs[args.batch_key] = adata.obs[args.batch_key].astype(str).astype("category")
    ours = adata.copy()
    scvi.settings.seed = args.seed
    scvi.model.SCVI.setup_anndata(adata, batch_key=args.batch_key)
    theirs_model = scvi.model.SCVI(adata)
    SCVI.setup_anndata(ours, batch_key=args.batch_key)
    ours_model = SCVI(ours, seed=args.seed)
    theirs, mine = theirs_model.module, ours_model.module
    same_init = all(torch.equal(x, y) for x, y in zip(theirs.state_dict().values(), mine.state_dict().values()))
    print(f"scvi-tools {scvi.__version__}; same initial weights for seed {args.seed}: {same_init}")
    mine.load_state_dict(theirs.state_dict(), strict=True)
    theirs.to(dtype)
    mine.to(dtype)
    their_plan, our_plan = ScviPlan(theirs), TrainingPlan(mine)
    optimizers = (their_plan.configure_optimizers()["optimizer"], our_plan.configure_optimizers()[0])

    rng = np.random.default_rng(args.seed)
    cells = np.sort(rng.permutation(adata.n_obs)[: int(np.ceil(args.train_cells * adata.n_obs))])
    loader = theirs_model._make_data_loader(adata, indices=cells, batch_size=128, shuffle=False)
    batches = [{k: v.to(dtype) if v.is_floating_point() else v for k, v in b.items()} for b in loader]
    from scvi.train._trainingplans import _compute_kl_weight

    step = 0
    print(f"{len(cells)} cells, {len(batches)} minibatches per epoch, {args.dtype}")
    for epoch in range(args.epochs):
        for i in rng.permutation(len(batches)):
            kl_theirs = _compute_kl_weight(epoch, step, their_plan.n_epochs_kl_warmup, their_plan.n_steps_kl_warmup,
                                           their_plan.max_kl_weight, their_plan.min_kl_weight)
            kl_ours = our_plan.kl_weight(epoch, step)
            if kl_theirs != kl_ours:
                print(f"KL weight differs at epoch {epoch} step {step}: {kl_theirs} vs {kl_ours}")
                return 1
            losses = []
            for module, optimizer in zip((theirs, mine), optimizers):
                module.train()
                torch.manual_seed(10_000 + step)
                loss = module(dict(batches[i]), loss_kwargs={"kl_weight": kl_ours})[-1].loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            step += 1
        diff = _max_difference(theirs.state_dict(), mine.state_dict())
        print(f"epoch {epoch}: {step} steps, loss scvi-tools {losses[0]:.6f} snakevi {losses[1]:.6f}, "
              f"max |parameter difference| {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
