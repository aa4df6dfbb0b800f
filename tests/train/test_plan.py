import pytest
import torch
from train_toys import ToyModule, make_loaders, quiet_trainer, toy_plan

from snakevi.module.base import BaseModuleClass, LossOutput
from snakevi.train import TrainingPlan, optim


class NoKLModule(ToyModule):
    """Loss without kl_weight but with n_obs: the plan must adapt to the signature."""

    def loss(self, tensors, inference_outputs, generative_outputs, n_obs=None, scale=1.0):
        self.seen_kwargs.append({"n_obs": n_obs, "scale": scale})
        out = super().loss(tensors, inference_outputs, generative_outputs)
        out.extra_metrics = {"scale": torch.tensor(scale)}
        return out


def _batch(n=4):
    return {
        "X": torch.ones(n, 6),
        "batch": torch.zeros(n, 1, dtype=torch.long),
        "labels": torch.zeros(n, 1, dtype=torch.long),
    }


@pytest.mark.parametrize(("name", "cls"), [("Adam", optim.Adam), ("AdamW", optim.AdamW)])
def test_optimizer_uses_lr_eps_weight_decay_on_trainable_params_only(name, cls):
    plan = toy_plan(optimizer=name, lr=0.05, eps=0.1, weight_decay=0.2)
    plan.module.decoder.bias.requires_grad_(False)
    optimizer, scheduler = plan.configure_optimizers()
    assert type(optimizer) is cls and scheduler is None
    group = optimizer.param_groups[0]
    assert (group["lr"], group["eps"], group["weight_decay"]) == (0.05, 0.1, 0.2)
    params = {id(p) for p in group["params"]}
    assert id(plan.module.decoder.bias) not in params
    assert len(params) == 3


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_cpu_optimizer_is_torchs_fused_kernel_with_the_same_update(name):
    plan = toy_plan(optimizer=name, lr=0.05, eps=0.1, weight_decay=0.2)
    optimizer, _ = plan.configure_optimizers()
    assert optimizer.defaults["fused"] is True
    # One step from identical weights and gradients: the same update as torch's per-tensor loop.
    reference = type(optimizer)([p.detach().clone().requires_grad_() for p in plan.module.parameters()],
                                lr=0.05, eps=0.1, weight_decay=0.2, foreach=False)
    for p, q in zip(plan.module.parameters(), reference.param_groups[0]["params"]):
        p.grad = torch.linspace(-1, 1, p.numel()).reshape(p.shape)
        q.grad = p.grad.clone()
    optimizer.step()
    reference.step()
    for p, q in zip(plan.module.parameters(), reference.param_groups[0]["params"]):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_custom_optimizer_creator_receives_trainable_params():
    received = []

    def creator(params):
        received.extend(params)
        return torch.optim.SGD(received, lr=0.3)

    plan = toy_plan(optimizer="Custom", optimizer_creator=creator)
    optimizer, _ = plan.configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD) and len(received) == 4


def test_custom_without_creator_and_unknown_optimizer_are_errors():
    with pytest.raises(ValueError, match="optimizer_creator"):
        toy_plan(optimizer="Custom")
    with pytest.raises(ValueError, match="optimizer='SGD'"):
        toy_plan(optimizer="SGD")


def test_managed_loss_kwargs_cannot_be_passed():
    with pytest.raises(ValueError, match="'kl_weight' was passed"):
        toy_plan(kl_weight=0.5)


def test_reduce_lr_on_plateau_is_configured_as_in_scvi():
    plan = toy_plan(reduce_lr_on_plateau=True, lr_factor=0.5, lr_patience=7, lr_threshold=0.1, lr_min=1e-5)
    _, scheduler = plan.configure_optimizers()
    assert isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert (scheduler.mode, scheduler.factor, scheduler.patience) == ("min", 0.5, 7)
    assert (scheduler.threshold, scheduler.threshold_mode, scheduler.min_lrs) == (0.1, "abs", [1e-5])
    assert plan.needs_validation and plan.scheduler_phase == "validation"
    assert toy_plan(reduce_lr_on_plateau=True, lr_scheduler_metric="elbo_train").scheduler_phase == "train"
    assert toy_plan().scheduler_phase is None and not toy_plan().needs_validation


def test_scheduler_reduces_lr_after_a_scripted_plateau():
    plan = toy_plan(lr=1.0, reduce_lr_on_plateau=True, lr_factor=0.5, lr_patience=2)
    optimizer, scheduler = plan.configure_optimizers()
    lrs = []
    for value in [5.0, 4.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0, 3.0]:
        plan.lr_scheduler_step(scheduler, {"elbo_validation": value, "epoch": 0})
        lrs.append(optimizer.param_groups[0]["lr"])
    # 3 records without improvement (> patience=2) halve the LR; then the count restarts.
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25]


def test_scheduler_metric_missing_is_a_clear_error():
    plan = toy_plan(reduce_lr_on_plateau=True)
    _, scheduler = plan.configure_optimizers()
    with pytest.raises(KeyError, match="lr_scheduler_metric='elbo_validation' was not logged.*'elbo_train'"):
        plan.lr_scheduler_step(scheduler, {"epoch": 0, "elbo_train": 1.0})


def test_kl_weight_is_passed_and_logged_as_the_last_steps_value():
    plan = toy_plan(n_epochs_kl_warmup=None, n_steps_kl_warmup=10)
    plan.training_step(_batch(), 0, epoch=0, global_step=2)
    plan.training_step(_batch(), 1, epoch=0, global_step=3)
    assert [kw["kl_weight"] for kw in plan.module.seen_kwargs] == [0.2, 0.3]
    assert plan.train_epoch_metrics()["kl_weight"] == pytest.approx(0.3)
    plan.module.eval()
    with torch.no_grad():
        plan.validation_step(_batch(), 0, epoch=0, global_step=4)
    assert plan.module.seen_kwargs[-1]["kl_weight"] == pytest.approx(0.3)  # validation reuses it
    assert "kl_weight" not in plan.validation_epoch_metrics()


def test_n_obs_and_loss_kwargs_reach_a_loss_without_kl_weight():
    torch.manual_seed(0)
    plan = TrainingPlan(NoKLModule(), scale=2.0)
    plan.training_step(_batch(), 0, epoch=0, global_step=0)
    plan.n_obs_training = 123
    plan.training_step(_batch(), 1, epoch=0, global_step=1)
    seen = [kw for kw in plan.module.seen_kwargs if "scale" in kw]
    assert seen == [{"n_obs": None, "scale": 2.0}, {"n_obs": 123, "scale": 2.0}]
    metrics = plan.train_epoch_metrics()
    assert "kl_weight" not in metrics  # the loss does not take it
    assert metrics["scale_train"] == pytest.approx(2.0)  # extra metrics as {name}_{mode}


def test_epoch_metric_names_from_a_fit():
    train, val = make_loaders()
    plan = toy_plan()
    plan.n_obs_training, plan.n_obs_validation = 24, 8
    trainer = quiet_trainer(max_epochs=1, check_val_every_n_epoch=1)
    trainer.fit(plan, train, val)
    assert set(trainer.history[0]) == {
        "epoch", "kl_weight",
        "train_loss", "elbo_train", "reconstruction_loss_train", "kl_local_train", "kl_global_train",
        "validation_loss", "elbo_validation", "reconstruction_loss_validation", "kl_local_validation",
        "kl_global_validation",
    }  # fmt: skip
    row = trainer.history[0]
    assert row["elbo_train"] == pytest.approx(row["reconstruction_loss_train"] + row["kl_local_train"])


def test_forward_must_end_with_a_loss_output():
    class Bad(BaseModuleClass):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, tensors, **kwargs):
            return {}, {}, self.w

        def loss(self, tensors, inference_outputs, generative_outputs):
            return LossOutput(loss=self.w, reconstruction_loss=self.w[None])

    with pytest.raises(TypeError, match="expected a LossOutput"):
        TrainingPlan(Bad()).training_step(_batch(), 0, epoch=0, global_step=0)
