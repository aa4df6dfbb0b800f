"""Restoring a ``Trainer`` from a checkpoint: the checks that it fits, then every piece of state."""

from __future__ import annotations

from snakevi.train.checkpoint_io import check_module_state, load_checkpoint, verify_checkpoint
from snakevi.train.reproducibility import set_rng_states


def restore_fit_state(trainer, path, plan) -> None:
    """Put a checkpoint's state into ``trainer`` (a :class:`~snakevi.train.Trainer` in ``fit``) and ``plan``.

    Checks first that the checkpoint belongs to this model and run (shapes, digest, scheduler,
    optimizer, plan state, number of processes), naming the file and what differs.
    """
    ckpt = load_checkpoint(path, verify=False)
    check_module_state(path, ckpt["module"], plan.module.state_dict())
    verify_checkpoint(path)  # after the shapes: a checkpoint of another run is named as such
    plan.module.load_state_dict(ckpt["module"])
    if (ckpt["scheduler"] is None) != (trainer.scheduler is None):
        raise ValueError(
            f"checkpoint {path} was written for another model/run: it "
            f"{'has no' if ckpt['scheduler'] is None else 'has a'} LR scheduler state but this plan "
            f"{'has one' if trainer.scheduler is not None else 'has none'}; resume with the same reduce_lr_on_plateau."
        )
    try:
        trainer.optimizer.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError) as exc:
        raise ValueError(
            f"checkpoint {path} was written for another model/run: optimizer state does not fit ({exc})."
        ) from exc
    if trainer.scheduler is not None:
        trainer.scheduler.load_state_dict(ckpt["scheduler"])
    if getattr(trainer, "scaler", None) is not None and ckpt.get("grad_scaler"):
        trainer.scaler.load_state_dict(ckpt["grad_scaler"])
    plan_state = ckpt.get("plan") or {}
    if hasattr(plan, "load_state_dict"):
        try:
            plan.load_state_dict(plan_state)
        except ValueError as exc:
            raise ValueError(f"checkpoint {path}: {exc}") from exc
    elif plan_state:
        raise ValueError(
            f"checkpoint {path} was written for another training plan: it holds plan state "
            f"({sorted(plan_state)}) that {type(plan).__name__} cannot restore; resume with the same plan."
        )
    saved_callbacks = ckpt["callbacks"]
    for key, callback in trainer._callback_keys():
        if key in saved_callbacks and hasattr(callback, "load_state_dict"):
            callback.load_state_dict(saved_callbacks[key])
    trainer.current_epoch = trainer._epochs_completed = int(ckpt["epoch"])
    trainer.global_step = int(ckpt["global_step"])
    trainer.history = [dict(row) for row in ckpt["history"]]
    trainer.restored_epochs = len(trainer.history)
    trainer.logged_metrics = trainer.history[-1] if trainer.history else {}
    trainer.should_stop = bool(ckpt["should_stop"])
    trainer.stop_reason = ckpt["stop_reason"]
    set_rng_states(_own_rng_states(trainer, path, ckpt), trainer.device)


def _own_rng_states(trainer, path, ckpt: dict) -> dict:
    """The RNG states this rank saved (the only ones, when the run had one process)."""
    ranks = ckpt.get("rng_ranks") or []
    saved_world = max(len(ranks), 1)
    if saved_world != trainer.dist.world_size:
        raise ValueError(
            f"checkpoint {path} was written by a run of {saved_world} process(es), this one has "
            f"{trainer.dist.world_size}: an exact resume needs the same number; rerun with devices={saved_world}."
        )
    return ranks[trainer.dist.rank] if ranks else ckpt["rng"]
