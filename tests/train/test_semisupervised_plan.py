"""SemiSupervisedTrainingPlan: (full, labelled) steps, classification metrics, training, exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from semi_toys import make_scanvae, semi_loaders, sim_data, states_equal
from train_toys import ToyModule, make_loaders, quiet_trainer

from snakevi.train import ModelCheckpoint, SemiSupervisedTrainingPlan, SubSampleLabels

CLASSIFICATION = ["classification_loss", "accuracy", "f1_score", "calibration_error"]


class SpyModule(ToyModule):
    """ToyModule whose loss records the semi-supervised keywords it gets."""

    def loss(self, tensors, inference_outputs, generative_outputs, kl_weight=1.0, labelled_tensors=None,
             classification_ratio=None):
        out = super().loss(tensors, inference_outputs, generative_outputs, kl_weight)
        self.seen_kwargs[-1] = {"labelled": labelled_tensors, "ratio": classification_ratio, "kl_weight": kl_weight}
        return out


def test_pairs_give_labelled_tensors_and_the_ratio_to_the_loss():
    torch.manual_seed(0)
    module = SpyModule()
    plan = SemiSupervisedTrainingPlan(module, n_classes=3)
    full = {"X": torch.ones(4, 6), "batch": torch.zeros(4, 1, dtype=torch.long)}
    lab = {"X": torch.ones(2, 6), "labels": torch.tensor([[0], [2]])}
    plan.training_step((full, lab), 0, epoch=0, global_step=0)
    plan.training_step(full, 1, epoch=0, global_step=1)
    (first, second) = module.seen_kwargs
    assert first["labelled"] is lab and first["ratio"] == 50 and first["kl_weight"] == 0.0
    assert second["labelled"] is None
    assert SemiSupervisedTrainingPlan(SpyModule(), 3, classification_ratio=7).loss_kwargs["classification_ratio"] == 7
    with pytest.raises(TypeError, match="pair of dicts"):
        plan.training_step([full], 2, epoch=0, global_step=2)
    with pytest.raises(ValueError, match="labelled_tensors"):
        SemiSupervisedTrainingPlan(SpyModule(), 3, labelled_tensors={})


def test_toy_module_without_classification_logs_only_elbo_metrics():
    train, val = make_loaders()
    torch.manual_seed(0)
    plan = SemiSupervisedTrainingPlan(SpyModule(), n_classes=2)
    trainer = quiet_trainer(max_epochs=1, check_val_every_n_epoch=1)
    trainer.fit(plan, train, val)
    assert not any(name in key for key in trainer.history[0] for name in CLASSIFICATION)


def test_training_on_simulated_data_lowers_the_loss_and_logs_scvi_tools_names():
    data = sim_data()
    train, val = semi_loaders(data)
    plan = SemiSupervisedTrainingPlan(make_scanvae(data), n_classes=3, lr=1e-2)
    trainer = quiet_trainer(max_epochs=6, seed=0, check_val_every_n_epoch=1)
    trainer.fit(plan, train, val)
    first, last = trainer.history[0], trainer.history[-1]
    for mode in ("train", "validation"):
        for name in CLASSIFICATION:
            assert f"{mode}_{name}" in last
    assert last["train_loss"] < first["train_loss"]
    assert last["train_classification_loss"] < first["train_classification_loss"]
    assert last["train_accuracy"] > first["train_accuracy"]
    assert 0 <= last["validation_calibration_error"] <= 1


def _resume_run(dirpath, max_epochs, init_seed=0, ckpt_path=None):
    data = sim_data()
    train, val = semi_loaders(data, n_samples_per_label=20)
    plan = SemiSupervisedTrainingPlan(make_scanvae(data, seed=init_seed), n_classes=3, lr=1e-2)
    callbacks = [ModelCheckpoint(dirpath, monitor="validation_accuracy", mode="max"), SubSampleLabels()]
    trainer = quiet_trainer(max_epochs=max_epochs, seed=5, callbacks=callbacks)
    trainer.fit(plan, train, val, ckpt_path=ckpt_path)
    return trainer, plan


def test_resume_is_bit_identical(tmp_path):
    straight_trainer, straight_plan = _resume_run(tmp_path / "a", 4)
    _resume_run(tmp_path / "b", 2)
    trainer, plan = _resume_run(tmp_path / "b", 4, init_seed=9, ckpt_path=tmp_path / "b" / "last.ckpt")
    assert states_equal(plan.module.state_dict(), straight_plan.module.state_dict())
    assert trainer.history == straight_trainer.history
    assert trainer.global_step == straight_trainer.global_step


def test_subsample_labels_needs_a_resampling_loader():
    train, _ = make_loaders()
    torch.manual_seed(0)
    trainer = quiet_trainer(max_epochs=1, callbacks=[SubSampleLabels()])
    with pytest.raises(TypeError, match="resample_labels"):
        trainer.fit(SemiSupervisedTrainingPlan(SpyModule(), 2), train)


def test_subsample_labels_redraws_each_epoch():
    data = sim_data()
    train, _ = semi_loaders(data, n_samples_per_label=5)
    drawn = []

    class Record(SubSampleLabels):
        def on_train_epoch_start(self, trainer, plan):
            super().on_train_epoch_start(trainer, plan)
            drawn.append(sorted(trainer.train_loader.labelled_indices.tolist()))

    plan = SemiSupervisedTrainingPlan(make_scanvae(data), n_classes=3)
    quiet_trainer(max_epochs=2, callbacks=[Record()]).fit(plan, train)
    assert len(drawn) == 2 and len(drawn[0]) == 15 and drawn[0] != drawn[1]


def test_trainer_moves_pairs_of_minibatches():
    from snakevi.train.device import move_batch

    full, lab = {"X": np.ones((3, 2), dtype=np.float32)}, {"X": torch.zeros(1, 2)}
    moved = move_batch((full, lab), torch.device("cpu"))
    assert isinstance(moved, tuple) and len(moved) == 2
    assert torch.equal(moved[0]["X"], torch.ones(3, 2)) and torch.equal(moved[1]["X"], torch.zeros(1, 2))
    with pytest.raises(TypeError, match="tuples of dicts"):
        move_batch(("not a dict",), torch.device("cpu"))
