"""Which rank of which launch this process is, read from the environment (no torch: cheap to import).

The train step asks before it imports torch whether a launcher started it, or whether it must
start the ranks itself (:mod:`snakevi.steps.train_launch`).
"""

from __future__ import annotations

import os


def environment_world() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` set by a launcher, or None when this process runs alone.

    Reads torchrun's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); inside a SLURM step
    started by ``srun`` with several tasks, ``SLURM_PROCID``, ``SLURM_NTASKS`` and ``SLURM_LOCALID``.
    """
    env = os.environ
    if "WORLD_SIZE" in env and "RANK" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"]))
    if "SLURM_STEP_ID" in env and int(env.get("SLURM_NTASKS", "1")) > 1 and "MASTER_ADDR" in env:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", "0"))
    return None
