"""Epoch accumulator for the ELBO metrics, kept on the device and read once per epoch.

Definitions follow scvi-tools' ``ElboMetric`` and Lightning's epoch means:

- ``reconstruction_loss_{mode}``, ``kl_local_{mode}``: sum over the epoch's cells / cells;
- ``kl_global_{mode}``: sum over minibatches / minibatches;
- ``elbo_{mode}`` = reconstruction + kl_local + kl_global / ``n_obs_total``;
- ``train_loss`` / ``validation_loss``: mean of ``LossOutput.loss`` over minibatches, weighted
  by the minibatch size (Lightning infers the batch size from the first tensor of the batch);
- ``{name}_{mode}`` for each 0-d ``extra_metrics`` entry, weighted by the minibatch size.
"""

from __future__ import annotations

import torch

from snakevi.module.base import LossOutput

_LOSS_NAME = {"train": "train_loss", "validation": "validation_loss"}


class EpochMetrics:
    """Running sums of one epoch's losses, for mode ``"train"`` or ``"validation"``.

    ``update`` only adds device tensors (no host sync); ``compute`` reads them all back with a
    single transfer and resets the sums.

    Parameters
    ----------
    mode
        ``"train"`` or ``"validation"``: the suffix of the metric names.
    """

    def __init__(self, mode: str) -> None:
        if mode not in _LOSS_NAME:
            raise ValueError(f"mode={mode!r}: expected 'train' or 'validation'.")
        self.mode = mode
        #: Sums a tensor over the ranks of a multi-process run (set by the trainer); None alone.
        self.reduce = None
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._sums: dict[str, torch.Tensor] = {}
        self._n_obs = 0
        self._n_batches = 0

    def _add(self, name: str, value: torch.Tensor) -> None:
        # float64 sums keep an epoch of float32 terms exact enough; MPS has no float64.
        dtype = torch.float32 if value.device.type == "mps" else torch.float64
        value = value.detach().to(dtype)
        self._sums[name] = self._sums[name] + value if name in self._sums else value

    def update(self, output: LossOutput) -> None:
        """Add one minibatch's ``LossOutput`` (no host synchronisation)."""
        n = int(output.n_obs_minibatch)
        self._n_obs += n
        self._n_batches += 1
        self._add("loss", output.loss * n)
        self._add("reconstruction_loss", output.reconstruction_loss_sum)
        self._add("kl_local", output.kl_local_sum)
        self._add("kl_global", output.kl_global_sum)
        for key, value in output.extra_metrics.items():
            if not isinstance(value, torch.Tensor):
                value = torch.as_tensor(float(value), device=output.loss.device)
            if value.dim() != 0:
                raise ValueError(
                    f"extra_metrics[{key!r}] has shape {tuple(value.shape)}; extra metrics must be "
                    "0-d tensors (one number per minibatch), e.g. value.mean()."
                )
            self._add(f"extra/{key}", value * n)

    def compute(self, n_obs_total: int | None) -> dict[str, float]:
        """Epoch values as Python floats, then reset; ``{}`` when nothing was accumulated.

        Parameters
        ----------
        n_obs_total
            Cells in the whole split (``plan.n_obs_training`` / ``n_obs_validation``), which
            scales ``kl_global`` in the ELBO; ``None`` or < 1 counts as 1 (as in scvi-tools).
        """
        if self.reduce is None and self._n_batches == 0:
            self.reset()
            return {}
        names = list(self._sums)
        stacked = torch.stack([self._sums[k] for k in names]) if names else torch.zeros(0, dtype=torch.float64)
        if self.reduce is not None:
            # Every rank's sums and counts added up: the epoch's metrics are those of all its cells.
            # (A rank may have seen no validation minibatch; it still joins the reduction.)
            counts = torch.tensor([self._n_obs, self._n_batches], dtype=stacked.dtype, device=stacked.device)
            stacked = self.reduce(torch.cat([stacked, counts]))
            stacked, (n_obs, n_batches) = stacked[:-2], (int(v) for v in stacked[-2:].tolist())
        else:
            n_obs, n_batches = self._n_obs, self._n_batches
        # The one host sync of the epoch for this accumulator.
        values = dict(zip(names, stacked.tolist()))
        self.reset()
        if n_batches == 0:
            return {}
        mode = self.mode
        rec = values["reconstruction_loss"] / n_obs
        kl_local = values["kl_local"] / n_obs
        kl_global = values["kl_global"] / n_batches
        scale = 1 if n_obs_total is None or n_obs_total < 1 else n_obs_total
        out = {
            _LOSS_NAME[mode]: values["loss"] / n_obs,
            f"elbo_{mode}": rec + kl_local + kl_global / scale,
            f"reconstruction_loss_{mode}": rec,
            f"kl_local_{mode}": kl_local,
            f"kl_global_{mode}": kl_global,
        }
        for name in names:
            if name.startswith("extra/"):
                out[f"{name[len('extra/'):]}_{mode}"] = values[name] / n_obs
        return out
