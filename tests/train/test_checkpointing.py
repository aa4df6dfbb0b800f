import pytest
import torch
from train_toys import ScriptedMetric, ToyModule, make_loaders, quiet_trainer, toy_plan

from snakevi._constants import CHECKPOINT_FORMAT_VERSION
from snakevi.train import EarlyStopping, LearningRateMonitor, ModelCheckpoint, TrainingPlan

PLAN = {
    "dropout": 0.3,
    "reduce_lr_on_plateau": True,
    "lr_scheduler_metric": "scripted",
    "lr_patience": 1,
    "lr_factor": 0.5,
    "lr": 0.05,
}


def _callbacks(dirpath):
    # The scripted plateau makes the LR scheduler's state matter across the cut after epoch 3.
    return [
        ModelCheckpoint(dirpath, monitor="elbo_validation"),
        EarlyStopping(monitor="scripted", patience=100),
        LearningRateMonitor(),
        ScriptedMetric("scripted", [5.0, 4.0, 4.0, 4.0, 4.0, 4.0]),
    ]


def _run(dirpath, max_epochs, init_seed=0, ckpt_path=None):
    train, val = make_loaders(shuffle=True)
    plan = toy_plan(seed=init_seed, **PLAN)
    trainer = quiet_trainer(max_epochs=max_epochs, seed=7, callbacks=_callbacks(dirpath))
    trainer.fit(plan, train, val, ckpt_path=ckpt_path)
    return trainer, plan


def _assert_same_run(a, b):
    (ta, pa), (tb, pb) = a, b
    sa, sb = pa.module.state_dict(), pb.module.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert ta.history == tb.history
    assert ta.global_step == tb.global_step
    assert [c.state_dict() for c in ta.callbacks] == [c.state_dict() for c in tb.callbacks]


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    straight = _run(tmp_path / "straight", 6)
    _run(tmp_path / "cut", 3)
    # A different initialisation: everything must come from the checkpoint.
    resumed = _run(tmp_path / "cut", 6, init_seed=123, ckpt_path=tmp_path / "cut" / "last.ckpt")
    _assert_same_run(straight, resumed)
    assert [row["lr-Adam"] for row in straight[0].history] == [0.05] * 4 + [0.025] * 2
    assert len(resumed[0].history) == 6 and resumed[0].current_epoch == 6


def test_same_seed_twice_gives_identical_history_and_weights(tmp_path):
    _assert_same_run(_run(tmp_path / "a", 3), _run(tmp_path / "b", 3))


def test_different_trainer_seed_changes_the_run(tmp_path):
    train, _ = make_loaders()
    runs = []
    for seed in (1, 2):
        trainer = quiet_trainer(max_epochs=1, seed=seed)
        trainer.fit(toy_plan(dropout=0.3), train)
        runs.append(trainer.history)
    assert runs[0] != runs[1]


def test_model_checkpoint_writes_last_and_best_loadable_with_weights_only(tmp_path):
    values = [3.0, 1.0, 2.0, 5.0]
    train, _ = make_loaders()
    ckpt = ModelCheckpoint(tmp_path / "ckpts", monitor="scripted")
    trainer = quiet_trainer(max_epochs=4, callbacks=[ckpt, ScriptedMetric("scripted", values)])
    trainer.fit(toy_plan(), train)
    assert ckpt.best_score == 1.0 and ckpt.best_epoch == 1
    assert ckpt.best_model_path == str(tmp_path / "ckpts" / "best.ckpt")
    assert ckpt.last_model_path == str(tmp_path / "ckpts" / "last.ckpt")
    best = torch.load(ckpt.best_model_path, weights_only=True)
    last = torch.load(ckpt.last_model_path, weights_only=True)
    assert best["format_version"] == last["format_version"] == CHECKPOINT_FORMAT_VERSION
    assert (best["epoch"], last["epoch"]) == (2, 4)  # epochs completed when written
    assert [row["scripted"] for row in best["history"]] == [3.0, 1.0]
    assert set(last) >= {"module", "optimizer", "scheduler", "callbacks", "global_step", "history", "rng"}
    assert set(last["rng"]) >= {"torch", "numpy", "python"}
    assert last["callbacks"]["ModelCheckpoint"]["best_score"] == 1.0
    assert torch.equal(last["module"]["decoder.weight"], trainer.plan.module.decoder.weight.detach())
    # No temp files left; each checkpoint has its SHA-256 beside it.
    assert sorted(p.name for p in (tmp_path / "ckpts").iterdir()) == [
        "best.ckpt", "best.ckpt.sha256.json", "last.ckpt", "last.ckpt.sha256.json"]


def test_every_n_epochs_and_the_final_save(tmp_path):
    train, _ = make_loaders()
    ckpt = ModelCheckpoint(tmp_path, monitor="elbo_train", every_n_epochs=2)
    trainer = quiet_trainer(max_epochs=3, callbacks=[ckpt])
    trainer.fit(toy_plan(), train)
    assert torch.load(tmp_path / "best.ckpt", weights_only=True)["epoch"] == 2
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == 3  # written once more at fit end


class _SavesCounted(ModelCheckpoint):
    """Records the epoch of every save (the file only keeps the last)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.saved_epochs = []

    def _save_epoch(self, trainer):
        self.saved_epochs.append(trainer.current_epoch)
        super()._save_epoch(trainer)


class _SaveNowAt:
    """Calls ``checkpoint.save_now`` at the end of one epoch (as the train step's signal handler does)."""

    runs_last = True

    def __init__(self, checkpoint, epoch):
        self.checkpoint, self.epoch = checkpoint, epoch

    def on_train_epoch_end(self, trainer, plan):
        if trainer.current_epoch == self.epoch:
            self.checkpoint.save_now(trainer)
            self.checkpoint.save_now(trainer)  # a second call saves nothing more


def test_every_n_seconds_spaces_the_saves_and_save_now_forces_one(tmp_path):
    train, _ = make_loaders()
    ckpt = _SavesCounted(tmp_path, monitor="elbo_train", save_best=False, every_n_seconds=3600)
    trainer = quiet_trainer(max_epochs=5, callbacks=[ckpt, _SaveNowAt(ckpt, 1)])
    trainer.fit(toy_plan(), train)
    # None due by time; epoch 1 saved on request, epoch 4 (the last) at the end of the fit.
    assert ckpt.saved_epochs == [1]
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == 5
    every = _SavesCounted(tmp_path / "every", monitor="elbo_train", save_best=False, every_n_seconds=0)
    quiet_trainer(max_epochs=3, callbacks=[every]).fit(toy_plan(), train)
    assert every.saved_epochs == [0, 1, 2]
    with pytest.raises(ValueError, match="every_n_seconds=-1"):
        ModelCheckpoint(tmp_path, every_n_seconds=-1)


def test_model_checkpoint_needs_validation_only_for_best_on_a_validation_metric(tmp_path):
    assert ModelCheckpoint(tmp_path).needs_validation
    assert not ModelCheckpoint(tmp_path, save_best=False).needs_validation
    assert not ModelCheckpoint(tmp_path, monitor="elbo_train").needs_validation
    assert ModelCheckpoint.runs_last


def test_resuming_a_run_that_stopped_early_stays_stopped(tmp_path):
    train, _ = make_loaders()
    values = [1.0, 2.0, 2.0, 2.0, 2.0, 2.0]

    def callbacks():
        return [
            ModelCheckpoint(tmp_path, save_best=False),
            EarlyStopping("scripted", patience=1),
            ScriptedMetric("scripted", values),
        ]

    first = quiet_trainer(max_epochs=6, callbacks=callbacks())
    first.fit(toy_plan(), train)
    assert len(first.history) == 2
    again = quiet_trainer(max_epochs=6, callbacks=callbacks())
    again.fit(toy_plan(), train, ckpt_path=tmp_path / "last.ckpt")
    assert again.history == first.history and again.should_stop
    assert again.stop_reason == first.stop_reason


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    train, _ = make_loaders()
    trainer = quiet_trainer(max_epochs=1, callbacks=[ModelCheckpoint(tmp_path, save_best=False)])
    trainer.fit(toy_plan(), train)
    other = TrainingPlan(ToyModule(n_latent=3))
    with pytest.raises(
        ValueError, match=r"last.ckpt was written for another model/run: shape mismatches \[encoder.weight"
    ):
        quiet_trainer(max_epochs=2).fit(other, train, ckpt_path=tmp_path / "last.ckpt")
    with pytest.raises(ValueError, match="was written for another model/run: it has no LR scheduler state"):
        quiet_trainer(max_epochs=2).fit(
            toy_plan(reduce_lr_on_plateau=True, lr_scheduler_metric="elbo_train"),
            train,
            ckpt_path=tmp_path / "last.ckpt",
        )


def test_unreadable_missing_or_foreign_checkpoints_are_clear_errors(tmp_path):
    train, _ = make_loaders()
    with pytest.raises(FileNotFoundError, match="nope.ckpt does not exist"):
        quiet_trainer(max_epochs=1).fit(toy_plan(), train, ckpt_path=tmp_path / "nope.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.ckpt could not be read"):
        quiet_trainer(max_epochs=1).fit(toy_plan(), train, ckpt_path=tmp_path / "junk.ckpt")
    torch.save({"format_version": CHECKPOINT_FORMAT_VERSION + 1}, tmp_path / "future.ckpt")
    with pytest.raises(ValueError, match=f"format version {CHECKPOINT_FORMAT_VERSION + 1}"):
        quiet_trainer(max_epochs=1).fit(toy_plan(), train, ckpt_path=tmp_path / "future.ckpt")


def test_save_checkpoint_and_repeated_callback_keys(tmp_path):
    train, _ = make_loaders()
    trainer = quiet_trainer(max_epochs=1, callbacks=[EarlyStopping("elbo_train"), EarlyStopping("train_loss")])
    trainer.fit(toy_plan(), train)
    trainer.save_checkpoint(tmp_path / "manual.ckpt")
    state = torch.load(tmp_path / "manual.ckpt", weights_only=True)
    assert {"NaNGuard", "EarlyStopping[0]", "EarlyStopping[1]"} == set(state["callbacks"])
