"""``NaNGuard``: stop with a clear error on a non-finite training loss or gradient norm."""

from __future__ import annotations

import torch

from snakevi.train.callbacks.base import Callback


class NonFiniteLossError(FloatingPointError):
    """The training loss or the gradient norm became NaN or infinite."""


def _total_grad_norm(optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """2-norm of all gradients of the optimizer's parameters, as a device tensor (no host sync)."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach()) for g in grads]))


class NaNGuard(Callback):
    """Raise :class:`NonFiniteLossError` naming the epoch, step and metric that went non-finite.

    On the CPU each step is checked at once (reading a CPU scalar is free). On an accelerator
    the step's loss and gradient norm stay on the device and are read back once, at the end
    of the epoch, so the loop never waits on the device; the error then names the first bad step.

    Parameters
    ----------
    check_every_step
        Force (True) or forbid (False) the per-step check; None: per step on the CPU only.
    """

    def __init__(self, check_every_step: bool | None = None) -> None:
        self.check_every_step = check_every_step
        self._pending: list[tuple[int, int, torch.Tensor]] = []

    def on_train_epoch_start(self, trainer, plan) -> None:
        self._pending = []

    def on_train_batch_end(self, trainer, plan, loss, batch_idx: int) -> None:
        norm = trainer.grad_norm if trainer.grad_norm is not None else _total_grad_norm(trainer.optimizer)
        values = torch.stack([loss.detach().float().reshape(()), norm.to(loss.device).float().reshape(())])
        step = trainer.global_step - 1  # the step that just ran
        per_step = self.check_every_step if self.check_every_step is not None else trainer.device.type == "cpu"
        if per_step:
            self._check(trainer.current_epoch, [batch_idx], [step], values[None])
        else:
            self._pending.append((batch_idx, step, values))

    def on_train_epoch_end(self, trainer, plan) -> None:
        if not self._pending:
            return
        batch_idx, steps, values = zip(*self._pending)
        self._pending = []
        self._check(trainer.current_epoch, list(batch_idx), list(steps), torch.stack(values))

    @staticmethod
    def _check(epoch: int, batch_idx: list[int], steps: list[int], values: torch.Tensor) -> None:
        values = values.cpu()  # the one host sync
        bad = ~torch.isfinite(values)
        if not bool(bad.any()):
            return
        row, col = (int(i) for i in bad.nonzero()[0])
        metric = ("training loss (train_loss)", "gradient norm")[col]
        raise NonFiniteLossError(
            f"Non-finite {metric} = {values[row, col].item()} at epoch {epoch}, batch {batch_idx[row]} "
            f"(global step {steps[row]}). Training cannot recover from this. Try a lower learning rate "
            "(e.g. lr=1e-4) or gradient_clip_val, and check the data: X must hold raw counts, i.e. "
            "non-negative integers (not normalized or log-transformed values), without extreme outliers."
        )

    def state_dict(self) -> dict:
        return {}
