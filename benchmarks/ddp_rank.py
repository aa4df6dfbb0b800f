"""What each process of the DDP throughput benchmark runs (importable by name: ranks are fresh interpreters).

``train_rank(job)`` is started by :func:`snakevi.train.launch.spawn` as every rank of one
configuration, a single process included, so all configurations pay the same start-up. Under
spawn's environment (``RANK``, ``WORLD_SIZE``, ...) ``SCVI.train(devices="auto")`` joins the
process group exactly as it does under torchrun. Besides the epoch times it records the time
spent in the two kinds of collectives a training step makes (the gradient all-reduce and
BatchNorm's forward all-reduce), by wrapping them: on the CPU (gloo) a collective returns
only when done, so its wall time is its cost plus any wait for the slower rank.
"""

from __future__ import annotations

import contextlib
import time
from unittest import mock

import numpy as np


def split_indices(n_obs: int, seed: int, multiple: int, train_fraction: float = 0.9) -> list[np.ndarray]:
    """``[train, validation, test]``: a seeded 90/10 split whose training set is a multiple of ``multiple``.

    With a training set that every process count divides, no rank pads its shard with a repeated
    cell, so minibatch k of N ranks together is exactly minibatch k of one process (the few cells
    trimmed off go to the unused test set).
    """
    order = np.random.default_rng(seed).permutation(n_obs)
    n_train = int(train_fraction * n_obs)
    kept = n_train // multiple * multiple
    return [np.sort(order[:kept]), np.sort(order[n_train:]), np.sort(order[kept:n_train])]


def load_data(source: dict):
    """The registered data of ``source``: an .h5ad (needs anndata) or a prepared folder (needs only numpy/scipy)."""
    if source.get("prepared"):
        from snakevi.data import registry_from_json
        from snakevi.data.prepared import load_prepared

        return load_prepared(source["prepared"], registry_from_json(source["registry"]))
    import anndata

    from snakevi.model import SCVI

    adata = anndata.read_h5ad(source["h5ad"])
    SCVI.setup_anndata(adata, batch_key=source["batch_key"])
    return adata


class _Clock:
    """Per-epoch wall times (the whole epoch, training + validation, and its training pass) and
    the seconds the timed collectives (``seconds``, running totals) took in each training pass."""

    def __init__(self, cuda: bool, seconds: dict) -> None:
        self.cuda, self.seconds = cuda, seconds
        self.first_epoch_at: float | None = None
        self.epoch_s: list[float] = []
        self.train_pass_s: list[float] = []
        self.steps: list[int] = []
        self.collectives_s: dict[str, list[float]] = {key: [] for key in seconds}
        self._t0 = 0.0
        self._at_start: dict = {}

    def _now(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()  # count queued GPU work in the epoch it belongs to
        return time.perf_counter()

    def on_train_epoch_start(self, trainer, plan):
        if self.first_epoch_at is None:
            self.first_epoch_at = time.time()
        self.steps.append(0)
        self._at_start = dict(self.seconds)
        self._t0 = self._now()

    def on_train_batch_end(self, trainer, plan, loss, batch_idx):
        self.steps[-1] += 1
        if batch_idx + 1 == len(trainer.train_loader):  # the last step: one synchronisation per epoch
            self.train_pass_s.append(self._now() - self._t0)
            for key, total in self.seconds.items():
                self.collectives_s[key].append(total - self._at_start[key])

    def on_train_epoch_end(self, trainer, plan):
        self.epoch_s.append(self._now() - self._t0)


@contextlib.contextmanager
def _timed_collectives(seconds: dict):
    """Add the wall time of every gradient all-reduce and BatchNorm forward all-reduce to ``seconds``."""
    from snakevi.train import global_batch_norm
    from snakevi.train.distributed import Distributed

    average, summed = Distributed.average_gradients, global_batch_norm._summed_over_ranks

    def timed(key, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[key] += time.perf_counter() - t0
        return wrapper

    with mock.patch.object(Distributed, "average_gradients", timed("grad_allreduce_s", average)), \
            mock.patch.object(global_batch_norm, "_summed_over_ranks", timed("bn_allreduce_s", summed)):
        yield


@contextlib.contextmanager
def _posterior_mean_latent():
    """``Normal.rsample`` returns the mean: with dropout 0 the training step has no random draw left.

    Then a 2-process run must give one process's numbers up to float rounding (each rank draws
    from its own seed, so with sampling the two runs differ by their draws, not by rounding).
    """
    from torch.distributions import Normal

    def mean(self, sample_shape=()):
        return self.loc.expand(self._extended_shape(sample_shape))

    with mock.patch.object(Normal, "rsample", mean):
        yield


def train_rank(job: dict) -> dict:
    """Train one SCVI as this process's rank of ``job``; return what the report needs (rank 0's is kept).

    ``job`` keys: ``source`` (see :func:`load_data`), ``world_size``, ``split_multiple``,
    ``global_batch``, ``epochs``, ``seed``, ``device`` (``"cpu"``/``"cuda"``), ``deterministic``
    (dropout 0 and z = posterior mean), ``return_weights``.
    """
    import torch

    from snakevi.model import SCVI

    data = load_data(job["source"])
    split = split_indices(len(data), job["seed"], job["split_multiple"])
    model_kwargs = {"dropout_rate": 0.0} if job["deterministic"] else {}
    model = SCVI(data, seed=job["seed"], **model_kwargs)
    seconds = {"grad_allreduce_s": 0.0, "bn_allreduce_s": 0.0}
    clock = _Clock(job["device"] == "cuda", seconds)
    latent = _posterior_mean_latent() if job["deterministic"] else contextlib.nullcontext()
    with _timed_collectives(seconds), latent:
        model.train(max_epochs=job["epochs"], accelerator=job["device"], devices="auto",
                    batch_size=job["global_batch"] // job["world_size"], external_indexing=split,
                    check_val_every_n_epoch=1, seed=job["seed"], enable_progress_bar=False, callbacks=[clock])
    dist = model.trainer.dist
    if dist.world_size != job["world_size"]:
        raise RuntimeError(f"expected {job['world_size']} process(es), the trainer ran {dist.world_size}")
    out = {"history": model.history_records, "epoch_s": clock.epoch_s, "train_pass_s": clock.train_pass_s,
           "steps": clock.steps, "first_epoch_at": clock.first_epoch_at, "n_train": int(split[0].size),
           "threads": torch.get_num_threads(), "backend": dist.backend, **clock.collectives_s}
    if job["device"] == "cuda":
        out["gpu"] = torch.cuda.get_device_name(dist.local_rank)
    if job["return_weights"]:
        out["weights"] = {k: v.detach().cpu() for k, v in model.module.state_dict().items()}
    return out

