"""What a ``Trainer`` checks and sets up before a multi-process (DDP) fit.

Kept apart from the loop: which arguments mean DDP, which device a rank trains on, which
plans and callbacks DDP supports today, and sharding the loaders.
"""

from __future__ import annotations

import os

import torch

from snakevi.train.device import require_cuda
from snakevi.train.distributed import Distributed, environment_world

_STRATEGIES = ("auto", "ddp")


def wants_ddp(strategy: str, devices) -> bool:
    """Whether ``Trainer(strategy=..., devices=...)`` trains with several processes."""
    if strategy not in _STRATEGIES:
        raise ValueError(f"strategy={strategy!r}: expected one of {list(_STRATEGIES)}.")
    if strategy == "ddp":
        return True
    if isinstance(devices, int) and not isinstance(devices, bool):
        return devices > 1
    if devices == "auto":
        world = environment_world()
        return world is not None and world[1] > 1
    return False


def _process_count(devices) -> int | None:
    if isinstance(devices, int) and not isinstance(devices, bool):
        if devices < 1:
            raise ValueError(f"devices={devices!r}: expected an int >= 1 (processes, one device each).")
        return devices
    if devices == "auto":
        world = environment_world()
        return None if world is None else world[1]
    raise ValueError(
        f"devices={devices!r}: with several processes give their number (devices=N) or 'auto' "
        "(as many as the launcher started); a list of GPU indices is set with CUDA_VISIBLE_DEVICES."
    )


def rank_device(accelerator: str, devices) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` on GPUs, else the CPU.

    Raises
    ------
    ValueError
        More processes than GPUs on this node, or more than CPU cores; an accelerator DDP
        does not support (MPS).
    """
    acc = str(accelerator).lower()
    acc = "cuda" if acc == "gpu" else acc
    if acc == "auto":
        acc = "cuda" if torch.cuda.is_available() else "cpu"
    n = _process_count(devices)
    world = environment_world()
    local_rank = 0 if world is None else world[2]
    if acc == "cuda":
        require_cuda()
        visible = torch.cuda.device_count()
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", n or 1))
        if per_node > visible or local_rank >= visible:
            raise ValueError(
                f"devices={devices!r}: {per_node} process(es) on this node need one GPU each, but only "
                f"{visible} are visible. Use devices={visible} or fewer (or more nodes)."
            )
        return torch.device("cuda", local_rank)
    if acc == "cpu":
        cores = os.cpu_count() or 1
        if n is not None and world is None and n > cores:
            raise ValueError(
                f"devices={n}: more training processes than CPU cores ({cores}) on this machine. "
                f"Use devices={cores} or fewer."
            )
        return torch.device("cpu")
    raise ValueError(f"accelerator={accelerator!r}: DDP runs on 'cpu' or 'cuda' (not {acc!r}).")


def check_ddp_plan(plan, callbacks) -> None:
    """Refuse, before any process group exists, what DDP does not support yet (naming it and the fix)."""
    if not hasattr(plan, "set_metrics_reduction"):
        raise ValueError(
            f"{type(plan).__name__} cannot sum its metrics over processes (no set_metrics_reduction); "
            "train it with one process (devices=1)."
        )
    if auxiliary_modules(plan) and not hasattr(plan, "set_gradient_averaging"):
        raise ValueError(
            f"{type(plan).__name__} trains auxiliary_modules but cannot average their gradients over "
            "processes (no set_gradient_averaging); train it with one process (devices=1)."
        )
    unsupported = getattr(plan, "ddp_unsupported", None)
    if unsupported:
        raise ValueError(f"{type(plan).__name__} does not train with several processes yet: {unsupported}")
    for callback in callbacks:
        reason = getattr(callback, "ddp_unsupported", None)
        if reason:
            raise ValueError(f"callback {type(callback).__name__} does not work with several processes: {reason}")


def auxiliary_modules(plan) -> tuple:
    """Modules a plan trains besides ``plan.module`` with an optimizer of its own (e.g. the adversary)."""
    return tuple(getattr(plan, "auxiliary_modules", ()))


def attach_plan(dist: Distributed, plan) -> None:
    """Make ``plan`` one rank's part of the run (after ``configure_optimizers``, which places its modules).

    Its metrics are summed over the ranks, its auxiliary modules start from rank 0's weights, and
    it averages their gradients over the ranks as the trainer does the module's.
    """
    plan.set_metrics_reduction(dist.all_reduce_sum)
    for module in auxiliary_modules(plan):
        dist.broadcast_module(module)
    if hasattr(plan, "set_gradient_averaging"):
        plan.set_gradient_averaging(dist.average_gradients)


def detach_plan(plan) -> None:
    """Undo :func:`attach_plan`: the plan trains alone again."""
    plan.set_metrics_reduction(None)
    if hasattr(plan, "set_gradient_averaging"):
        plan.set_gradient_averaging(None)


def shard_loaders(dist: Distributed, train_loader, val_loader) -> None:
    """Give each loader this rank's share: training padded to equal shares, validation each cell once."""
    for name, loader, pad in (("train_loader", train_loader, True), ("val_loader", val_loader, False)):
        if loader is None:
            continue
        shard = getattr(loader, "shard", None)
        if shard is None:
            raise ValueError(
                f"{name} ({type(loader).__name__}) cannot give each of {dist.world_size} processes its share "
                "of the cells: use snakevi's AnnDataLoader or DeviceAnnDataLoader, or a loader with "
                "shard(rank, world_size, pad=...)."
            )
        shard(dist.rank, dist.world_size, pad=pad)
