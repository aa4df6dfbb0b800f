"""The launcher's process group held for a whole training run, not only for one fit.

Under torchrun or srun every rank runs the same training recipe, and before any fit the ranks
must agree on things only one of them may decide: rank 0 locks the checkpoint folder, decides
whether to resume (moving another run's folder aside) and writes the outputs; the others take its
decisions. The recipe therefore joins the group first; the trainers of its phases then find it
(:func:`snakevi.train.distributed.join_process_group` reuses it) and it is destroyed when the run
ends, so gloo's threads are gone before the interpreter exits.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from snakevi.train.distributed import (
    SINGLE_PROCESS,
    Distributed,
    dist,
    environment_world,
    in_process_group,
    join_process_group,
)
from snakevi.train.distributed_setup import rank_device


@contextlib.contextmanager
def launched_process_group(accelerator: str = "auto") -> Iterator[Distributed]:
    """This rank's :class:`Distributed` for the block, or the single process when no launcher started several.

    Parameters
    ----------
    accelerator
        As ``train(accelerator=...)``: the rank's device decides the backend (NCCL on CUDA, gloo on CPU).
    """
    world = environment_world()
    if world is None or world[1] < 2:
        yield SINGLE_PROCESS
        return
    created = not in_process_group()
    group = join_process_group(rank_device(accelerator, "auto"), "auto")
    try:
        yield group
    finally:
        if created and in_process_group():
            dist.destroy_process_group()


def from_rank_zero(group: Distributed, value):
    """Rank 0's ``value`` on every rank (a small picklable object: a path, None)."""
    return group.all_gather_object(value)[0] if group.enabled else value
