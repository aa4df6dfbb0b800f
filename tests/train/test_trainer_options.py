"""Lightning's Trainer options: gradient accumulation, max_steps, batch limits, precision."""

import shutil

import numpy as np
import pytest
import torch
from train_toys import ToyLoader, make_loaders, quiet_trainer, toy_counts, toy_plan

from snakevi.train import Callback, ModelCheckpoint


class _CountSteps(Callback):
    """Records (epoch, global_step, batch_idx) after every optimizer step."""

    def __init__(self):
        self.steps = []

    def on_train_batch_end(self, trainer, plan, loss, batch_idx):
        self.steps.append((trainer.current_epoch, trainer.global_step, batch_idx))


def _weights(plan):
    return {k: v.detach().clone() for k, v in plan.module.state_dict().items()}


# -- accumulate_grad_batches --------------------------------------------------------------------
def test_accumulating_two_minibatches_is_one_step_on_their_union(monkeypatch):
    """k minibatches of b cells, accumulated, take the step one minibatch of k*b cells takes
    (the toy's loss is a per-cell mean and has no dropout or batch norm)."""
    # The toy's z = mean + noise: without the noise, which torch draws differently for other shapes.
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)
    x = toy_counts(32)
    runs = {}
    for name, batch_size, accumulate in (("accumulated", 4, 2), ("union", 8, 1)):
        plan = toy_plan(seed=0)
        trainer = quiet_trainer(max_epochs=2, accumulate_grad_batches=accumulate, seed=0, nan_guard=False)
        trainer.fit(plan, ToyLoader(x, batch_size))
        runs[name] = (_weights(plan), trainer.global_step)
    assert runs["accumulated"][1] == runs["union"][1] == 8  # 4 steps per epoch either way
    for key, value in runs["union"][0].items():
        torch.testing.assert_close(runs["accumulated"][0][key], value, rtol=1e-5, atol=1e-6)


def test_the_epochs_last_smaller_group_still_steps():
    counter = _CountSteps()
    trainer = quiet_trainer(max_epochs=2, accumulate_grad_batches=2, callbacks=[counter])
    trainer.fit(toy_plan(), ToyLoader(toy_counts(24), 8))  # 3 minibatches: steps after batch 1 and batch 2
    assert [(e, b) for e, _, b in counter.steps] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert trainer.global_step == 4


def test_accumulation_is_refused_for_a_plan_with_its_own_optimizer():
    plan = toy_plan()
    plan.after_optimizer_step = lambda: None  # as the adversarial plan has
    with pytest.raises(ValueError, match="accumulate_grad_batches=2: TrainingPlan steps an optimizer of its own"):
        quiet_trainer(max_epochs=1, accumulate_grad_batches=2).fit(plan, ToyLoader(toy_counts(16), 8))


@pytest.mark.parametrize("kwargs, match", [
    ({"accumulate_grad_batches": 0}, "accumulate_grad_batches=0: expected an int >= 1"),
    ({"max_steps": 0}, "max_steps=0: expected None"),
    ({"log_every_n_steps": -1}, "log_every_n_steps=-1"),
    ({"limit_train_batches": 0}, "limit_train_batches=0 would train on nothing"),
    ({"limit_train_batches": 1.5}, r"limit_train_batches=1.5: a float is a fraction"),
    ({"limit_val_batches": "all"}, "limit_val_batches='all'"),
    ({"precision": "64"}, r"precision='64': expected one of \['32', 'bf16-mixed', '16-mixed'\]"),
    ({"precision": "16-mixed"}, "precision='16-mixed' needs a CUDA GPU; this run trains on 'cpu'"),
    ({"logger": "wandb-like"}, r"logger type 'wandb-like' is unknown; known trackers: \['mlflow', 'tensorboard', 'wandb'\]"),
])
def test_bad_options_are_refused_when_the_trainer_is_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        quiet_trainer(max_epochs=1, **kwargs)


# -- max_steps ----------------------------------------------------------------------------------
def test_max_steps_stops_in_the_middle_of_an_epoch():
    train, val = make_loaders(n_train=24, batch_size=8)  # 3 steps per epoch
    trainer = quiet_trainer(max_epochs=10, max_steps=7, check_val_every_n_epoch=1)
    trainer.fit(toy_plan(), train, val)
    assert trainer.global_step == 7
    assert len(trainer.history) == 3  # 3 + 3 + 1 steps; the third epoch's row covers its one minibatch
    assert "elbo_validation" in trainer.history[-1]
    assert trainer.stop_reason == "max_steps=7 reached"
    assert quiet_trainer(max_epochs=2, max_steps=-1).max_steps is None  # Lightning's "no limit"


def _max_steps_run(tmp_path, name, max_steps, max_epochs=10, ckpt_path=None, copy_at_epoch=None):
    train, val = make_loaders(n_train=24, batch_size=8)
    folder = tmp_path / name
    callbacks = [ModelCheckpoint(folder, save_best=False)]
    if copy_at_epoch is not None:
        class _Copy(Callback):
            runs_last = True

            def on_train_epoch_end(self, trainer, plan):
                if trainer.current_epoch == copy_at_epoch:
                    shutil.copy(folder / "last.ckpt", tmp_path / "kept.ckpt")
                    shutil.copy(folder / "last.ckpt.sha256.json", tmp_path / "kept.ckpt.sha256.json")
        callbacks.append(_Copy())
    plan = toy_plan(seed=0, dropout=0.2)
    trainer = quiet_trainer(max_epochs=max_epochs, max_steps=max_steps, seed=0, callbacks=callbacks)
    trainer.fit(plan, train, val, ckpt_path=ckpt_path)
    return trainer, _weights(plan)


def test_a_max_steps_run_resumed_from_an_earlier_checkpoint_ends_where_an_uninterrupted_one_does(tmp_path):
    whole, whole_weights = _max_steps_run(tmp_path, "whole", max_steps=8, copy_at_epoch=0)
    resumed, resumed_weights = _max_steps_run(tmp_path, "resumed", max_steps=8, ckpt_path=tmp_path / "kept.ckpt")
    assert resumed.global_step == whole.global_step == 8
    assert resumed.history == whole.history
    for key, value in whole_weights.items():
        assert torch.equal(resumed_weights[key], value), key


def test_a_run_stopped_by_max_steps_stays_stopped_and_goes_on_with_a_higher_one(tmp_path):
    first, _ = _max_steps_run(tmp_path, "run", max_steps=4)
    again, _ = _max_steps_run(tmp_path, "run", max_steps=4, ckpt_path=tmp_path / "run" / "last.ckpt")
    assert again.global_step == 4 and len(again.history) == len(first.history) == 2
    more, _ = _max_steps_run(tmp_path, "run", max_steps=9, ckpt_path=tmp_path / "run" / "last.ckpt")
    assert more.global_step == 9  # epochs 2 and 3 (from the next epoch on): 4 + 3 + 2
    assert [row["epoch"] for row in more.history] == [0, 1, 2, 3]


# -- limit_train_batches / limit_val_batches ----------------------------------------------------
class _CountValidation(Callback):
    def __init__(self):
        self.calls = 0

    def on_fit_start(self, trainer, plan):
        original = plan.validation_step

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        plan.validation_step = counted


@pytest.mark.parametrize("limit, steps_per_epoch", [(2, 2), (0.5, 2), (0.25, 1), (1.0, 5), (None, 5)])
def test_limit_train_batches_takes_the_first_minibatches(limit, steps_per_epoch):
    counter = _CountSteps()
    trainer = quiet_trainer(max_epochs=2, limit_train_batches=limit, callbacks=[counter])
    trainer.fit(toy_plan(), ToyLoader(toy_counts(40), 8))  # 5 minibatches
    assert trainer.global_step == 2 * steps_per_epoch
    assert max(b for _, _, b in counter.steps) == steps_per_epoch - 1


def test_a_fraction_that_rounds_to_no_minibatch_is_a_clear_error():
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=0.1)
    with pytest.raises(ValueError, match=r"limit_train_batches=0.1 of 5 minibatches is less than one; use at least 0.2"):
        trainer.fit(toy_plan(), ToyLoader(toy_counts(40), 8))


def test_limit_val_batches_limits_and_zero_turns_validation_off():
    train, _ = make_loaders()
    val = ToyLoader(toy_counts(40, seed=1), 8)  # 5 minibatches
    counted = _CountValidation()
    quiet_trainer(max_epochs=2, check_val_every_n_epoch=1, limit_val_batches=3, callbacks=[counted]).fit(
        toy_plan(), train, val)
    assert counted.calls == 6
    off = quiet_trainer(max_epochs=2, check_val_every_n_epoch=1, limit_val_batches=0)
    off.fit(toy_plan(), train, val)
    assert not any("elbo_validation" in row for row in off.history)
    from snakevi.train import EarlyStopping

    with pytest.raises(ValueError, match="monitor a validation metric but fit.. got val_loader=None"):
        quiet_trainer(max_epochs=2, limit_val_batches=0, callbacks=[EarlyStopping()]).fit(toy_plan(), train, val)


# -- precision ----------------------------------------------------------------------------------
def test_bf16_mixed_runs_the_forward_in_bfloat16_and_keeps_float32_weights():
    seen = []

    class _Dtype(Callback):
        def on_fit_start(self, trainer, plan):
            plan.module.encoder.register_forward_hook(lambda m, i, out: seen.append(out.dtype))

    train, val = make_loaders()
    plan = toy_plan()
    trainer = quiet_trainer(max_epochs=2, precision="bf16-mixed", callbacks=[_Dtype()])
    trainer.fit(plan, train, val)
    assert set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in plan.module.parameters())
    assert trainer.precision == "bf16-mixed" and trainer.scaler is None
    assert np.isfinite(trainer.history[-1]["elbo_train"])
    assert quiet_trainer(max_epochs=1, precision="bf16").precision == "bf16-mixed"
    assert quiet_trainer(max_epochs=1, precision=32).precision == "32"
