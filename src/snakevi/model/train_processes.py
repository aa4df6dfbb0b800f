"""``model.train(devices=N)`` from a plain Python session: N processes train, the model gets the result.

Under a launcher (torchrun, ``srun``) every process runs the user's script and its own
``model.train``; nothing is needed here. Started alone, the model hands its data, constructor
parameters and weights to N fresh processes (:func:`snakevi.train.launch.spawn`), each of which
rebuilds the model and trains as one rank; rank 0's weights, history and split come back into
this model. The data is pickled once per process: for data larger than memory, run the
workflow (or torchrun) on a prepared folder instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def needs_spawn(devices) -> bool:
    """Whether ``train(devices=...)`` must start its own processes (N > 1 and no launcher)."""
    from snakevi.train.distributed import environment_world, in_process_group

    if in_process_group() or environment_world() is not None:
        return False  # a launcher started this process: the Trainer joins its group
    return isinstance(devices, int) and not isinstance(devices, bool) and devices > 1


def train_in_processes(model, devices: int, train_kwargs: dict[str, Any]):
    """Train ``model`` with ``devices`` processes; load rank 0's result into it and return it."""
    from snakevi.train.distributed_setup import rank_device
    from snakevi.train.launch import spawn

    rank_device(train_kwargs.get("accelerator", "auto"), devices)  # too many processes: refused here, not in N ranks
    payload = {
        "cls": type(model), "data": model.data, "init_params": model.init_params,
        "weights": {k: v.detach().cpu() for k, v in model.module.state_dict().items()},
        "is_trained": model.is_trained, "history": model.history_records,
        "train_kwargs": {**train_kwargs, "devices": devices},
    }
    result = spawn(_train_rank, devices, (payload,))
    model.module.load_state_dict(result["weights"])
    model.history_records = result["history"]
    model.train_indices, model.validation_indices, model.test_indices = (
        np.asarray(result[k]) for k in ("train_indices", "validation_indices", "test_indices"))
    model.stop_reason = result["stop_reason"]
    model.is_trained = True
    model.trainer = None  # it lived in the processes; its history is model.history
    model.module.eval()
    return model


def _train_rank(payload: dict) -> dict:
    """One rank: rebuild the model, train it under the launcher's process group, report rank 0's result."""
    model = payload["cls"](payload["data"], **payload["init_params"])
    model.module.load_state_dict(payload["weights"])
    if payload["is_trained"]:
        model.is_trained, model.history_records = True, payload["history"]
    model.train(**payload["train_kwargs"])
    return {
        "weights": {k: v.detach().cpu() for k, v in model.module.state_dict().items()},
        "history": model.history_records, "stop_reason": model.stop_reason,
        "train_indices": model.train_indices, "validation_indices": model.validation_indices,
        "test_indices": model.test_indices,
    }
