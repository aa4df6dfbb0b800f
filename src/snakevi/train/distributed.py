"""Multi-process (DDP) training on ``torch.distributed``: which process this is, and what ranks agree on.

A run of N processes ("ranks") trains one model: every rank holds the same weights, sees its own
shard of each minibatch, and averages its gradients with the others' after each backward pass,
so the step is the one a single process would take on the whole minibatch. Everything a
decision depends on (epoch metrics, early stopping, a SIGTERM) is reduced over the ranks first,
so they all decide alike and none is left waiting in a collective.

The process group is torch's own (``init_process_group`` with ``init_method="env://"``): the
launcher (``torchrun``, ``srun``, or :func:`snakevi.train.launch.spawn`) sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist  # loaded by `import torch` already: no start-up cost

from snakevi.train.launcher_env import environment_world

#: How long a collective waits for the other ranks before it fails (a rank that died or hangs).
DEFAULT_TIMEOUT_S = 600


def in_process_group() -> bool:
    """Whether torch's process group already exists in this process (the caller created it)."""
    return dist.is_available() and dist.is_initialized()


@dataclass
class Distributed:
    """This process's place in a training run, and the collectives the trainer needs.

    A single-process run is ``Distributed()`` (rank 0 of 1): every method is then a no-op or
    the identity, so the trainer calls them unconditionally.

    Parameters
    ----------
    rank, world_size, local_rank
        This process's index, the number of processes, and its index on this node.
    backend
        ``"gloo"`` (CPU) or ``"nccl"`` (CUDA); None when single-process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    _device: torch.device = field(default_factory=lambda: torch.device("cpu"), repr=False)

    @property
    def enabled(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files (checkpoints, history, the model) and logs."""
        return self.rank == 0

    # -- collectives -------------------------------------------------------------------------
    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the ranks (a new tensor; the input is left as it was)."""
        if not self.enabled:
            return tensor
        out = tensor.detach().clone().to(self._device)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out.to(tensor.device)

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on at least one."""
        if not self.enabled:
            return bool(flag)
        value = torch.tensor([1.0 if flag else 0.0], device=self._device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (pickled: small objects only, e.g. RNG states)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_module(self, module: torch.nn.Module, src: int = 0) -> None:
        """Copy rank ``src``'s parameters and buffers into every rank's ``module`` (in place)."""
        if not self.enabled:
            return
        with torch.no_grad():
            for tensor in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(tensor.data, src=src)

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Replace each gradient by its mean over the ranks: one all-reduce of one flat buffer.

        A parameter without a gradient on this rank (unused in its forward pass) counts as a
        zero gradient, so every rank reduces buffers of the same size; one that no rank has a
        gradient for keeps ``grad = None`` (the optimizer skips it, as a single process would).
        """
        if not self.enabled or not params:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        has_grad = torch.tensor([p.grad is not None for p in params], dtype=grads[0].dtype, device=grads[0].device)
        flat = torch.cat([g.reshape(-1) for g in grads] + [has_grad])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        used = (flat[-len(params):] > 0).tolist()  # one read-back for all parameters
        flat = flat[: -len(params)].div_(self.world_size)
        offset = 0
        for p, p_used in zip(params, used):
            mean = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
            if p.grad is not None:
                p.grad.copy_(mean)
            elif p_used:
                p.grad = mean.clone()


SINGLE_PROCESS = Distributed()


def join_process_group(device: torch.device, devices, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Distributed:
    """The :class:`Distributed` of this process, creating torch's process group when needed.

    Parameters
    ----------
    device
        The device this rank trains on (``cuda:LOCAL_RANK`` or the CPU): NCCL on CUDA, gloo otherwise.
    devices
        What the user asked for (``Trainer(devices=...)``): ``"auto"`` takes the launcher's
        world size; an int must equal it.
    timeout_s
        How long a collective waits for the other ranks before it fails.

    Raises
    ------
    ValueError
        ``devices`` disagrees with the launcher's world size, or DDP was asked for without a
        launcher (no ``WORLD_SIZE``/``RANK`` in the environment).
    """
    existing = in_process_group()
    if existing:
        world = (dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    else:
        world = environment_world()
    if world is None:
        raise ValueError(
            f"devices={devices!r} asks for several training processes, but this process was not started "
            "by a launcher (no RANK/WORLD_SIZE in the environment). Start the script with "
            "`torchrun --nproc-per-node N script.py`, run it inside `srun` with N tasks, or call "
            "model.train(devices=N), which starts the processes itself."
        )
    rank, world_size, local_rank = world
    if devices != "auto" and int(devices) != world_size:
        raise ValueError(
            f"devices={devices!r} but the launcher started {world_size} process(es) (WORLD_SIZE={world_size}); "
            f"pass devices='auto' or devices={world_size}."
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        # NCCL's object collectives (all_gather_object: the checkpoint's RNG states, the recipe's
        # resume decision) run on the current device: without this every rank of a node would use
        # cuda:0 ("Duplicate GPU detected").
        torch.cuda.set_device(device)
    if not existing and world_size > 1:
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
    return Distributed(rank, world_size, local_rank, backend, _device=device)
