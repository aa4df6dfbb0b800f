"""The exact order of hooks and plan calls (Lightning's test_hooks idea), and when validation runs."""

import pytest
from train_toys import make_loaders, quiet_trainer, toy_plan

from snakevi.train import Callback, TrainingPlan


class Recorder(Callback):
    def __init__(self, log, name="cb", needs_validation=False, runs_last=False):
        self.log, self.name = log, name
        self.needs_validation, self.runs_last = needs_validation, runs_last

    def _rec(self, hook, trainer, extra=""):
        self.log.append(f"{self.name}.{hook}(epoch={trainer.current_epoch}, rows={len(trainer.history)}{extra})")

    def on_fit_start(self, trainer, plan):
        self._rec("on_fit_start", trainer)

    def on_train_epoch_start(self, trainer, plan):
        self._rec("on_train_epoch_start", trainer)

    def on_train_batch_end(self, trainer, plan, loss, batch_idx):
        self._rec("on_train_batch_end", trainer, f", batch={batch_idx}, step={trainer.global_step}")

    def on_validation_epoch_end(self, trainer, plan):
        self._rec("on_validation_epoch_end", trainer, f", val={'elbo_validation' in trainer.logged_metrics}")

    def on_train_epoch_end(self, trainer, plan):
        self._rec("on_train_epoch_end", trainer, f", train={'elbo_train' in trainer.logged_metrics}")

    def on_fit_end(self, trainer, plan):
        self._rec("on_fit_end", trainer)


class RecordingPlan(TrainingPlan):
    def __init__(self, module, log, **kwargs):
        super().__init__(module, **kwargs)
        self.log = log

    def training_step(self, batch, batch_idx, *, epoch, global_step):
        self.log.append(f"plan.training_step(batch={batch_idx})")
        return super().training_step(batch, batch_idx, epoch=epoch, global_step=global_step)

    def train_epoch_metrics(self):
        self.log.append("plan.train_epoch_metrics")
        return super().train_epoch_metrics()

    def validation_step(self, batch, batch_idx, *, epoch, global_step):
        self.log.append(f"plan.validation_step(batch={batch_idx})")
        super().validation_step(batch, batch_idx, epoch=epoch, global_step=global_step)

    def validation_epoch_metrics(self):
        self.log.append("plan.validation_epoch_metrics")
        return super().validation_epoch_metrics()

    def lr_scheduler_step(self, scheduler, metrics):
        self.log.append(f"plan.lr_scheduler_step({self.lr_scheduler_metric})")
        super().lr_scheduler_step(scheduler, metrics)


def _fit(log, scheduler_metric, callbacks, max_epochs=2):
    train, val = make_loaders(n_train=16, n_val=8, batch_size=8)  # 2 training batches, 1 validation batch
    plan = RecordingPlan(toy_plan().module, log, reduce_lr_on_plateau=True, lr_scheduler_metric=scheduler_metric)
    trainer = quiet_trainer(max_epochs=max_epochs, callbacks=callbacks)
    trainer.fit(plan, train, val)
    return trainer


def test_hook_order_with_validation_and_a_validation_metric_scheduler():
    log = []
    # "last" is listed first but runs_last puts it after "cb" in every hook.
    _fit(log, "elbo_validation", [Recorder(log, "last", runs_last=True), Recorder(log, "cb")])
    epoch = [
        "cb.on_train_epoch_start(epoch={e}, rows={e})",
        "last.on_train_epoch_start(epoch={e}, rows={e})",
        "plan.training_step(batch=0)",
        "cb.on_train_batch_end(epoch={e}, rows={e}, batch=0, step={s1})",
        "last.on_train_batch_end(epoch={e}, rows={e}, batch=0, step={s1})",
        "plan.training_step(batch=1)",
        "cb.on_train_batch_end(epoch={e}, rows={e}, batch=1, step={s2})",
        "last.on_train_batch_end(epoch={e}, rows={e}, batch=1, step={s2})",
        "plan.train_epoch_metrics",
        "plan.validation_step(batch=0)",
        "plan.validation_epoch_metrics",
        "plan.lr_scheduler_step(elbo_validation)",
        "cb.on_validation_epoch_end(epoch={e}, rows={e}, val=True)",
        "last.on_validation_epoch_end(epoch={e}, rows={e}, val=True)",
        "cb.on_train_epoch_end(epoch={e}, rows={r}, train=True)",
        "last.on_train_epoch_end(epoch={e}, rows={r}, train=True)",
    ]
    expected = (
        ["cb.on_fit_start(epoch=0, rows=0)", "last.on_fit_start(epoch=0, rows=0)"]
        + [line.format(e=0, r=1, s1=1, s2=2) for line in epoch]
        + [line.format(e=1, r=2, s1=3, s2=4) for line in epoch]
        + ["cb.on_fit_end(epoch=2, rows=2)", "last.on_fit_end(epoch=2, rows=2)"]
    )
    assert log == expected


def test_hook_order_with_a_training_metric_scheduler_and_forced_validation():
    log = []
    _fit(log, "elbo_train", [Recorder(log, needs_validation=True)], max_epochs=1)
    assert log == [
        "cb.on_fit_start(epoch=0, rows=0)",
        "cb.on_train_epoch_start(epoch=0, rows=0)",
        "plan.training_step(batch=0)",
        "cb.on_train_batch_end(epoch=0, rows=0, batch=0, step=1)",
        "plan.training_step(batch=1)",
        "cb.on_train_batch_end(epoch=0, rows=0, batch=1, step=2)",
        "plan.train_epoch_metrics",
        "plan.validation_step(batch=0)",
        "plan.validation_epoch_metrics",
        "cb.on_validation_epoch_end(epoch=0, rows=0, val=True)",
        "plan.lr_scheduler_step(elbo_train)",
        "cb.on_train_epoch_end(epoch=0, rows=1, train=True)",
        "cb.on_fit_end(epoch=1, rows=1)",
    ]


def _validated_epochs(check_val_every_n_epoch, callbacks=(), max_epochs=4, plan_kwargs=None):
    train, val = make_loaders()
    trainer = quiet_trainer(
        max_epochs=max_epochs, check_val_every_n_epoch=check_val_every_n_epoch, callbacks=list(callbacks)
    )
    trainer.fit(toy_plan(**(plan_kwargs or {})), train, val)
    return [row["epoch"] for row in trainer.history if "validation_loss" in row]


def test_validation_never_runs_by_default():
    assert _validated_epochs(None) == []


def test_a_callback_needing_validation_forces_it_every_epoch():
    assert _validated_epochs(None, [Recorder([], needs_validation=True)]) == [0, 1, 2, 3]


def test_a_plan_scheduler_on_a_validation_metric_forces_it_every_epoch():
    assert _validated_epochs(None, plan_kwargs={"reduce_lr_on_plateau": True}) == [0, 1, 2, 3]


def test_explicit_interval_validates_every_nth_epoch():
    assert _validated_epochs(2) == [1, 3]
    assert _validated_epochs(1) == [0, 1, 2, 3]


def test_needing_validation_without_a_validation_loader_is_a_clear_error():
    train, _ = make_loaders()
    trainer = quiet_trainer(max_epochs=1, callbacks=[Recorder([], needs_validation=True)])
    with pytest.raises(ValueError, match="Recorder monitor a validation metric but fit\\(\\) got val_loader=None"):
        trainer.fit(toy_plan(), train, None)


def test_set_epoch_is_called_before_each_epoch_and_numpy_batches_work():
    train, val = make_loaders()
    train.as_numpy = True
    trainer = quiet_trainer(max_epochs=3, check_val_every_n_epoch=1)
    trainer.fit(toy_plan(), train, val)
    assert train.set_epoch_calls == [0, 1, 2] and val.set_epoch_calls == [0, 1, 2]
    assert trainer.current_epoch == 3 and trainer.global_step == 9


def test_on_exception_runs_then_the_error_propagates():
    seen = []

    class Boom(Callback):
        def on_train_batch_end(self, trainer, plan, loss, batch_idx):
            raise KeyboardInterrupt

        def on_exception(self, trainer, plan, exception):
            seen.append(type(exception).__name__)

        def on_fit_end(self, trainer, plan):
            seen.append("fit_end")

    train, _ = make_loaders()
    with pytest.raises(KeyboardInterrupt):
        quiet_trainer(max_epochs=2, callbacks=[Boom()]).fit(toy_plan(), train)
    assert seen == ["KeyboardInterrupt"]


def test_empty_training_loader_is_a_clear_error():
    with pytest.raises(ValueError, match="train_loader yielded no minibatch in epoch 0"):
        quiet_trainer(max_epochs=1).fit(toy_plan(), [])


def test_log_adds_to_the_current_row():
    class Logs(Callback):
        def on_train_epoch_end(self, trainer, plan):
            trainer.log("custom", trainer.current_epoch * 2)

    train, _ = make_loaders()
    trainer = quiet_trainer(max_epochs=2, callbacks=[Logs()])
    trainer.fit(toy_plan(), train)
    assert [row["custom"] for row in trainer.history] == [0.0, 2.0]
    assert trainer.logged_metrics is trainer.history[-1]
    with pytest.raises(ValueError, match="'epoch' is written by the trainer"):
        trainer.log("epoch", 1)
