"""Experiment trackers with the real components: TensorBoard's event reader, MLflow on SQLite."""

import shutil
import sys

import pytest
from train_toys import make_loaders, quiet_trainer, toy_plan

from snakevi.train import Callback, ModelCheckpoint
from snakevi.train.loggers import MLFlowLogger, TensorBoardLogger, TrackerUnavailable, make_loggers

pytest.importorskip("tensorboard", reason="the tracking extras (envs/requirements-dev.txt) are not installed")
pytest.importorskip("mlflow", reason="the tracking extras (envs/requirements-dev.txt) are not installed")

from mlflow.tracking import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def _fit(logger, max_epochs=3, ckpt_dir=None, ckpt_path=None, tracking=None, callbacks=(), **kwargs):
    train, val = make_loaders()
    # The checkpoint first: a callback copying it at an epoch's end then copies that epoch's.
    callbacks = ([ModelCheckpoint(ckpt_dir, save_best=False)] if ckpt_dir else []) + list(callbacks)
    trainer = quiet_trainer(max_epochs=max_epochs, check_val_every_n_epoch=1, seed=0, logger=logger,
                            callbacks=callbacks, **kwargs)
    trainer.tracking = dict(tracking or {})
    trainer.fit(toy_plan(seed=0, dropout=0.1), train, val, ckpt_path=ckpt_path)
    return trainer


def _scalars(log_dir) -> dict:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_event_files_hold_every_history_metric_per_epoch(tmp_path):
    logger = TensorBoardLogger(tmp_path / "tb", name="exp")
    trainer = _fit(logger, log_every_n_steps=2)
    scalars = _scalars(tmp_path / "tb" / "exp" / "version_0")
    for name in ("elbo_train", "elbo_validation", "reconstruction_loss_train", "kl_local_validation", "train_loss"):
        assert scalars[name] == [(row["epoch"], pytest.approx(row[name], rel=1e-6)) for row in trainer.history]
    assert [step for step, _ in scalars["train_loss_step"]] == [2, 4, 6, 8]  # 3 steps per epoch, 9 in all
    assert [value for _, value in scalars["epoch"]] == [0, 1, 2]
    hparams = (tmp_path / "tb" / "exp" / "version_0" / "hparams.yaml").read_text()
    assert "max_epochs: 3" in hparams and "precision: '32'" in hparams
    # A second fit without a version is the next version, as in Lightning.
    _fit(TensorBoardLogger(tmp_path / "tb", name="exp"), max_epochs=1)
    assert (tmp_path / "tb" / "exp" / "version_1").is_dir()


def _client_and_run(uri, experiment="snakevi"):
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return client, runs


def _history(client, run_id, key):
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


@pytest.mark.parametrize("store", ["sqlite", "folder"])
def test_mlflow_on_sqlite_or_a_folder_gets_metrics_params_and_the_run_status(tmp_path, store):
    uri = f"sqlite:///{tmp_path}/mlflow.db" if store == "sqlite" else str(tmp_path / "mlruns")
    trainer = _fit({"type": "mlflow", "tracking_uri": uri, "experiment_name": "toys"},
                   tracking={"run_name": "toy-run", "tags": {"lab": "x"}})
    client, runs = _client_and_run(uri, "toys")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "toy-run" and run.data.tags["lab"] == "x"
    assert _history(client, run.info.run_id, "elbo_validation") == [
        (row["epoch"], pytest.approx(row["elbo_validation"])) for row in trainer.history]
    assert run.data.params["trainer.max_epochs"] == "3" and run.data.params["trainer.precision"] == "32"


class _KeepCheckpointOf(Callback):
    """Copies last.ckpt after epoch ``epoch``: a kill after later epochs were tracked, not saved."""

    runs_last = True

    def __init__(self, folder, epoch, to):
        self.folder, self.epoch, self.to = folder, epoch, to

    def on_train_epoch_end(self, trainer, plan):
        if trainer.current_epoch == self.epoch:
            self.to.mkdir(exist_ok=True)
            for name in ("last.ckpt", "last.ckpt.sha256.json"):
                shutil.copy(self.folder / name, self.to / name)


@pytest.mark.parametrize("kind", ["mlflow", "tensorboard"])
def test_a_resumed_fit_continues_the_tracked_run_without_logging_an_epoch_twice(tmp_path, kind):
    uri = f"sqlite:///{tmp_path}/mlflow.db"

    def logger():
        if kind == "mlflow":
            return MLFlowLogger(uri)
        return TensorBoardLogger(tmp_path / "tb")

    tracking = {"run_name": "r", "run_key": "fingerprint-1"}
    # The first fit tracks 4 epochs, but its job "dies" with only epoch 1's checkpoint kept.
    _fit(logger(), max_epochs=4, ckpt_dir=tmp_path / "first", tracking=tracking, log_every_n_steps=1,
         callbacks=[_KeepCheckpointOf(tmp_path / "first", 1, tmp_path / "kept")])
    resumed = _fit(logger(), max_epochs=6, ckpt_dir=tmp_path / "second", ckpt_path=tmp_path / "kept" / "last.ckpt",
                   tracking=tracking, log_every_n_steps=1)
    whole = _fit(None, max_epochs=6)
    assert resumed.history == whole.history  # the resume is exact
    if kind == "mlflow":
        client, runs = _client_and_run(uri)
        assert len(runs) == 1 and runs[0].info.status == "FINISHED"
        elbo = _history(client, runs[0].info.run_id, "elbo_train")
        steps = [s for s, _ in _history(client, runs[0].info.run_id, "train_loss_step")]
    else:
        scalars = _scalars(tmp_path / "tb" / "r")
        elbo, steps = sorted(scalars["elbo_train"]), sorted(s for s, _ in scalars["train_loss_step"])
    assert [step for step, _ in elbo] == [0, 1, 2, 3, 4, 5]
    assert [value for _, value in elbo] == pytest.approx([row["elbo_train"] for row in whole.history], rel=1e-6)
    assert steps == list(range(1, 19))  # 3 steps per epoch, each once


def test_a_tracker_added_on_resume_gets_the_restored_epochs_too(tmp_path):
    _fit(None, max_epochs=2, ckpt_dir=tmp_path / "ckpt")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    resumed = _fit(MLFlowLogger(uri), max_epochs=3, ckpt_dir=tmp_path / "ckpt", ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    client, runs = _client_and_run(uri)
    assert [s for s, _ in _history(client, runs[0].info.run_id, "elbo_train")] == [0, 1, 2]
    assert len(resumed.history) == 3


def test_trackers_are_optional_extras_named_in_the_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(TrackerUnavailable, match=r"pip install 'snakevi\[mlflow\]'"):
        quiet_trainer(max_epochs=1, logger="mlflow")
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(TrackerUnavailable, match=r"pip install 'snakevi\[tensorboard\]'"):
        quiet_trainer(max_epochs=1, logger="tensorboard")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_tracking_server_fails_before_training(tmp_path):
    uri = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(TrackerUnavailable, match=f"MLflow tracking server {uri} did not answer"):
        quiet_trainer(max_epochs=1, logger={"type": "mlflow", "tracking_uri": uri})
    assert list(tmp_path.iterdir()) == []
    # A SQLite database's folder is made, as MLflow makes a missing mlruns folder.
    quiet_trainer(max_epochs=1, logger={"type": "mlflow", "tracking_uri": f"sqlite:///{tmp_path}/new/m.db"})
    assert (tmp_path / "new" / "m.db").is_file()


def test_unknown_tracker_settings_are_named():
    with pytest.raises(ValueError, match="logger type 'mlflow': .*unexpected keyword argument 'trackinguri'"):
        make_loggers({"type": "mlflow", "trackinguri": "x"})
    assert make_loggers(None) == [] and make_loggers(False) == []


def test_a_tracker_that_fails_while_training_is_warned_about_and_training_goes_on(tmp_path):
    class _Broken(TensorBoardLogger):
        def log_metrics(self, metrics, step):
            raise OSError("disk gone")

    with pytest.warns(RuntimeWarning, match="disk gone.*training goes on"):
        trainer = _fit(_Broken(tmp_path / "tb"), max_epochs=3)
    assert len(trainer.history) == 3


def test_wandb_offline_writes_the_run_locally_and_a_resumed_fit_continues_it(tmp_path):
    pytest.importorskip("wandb", reason="wandb is not installed")
    from snakevi.train.loggers import WandbLogger

    logged = []

    class _Seen(WandbLogger):
        def log_metrics(self, metrics, step):
            logged.append((self.id, "epoch" in metrics, step))
            super().log_metrics(metrics, step)

    tracking = {"run_name": "r", "run_key": "fingerprint-w"}
    _fit(_Seen(save_dir=tmp_path), max_epochs=3, ckpt_dir=tmp_path / "ckpt", tracking=tracking, log_every_n_steps=3,
         callbacks=[_KeepCheckpointOf(tmp_path / "ckpt", 0, tmp_path / "kept")])
    _fit(_Seen(save_dir=tmp_path), max_epochs=4, ckpt_dir=tmp_path / "ckpt2", ckpt_path=tmp_path / "kept" / "last.ckpt",
         tracking=tracking, log_every_n_steps=3)
    ids = {run_id for run_id, _, _ in logged}
    assert len(ids) == 1  # one W&B run, continued
    assert [step for _, epoch, step in logged if epoch] == [0, 1, 2, 3]  # epochs 1 and 2 not again
    assert [step for _, epoch, step in logged if not epoch] == [3, 6, 9, 12]
    (run_id,) = ids
    files = sorted((tmp_path / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(files) == 2  # the first fit's and the resumed fit's, which `wandb sync` joins by id
    assert b"elbo_validation" in files[0].read_bytes() and b"elbo_validation" in files[1].read_bytes()
