"""AdversarialTrainingPlan: classifier, fool loss, kappa, its own optimizer, warnings, exact resume."""

from __future__ import annotations

import math

import pytest
import torch
from semi_toys import make_vae, plain_loaders, sim_data, states_equal
from train_toys import quiet_trainer

from snakevi.module import Classifier
from snakevi.train import AdversarialTrainingPlan, ModelCheckpoint, TrainingPlan


@pytest.fixture(scope="module")
def data():
    return sim_data(n_batches=3, hide_every=0)


def test_classifier_and_its_optimizer_are_scvi_tools_ones(data):
    plan = AdversarialTrainingPlan(make_vae(data), adversarial_classifier=True, weight_decay=1e-3)
    clf = plan.adversarial_classifier
    assert isinstance(clf, Classifier) and clf.logits
    assert len(clf.classifier[0].fc_layers) == 2 and clf.classifier[1].in_features == 32
    assert clf.classifier[0].fc_layers[0][0].in_features == 4 and clf.classifier[1].out_features == 3
    optimizer, scheduler = plan.configure_optimizers()
    group = plan.classifier_optimizer.param_groups[0]
    assert isinstance(plan.classifier_optimizer, torch.optim.Adam) and scheduler is None
    assert (group["lr"], group["eps"], group["weight_decay"]) == (1e-3, 0.01, 1e-3)
    clf_params = {id(p) for p in clf.parameters()}
    assert not clf_params & {id(p) for g in optimizer.param_groups for p in g["params"]}


def test_one_batch_turns_the_adversary_off_with_a_warning():
    one = sim_data(n_batches=1, hide_every=0)
    with pytest.warns(UserWarning, match="Disabling the adversarial classifier"):
        plan = AdversarialTrainingPlan(make_vae(one), adversarial_classifier=True)
    assert not plan.has_adversary and plan.state_dict() == {}
    # Without an adversary it trains exactly like the plain plan.
    runs = []
    for cls, kwargs in ((TrainingPlan, {}), (AdversarialTrainingPlan, {"adversarial_classifier": False})):
        train, _ = plain_loaders(one)
        trainer = quiet_trainer(max_epochs=2, seed=1)
        trainer.fit(cls(make_vae(one), **kwargs), train)
        runs.append(trainer.history)
    assert runs[0] == runs[1]


def test_fool_loss_targets_the_other_batches_uniformly(data):
    plan = AdversarialTrainingPlan(make_vae(data), adversarial_classifier=True)
    plan.adversarial_classifier.eval()
    z = torch.randn(5, 4)
    batch = torch.tensor([[0], [1], [2], [1], [0]])
    log_p = torch.log_softmax(plan.adversarial_classifier(z), dim=1)
    true_ce = -log_p[torch.arange(5), batch[:, 0]].mean()
    others = -(log_p.sum(1) - log_p[torch.arange(5), batch[:, 0]]) / 2
    assert plan.loss_adversarial_classifier(z, batch, True).item() == pytest.approx(true_ce.item(), rel=1e-6)
    assert plan.loss_adversarial_classifier(z, batch, False).item() == pytest.approx(others.mean().item(), rel=1e-6)


def test_kappa_follows_the_kl_warmup_or_is_fixed(data):
    auto = AdversarialTrainingPlan(make_vae(data), adversarial_classifier=True, n_epochs_kl_warmup=4)
    assert [auto.kappa(auto.kl_weight(e, 0)) for e in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    fixed = AdversarialTrainingPlan(make_vae(data), adversarial_classifier=True, scale_adversarial_loss=0.3)
    assert fixed.kappa(0.9) == 0.3
    with pytest.raises(ValueError, match="scale_adversarial_loss"):
        AdversarialTrainingPlan(make_vae(data), scale_adversarial_loss="big")


def test_training_step_adds_kappa_times_the_fool_loss(data):
    plan = AdversarialTrainingPlan(make_vae(data), adversarial_classifier=True, n_epochs_kl_warmup=4)
    plan.configure_optimizers()
    train, _ = plain_loaders(data)
    batch = next(iter(train))
    torch.manual_seed(4)
    loss = plan.training_step(batch, 0, epoch=1, global_step=0)  # kl_weight 0.25, kappa 0.75
    torch.manual_seed(4)
    inference, _, out = plan.module(batch, loss_kwargs={"kl_weight": 0.25})
    fool = plan.loss_adversarial_classifier(inference["z"], batch["batch"], False)
    assert loss.item() == pytest.approx((out.loss + 0.75 * fool).item(), rel=1e-6)
    assert plan.train_epoch_metrics()["train_loss"] == pytest.approx(loss.item(), rel=1e-6)


def test_the_classifier_learns_and_the_loss_falls(data):
    torch.manual_seed(0)
    plan = AdversarialTrainingPlan(make_vae(data), adversarial_classifier=True, n_epochs_kl_warmup=None)
    train, _ = plain_loaders(data)
    trainer = quiet_trainer(max_epochs=8, seed=0)
    batch = next(iter(train))

    def classifier_loss():
        plan.adversarial_classifier.eval()
        with torch.no_grad():
            z = plan.module.inference(batch["X"], batch["batch"])["qz"].loc
            value = plan.loss_adversarial_classifier(z, batch["batch"], True).item()
        plan.adversarial_classifier.train()
        return value

    plan.configure_optimizers()
    before = classifier_loss()
    # kl_weight is 1 without warm-up, so kappa = 0: fix it to train the adversary.
    plan.scale_adversarial_loss = 1.0
    trainer.fit(plan, train)
    assert classifier_loss() < before < math.log(3) + 0.5
    assert trainer.history[-1]["train_loss"] < trainer.history[0]["train_loss"]


def _run(data, dirpath, max_epochs, init_seed=0, ckpt_path=None):
    train, val = plain_loaders(data)
    torch.manual_seed(init_seed)
    plan = AdversarialTrainingPlan(make_vae(data, seed=init_seed), adversarial_classifier=True, n_epochs_kl_warmup=6)
    checkpoint = ModelCheckpoint(dirpath, monitor="elbo_validation")
    trainer = quiet_trainer(max_epochs=max_epochs, seed=3, callbacks=[checkpoint])
    trainer.fit(plan, train, val, ckpt_path=ckpt_path)
    return trainer, plan


def test_resume_is_bit_identical_including_the_classifier(data, tmp_path):
    straight_trainer, straight_plan = _run(data, tmp_path / "a", 4)
    _run(data, tmp_path / "b", 2)
    saved = torch.load(tmp_path / "b" / "last.ckpt", weights_only=True)
    assert set(saved["plan"]) == {"adversarial_classifier", "classifier_optimizer"}
    assert saved["plan"]["classifier_optimizer"]["state"]  # Adam moments of the classifier
    trainer, plan = _run(data, tmp_path / "b", 4, init_seed=11, ckpt_path=tmp_path / "b" / "last.ckpt")
    assert states_equal(plan.module.state_dict(), straight_plan.module.state_dict())
    assert states_equal(plan.state_dict(), straight_plan.state_dict())
    assert trainer.history == straight_trainer.history


def test_resuming_with_another_plan_is_a_clear_error(data, tmp_path):
    _run(data, tmp_path, 1)
    train, _ = plain_loaders(data)
    with pytest.raises(ValueError, match="written for another training plan"):
        quiet_trainer(max_epochs=2).fit(TrainingPlan(make_vae(data)), train, ckpt_path=tmp_path / "last.ckpt")
    plain = tmp_path / "plain"
    plain_trainer = quiet_trainer(max_epochs=1, callbacks=[ModelCheckpoint(plain, save_best=False)])
    plain_trainer.fit(TrainingPlan(make_vae(data)), train)
    with pytest.raises(ValueError, match="has no adversarial classifier state"):
        quiet_trainer(max_epochs=2).fit(
            AdversarialTrainingPlan(make_vae(data), adversarial_classifier=True), train, ckpt_path=plain / "last.ckpt"
        )
