import csv

import pytest
from train_toys import ScriptedMetric, make_loaders, quiet_trainer, toy_plan

from snakevi.train import CSVLogger, LearningRateMonitor, Trainer, TrainingPlan
from snakevi.train.callbacks import history_to_csv


def test_csv_logger_writes_one_row_per_epoch_with_sorted_columns(tmp_path):
    path = tmp_path / "logs" / "history.csv"
    rows_seen = []

    class Peek(ScriptedMetric):
        def on_train_epoch_start(self, trainer, plan):
            super().on_train_epoch_start(trainer, plan)
            if path.exists():
                rows_seen.append(len(list(csv.DictReader(path.open()))))

    train, val = make_loaders()
    trainer = quiet_trainer(max_epochs=3, check_val_every_n_epoch=2, callbacks=[CSVLogger(path), Peek("zz", [1, 2, 3])])
    trainer.fit(toy_plan(), train, val)
    with path.open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    header = reader.fieldnames
    assert header[0] == "epoch" and header[1:] == sorted(header[1:])
    assert "validation_loss" in header and "zz" in header
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert [r["zz"] for r in rows] == ["1.0", "2.0", "3.0"]
    assert [r["validation_loss"] == "" for r in rows] == [True, False, True]  # validated only after epoch 1
    assert float(rows[2]["train_loss"]) == pytest.approx(trainer.history[2]["train_loss"])
    assert rows_seen == [1, 2]  # rewritten after every epoch
    assert sorted(p.name for p in path.parent.iterdir()) == ["history.csv"]  # no temp files left


def test_history_to_csv_of_empty_history():
    assert history_to_csv([]) == "epoch\n"


def test_learning_rate_monitor_logs_lr_per_epoch():
    train, _ = make_loaders()
    trainer = quiet_trainer(max_epochs=2, callbacks=[LearningRateMonitor()])
    trainer.fit(toy_plan(lr=0.02), train)
    assert [row["lr-Adam"] for row in trainer.history] == [0.02, 0.02]


def test_learning_rate_monitor_names_param_groups_and_optimizer_class():
    import torch

    def creator(params):
        params = list(params)
        return torch.optim.SGD([{"params": params[:2]}, {"params": params[2:], "lr": 0.5}], lr=0.1)

    train, _ = make_loaders()
    trainer = quiet_trainer(max_epochs=1, callbacks=[LearningRateMonitor()])
    trainer.fit(toy_plan(optimizer="Custom", optimizer_creator=creator), train)
    assert (trainer.history[0]["lr-SGD/pg1"], trainer.history[0]["lr-SGD/pg2"]) == (0.1, 0.5)


def test_no_progress_bar_means_nothing_on_stderr(capsys):
    train, _ = make_loaders()
    Trainer(max_epochs=2, accelerator="cpu", enable_progress_bar=False).fit(toy_plan(), train)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_progress_bar_shows_one_bar_over_epochs_on_stderr(capsys):
    train, _ = make_loaders()
    Trainer(max_epochs=3, accelerator="cpu").fit(toy_plan(), train)
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert "Epoch 3/3" in err and "train_loss=" in err and "3/3" in err
    assert err.count("\n") == 1  # one bar, closed once (updates are carriage returns)
    assert "Epoch 4/3" not in err


def test_plan_scheduler_on_a_train_metric_reduces_lr_in_a_fit():
    train, _ = make_loaders()
    plan: TrainingPlan = toy_plan(
        lr=0.1, reduce_lr_on_plateau=True, lr_scheduler_metric="scripted", lr_patience=2, lr_factor=0.5
    )
    trainer = quiet_trainer(
        max_epochs=7, callbacks=[LearningRateMonitor(), ScriptedMetric("scripted", [5, 4, 4, 4, 4, 4, 4])]
    )
    trainer.fit(plan, train)
    # no improvement at epochs 2, 3, 4 (> patience 2) -> halved after epoch 4
    assert [row["lr-Adam"] for row in trainer.history] == [0.1] * 5 + [0.05] * 2
