"""Start the processes of a multi-process run from a plain Python session (no torchrun, no srun).

``spawn(fn, n)`` runs ``fn`` in ``n`` fresh interpreters, each one rank of a process group on
this machine (the environment torchrun would give it: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR=127.0.0.1``, a free ``MASTER_PORT``), and returns rank 0's result. When one rank
raises, the others are stopped and the error is raised here, so no rank is left waiting.
"""

from __future__ import annotations

import os
import pickle
import socket
import tempfile
from typing import Any, Callable


class RankFailedError(RuntimeError):
    """One process of a multi-process run raised or died; the others were stopped."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for the rendezvous of the ranks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank_main(rank: int, fn: Callable, args: tuple, world_size: int, port: int, threads: int,
               result_path: str) -> None:
    os.environ.update({
        "RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
        "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
    })
    import torch

    torch.set_num_threads(threads)  # the ranks share this machine's cores
    import torch.distributed as dist

    result = fn(*args)  # a rank that raises ends here; spawn then stops the others
    if dist.is_initialized():
        # gloo's threads must end before the interpreter does (else: "terminate called without
        # an active exception", SIGABRT).
        dist.destroy_process_group()
    if rank == 0:
        # A file, not a queue: the parent reads only after every rank ended, and a pipe would
        # block a result larger than its buffer (the weights) forever. Plain pickle: a tensor
        # sent through torch's queues would point into this process's shared memory.
        with open(result_path, "wb") as fh:
            pickle.dump(result, fh)


def spawn(fn: Callable, nprocs: int, args: tuple = (), *, threads: int | None = None) -> Any:
    """Run ``fn(*args)`` as each of ``nprocs`` ranks; return what rank 0's call returned.

    Parameters
    ----------
    fn
        A function importable by name (defined at a module's top level, not in ``__main__`` of
        an interactive session, nor a lambda): each rank is a new interpreter that imports it.
    nprocs
        How many processes.
    args
        Passed to ``fn`` (pickled once per rank).
    threads
        Torch threads per rank; default: this machine's cores divided by ``nprocs``, at least 1.

    Raises
    ------
    RankFailedError
        A rank raised (its error is in the message, its traceback in ``__cause__``) or died;
        the other ranks were terminated.
    """
    if not isinstance(nprocs, int) or nprocs < 1:
        raise ValueError(f"nprocs={nprocs!r}: expected an int >= 1.")
    threads = threads or max(1, (os.cpu_count() or 1) // nprocs)
    with tempfile.TemporaryDirectory(prefix="snakevi-ranks-") as tmp:
        result_path = os.path.join(tmp, "rank0.pickle")
        _start(fn, args, nprocs, threads, result_path)
        with open(result_path, "rb") as fh:
            return pickle.load(fh)  # noqa: S301 - written by this function's own rank 0


def _start(fn: Callable, args: tuple, nprocs: int, threads: int, result_path: str) -> None:
    import torch.multiprocessing as mp

    try:
        mp.start_processes(_rank_main, args=(fn, args, nprocs, free_port(), threads, result_path), nprocs=nprocs,
                           join=True, start_method="spawn")
    except mp.ProcessRaisedException as err:
        # The rank's traceback is in err.msg; its last line is the error a person needs.
        last = [line for line in str(err.msg).strip().splitlines() if line.strip()][-1]
        raise RankFailedError(f"training process {err.error_index} of {nprocs} failed: {last}") from err
    except mp.ProcessExitedException as err:
        raise RankFailedError(
            f"training process {err.error_index} of {nprocs} died ({err}); the other processes were stopped."
        ) from err
