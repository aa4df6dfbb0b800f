"""BatchNorm over the whole minibatch of a multi-process run, on any device.

Under DDP each rank holds a shard of the minibatch. A plain ``BatchNorm1d`` would normalise
each shard by its own statistics, so the step would differ from the one a single process takes
on the whole minibatch; ``torch.nn.SyncBatchNorm`` fixes that on GPUs only. Here the per-feature
sums are all-reduced by torch's functional ``all_reduce``, which carries the gradient back
across the ranks, so training-mode BatchNorm sees the union of the shards on the
CPU (gloo) and on CUDA (NCCL) alike. Evaluation mode uses the running statistics, which are
updated from the global batch and so stay equal on every rank.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def _summed_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over the ranks, differentiably: the backward pass sums the gradients too."""
    import torch.distributed as dist
    from torch.distributed import _functional_collectives as funcol

    # torch's functional all_reduce has an autograd formula (torch.distributed.nn.functional's,
    # the older public one, is deprecated). It may return a lazy tensor: wait() makes it real.
    out = funcol.all_reduce(tensor, "sum", dist.group.WORLD)
    return out.wait() if hasattr(out, "wait") else out


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` whose training-mode statistics are those of all ranks' inputs together.

    Same parameters, buffers and ``state_dict`` keys as ``BatchNorm1d``; instances are made by
    :func:`global_batch_norm` switching the class of existing layers for the length of a fit.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.dim() != 2:
            return super().forward(x)
        n_features = x.shape[1]
        count = torch.full((1,), float(x.shape[0]), dtype=x.dtype, device=x.device)
        stats = _summed_over_ranks(torch.cat([x.sum(0), (x * x).sum(0), count]))
        total = stats[-1]
        mean = stats[:n_features] / total
        var = (stats[n_features : 2 * n_features] / total - mean * mean).clamp_min(0.0)  # biased, as BatchNorm
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * (total / (total - 1).clamp_min(1.0))
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.detach(), alpha=m)
        out = (x - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            out = out * self.weight + self.bias
        return out


@contextmanager
def global_batch_norm(*modules: nn.Module) -> Iterator[int]:
    """Within the block, every ``BatchNorm1d`` of ``modules`` normalises over all ranks' shards.

    Yields the number of layers switched; their class is restored afterwards (the weights and
    running statistics are the same objects throughout).
    """
    layers = [m for module in modules for m in module.modules() if type(m) is nn.BatchNorm1d]
    for layer in layers:
        layer.__class__ = GlobalBatchNorm1d
    try:
        yield len(layers)
    finally:
        for layer in layers:
            layer.__class__ = nn.BatchNorm1d
