import pytest
import torch
from train_toys import make_loaders, quiet_trainer, toy_plan

from snakevi.train import Callback, NaNGuard, NonFiniteLossError


def _fit_with(callbacks=(), nan_guard=True, **plan_kwargs):
    train, _ = make_loaders(n_train=24, batch_size=8)  # 3 steps per epoch
    trainer = quiet_trainer(max_epochs=3, callbacks=list(callbacks), nan_guard=nan_guard)
    trainer.fit(toy_plan(**plan_kwargs), train)
    return trainer


@pytest.mark.parametrize("check_every_step", [None, True, False])
def test_nan_loss_raises_naming_epoch_step_and_metric(check_every_step):
    # The 5th training call (epoch 1, batch 1, global step 4) returns a NaN loss.
    callbacks = [] if check_every_step is None else [NaNGuard(check_every_step)]
    with pytest.raises(NonFiniteLossError) as info:
        _fit_with(callbacks, nan_guard=check_every_step is None, nan_at_call=4)
    message = str(info.value)
    assert "Non-finite training loss (train_loss) = nan at epoch 1, batch 1 (global step 4)" in message
    assert "lower learning rate" in message and "raw counts" in message
    assert isinstance(info.value, FloatingPointError)


def test_cpu_check_raises_before_the_epoch_ends_and_deferred_check_at_its_end():
    steps = []

    class Count(Callback):
        def on_train_batch_end(self, trainer, plan, loss, batch_idx):
            steps.append(trainer.global_step)

    with pytest.raises(NonFiniteLossError):
        _fit_with([Count()], nan_at_call=4)
    assert steps == [1, 2, 3, 4]  # NaNGuard runs first and stopped the loop at step 5
    steps.clear()
    with pytest.raises(NonFiniteLossError):
        _fit_with([NaNGuard(check_every_step=False), Count()], nan_guard=False, nan_at_call=4)
    assert steps == [1, 2, 3, 4, 5, 6]  # read back once, at the end of epoch 1


def test_non_finite_gradient_is_reported_as_such():
    class PoisonGrad(Callback):
        def on_fit_start(self, trainer, plan):
            def hook(grad):
                return grad * float("inf") if trainer.global_step == 2 else grad

            plan.module.decoder.bias.register_hook(hook)

    with pytest.raises(
        NonFiniteLossError, match=r"Non-finite gradient norm = (inf|nan) at epoch 0, batch 2 \(global step 2\)"
    ):
        _fit_with([PoisonGrad()])


def test_guard_can_be_disabled():
    trainer = _fit_with(nan_guard=False, nan_at_call=4)
    assert trainer.history[1]["train_loss"] != trainer.history[1]["train_loss"]  # NaN went through
    assert not any(isinstance(c, NaNGuard) for c in trainer.callbacks)


def test_finite_runs_pass_untouched():
    trainer = _fit_with()
    assert len(trainer.history) == 3 and isinstance(trainer.callbacks[0], NaNGuard)


def test_gradient_clipping_bounds_the_gradient_norm():
    def norms(clip):
        seen = []

        class GradNorm(Callback):
            def on_train_batch_end(self, trainer, plan, loss, batch_idx):
                grads = [p.grad for p in plan.module.parameters() if p.grad is not None]
                seen.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

        train, _ = make_loaders()
        quiet_trainer(max_epochs=2, gradient_clip_val=clip, callbacks=[GradNorm()]).fit(toy_plan(), train)
        return seen

    assert max(norms(None)) > 1.0  # without clipping the toy's gradients are large
    assert max(norms(0.5)) <= 0.5 + 1e-5
