"""Step 3, train: prepared arrays + registry + parameters -> ``model/`` and ``history.csv``.

Checkpoints go to a folder outside the declared outputs (``results/{run}/checkpoints/`` in the
workflow), so a killed or failed job resumes when it is run again. A checkpoint is reused only
when it was written for the same *run fingerprint* (registry, prepared split and loader,
model parameters, training parameters, seed); a folder written for another fingerprint is moved
aside to ``<folder>.stale`` with a warning. The checkpoint folder also holds
``history.live.csv``, rewritten after every epoch. On SIGTERM (what SLURM sends at a time limit or
on preemption) training stops at the end of the current epoch, the checkpoint of that epoch is
kept, and the step exits with an error saying to rerun. A non-finite loss or gradient stops
training with an error naming the epoch, step and metric; the last checkpoint (of a good epoch)
stays. Checkpoints are spaced ``checkpoint_every_seconds`` apart (each epoch when epochs are
longer), and the last epoch is always saved. A run that fails before its first checkpoint
leaves no checkpoint folder behind. A train job holds an exclusive lock on its checkpoint folder
(``.<folder>.lock`` beside it; see :mod:`snakevi.steps._lock`): a second trainer on the same
folder stops at once, naming the first, and changes nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
import warnings
from pathlib import Path

from snakevi._constants import DEFAULT_CHECKPOINT_SECONDS
from snakevi.steps._io import StepError, fingerprint, write_json_atomic, write_npy_atomic, write_text_atomic
from snakevi.steps._lock import hold_checkpoint_folder

log = logging.getLogger(__name__)

#: Training parameters that go to the TrainingPlan (the rest go to ``model.train``).
PLAN_KEYS = frozenset({
    "optimizer", "lr", "weight_decay", "eps", "n_steps_kl_warmup", "n_epochs_kl_warmup",
    "reduce_lr_on_plateau", "lr_factor", "lr_patience", "lr_threshold", "lr_scheduler_metric",
    "lr_min", "max_kl_weight", "min_kl_weight",
})
#: Training parameters passed to ``SCVI.train`` (``adversarial`` as ``adversarial_classifier``).
TRAIN_KEYS = frozenset({
    "max_epochs", "early_stopping", "early_stopping_monitor", "early_stopping_patience",
    "early_stopping_min_delta", "early_stopping_warmup_epochs", "early_stopping_mode",
    "check_val_every_n_epoch", "gradient_clip_val", "learning_rate_monitor", "adversarial",
})
#: Training parameters of the scANVI phase of a scanvi run (ignored by scvi runs).
SCANVI_KEYS = frozenset({"scanvi_max_epochs", "classification_ratio", "n_samples_per_label"})
MODEL_CLASSES = ("scvi", "scanvi")
#: Checkpoint subfolder of the scANVI phase (its own fingerprint; the scVI phase's is the parent).
SCANVI_CHECKPOINTS = "scanvi"
FINGERPRINT_FILE = "fingerprint.json"
LAST_CKPT = "last.ckpt"


class TrainingInterrupted(RuntimeError):
    """Training stopped on a signal after saving a checkpoint; rerunning resumes."""

    expected = True  # logged without a traceback
    #: What the process exits with, from the `snakevi` command and from the workflow's script alike.
    exit_status = 3


class _StopOnSignal:
    """Callback: after SIGTERM/SIGINT, write the epoch's checkpoint, then stop.

    It runs last (after ``checkpoint``, which is listed before it) and saves the epoch before
    asking the trainer to stop (a time-spaced checkpoint may have skipped it), so the checkpoint
    of the interrupted epoch does not record the stop and a rerun resumes training.
    """

    runs_last = True
    needs_validation = False

    def __init__(self, checkpoint) -> None:
        self.checkpoint = checkpoint
        self.signal_name: str | None = None

    def handler(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without waiting for the epoch
        self.signal_name = signal.Signals(signum).name

    def on_train_epoch_end(self, trainer, plan) -> None:  # noqa: ARG002
        if self.signal_name is not None:
            self.checkpoint.save_now(trainer)
            trainer.should_stop = True
            trainer.stop_reason = f"interrupted by {self.signal_name}"

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class _LogEpochs:
    """Callback: one log line per epoch with its wall time, so a long job's log shows how far it got.

    The time (training plus validation) goes to the log only, never to the history, which must
    stay identical between runs with the same seed.
    """

    def __init__(self) -> None:
        self._started = None

    def on_train_epoch_start(self, trainer, plan) -> None:  # noqa: ARG002
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer, plan) -> None:  # noqa: ARG002
        row = trainer.history[-1]
        shown = ", ".join(f"{k} {row[k]:.4g}" for k in ("elbo_train", "elbo_validation") if k in row)
        seconds = time.perf_counter() - self._started if self._started is not None else float("nan")
        log.info("epoch %d/%d (%.2f s): %s", row["epoch"] + 1, trainer.max_epochs, seconds, shown)


def split_train_params(train_params: dict) -> tuple[dict, dict]:
    """``(train_kwargs, plan_kwargs)`` from the config's ``train`` section; unknown keys refused."""
    unknown = sorted(set(train_params) - PLAN_KEYS - TRAIN_KEYS - SCANVI_KEYS)
    if unknown:
        raise StepError(
            f"Unknown training parameter(s) {unknown}; known: {sorted(PLAN_KEYS | TRAIN_KEYS | SCANVI_KEYS)}. "
            "Check the spelling in the run's 'train' section."
        )
    train_kwargs = {k: v for k, v in train_params.items() if k in TRAIN_KEYS}
    if "adversarial" in train_kwargs:
        train_kwargs["adversarial_classifier"] = bool(train_kwargs.pop("adversarial"))
    plan_kwargs = {k: v for k, v in train_params.items() if k in PLAN_KEYS}
    return train_kwargs, plan_kwargs


def _resume_path(checkpoint_dir: Path, run_fp: str) -> Path | None:
    """The checkpoint to resume from, or None; moves a checkpoint folder of another run aside."""
    import json

    if not checkpoint_dir.exists():
        return None
    stamp = checkpoint_dir / FINGERPRINT_FILE
    have = None
    if stamp.is_file():
        try:
            have = json.loads(stamp.read_text()).get("fingerprint")
        except (ValueError, OSError):
            have = None
    if have == run_fp:
        last = checkpoint_dir / LAST_CKPT
        return last if last.is_file() else None
    if any(checkpoint_dir.iterdir()):
        stale = checkpoint_dir.with_name(checkpoint_dir.name + ".stale")
        shutil.rmtree(stale, ignore_errors=True)
        os.replace(checkpoint_dir, stale)
        warnings.warn(
            f"{checkpoint_dir} holds checkpoints of a run with other data or parameters; moved it to "
            f"{stale} and training starts from scratch.",
            UserWarning,
            stacklevel=3,
        )
    else:
        checkpoint_dir.rmdir()
    return None


def train(
    prepared_dir: str | os.PathLike,
    registry_json: str | os.PathLike,
    model_out: str | os.PathLike,
    history_out: str | os.PathLike,
    *,
    latent_out: str | os.PathLike | None = None,
    model_class: str = "scvi",
    checkpoint_dir: str | os.PathLike | None = None,
    model_params: dict | None = None,
    train_params: dict | None = None,
    seed: int = 0,
    accelerator: str = "auto",
    threads: int | None = None,
    enable_progress_bar: bool = False,
    checkpoint_every_seconds: float | None = DEFAULT_CHECKPOINT_SECONDS,
):
    """Train scVI on a prepared folder and save the model and its history.

    Parameters
    ----------
    prepared_dir, registry_json
        Outputs of the prepare and register steps.
    model_out
        Model folder to write (``SCVI.save``; read back with ``SCVI.load``).
    history_out
        Per-epoch metrics as CSV (one row per epoch, scvi-tools' metric names).
    latent_out
        If given, also write the latent representation of every prepared cell (the posterior
        mean, ``get_latent_representation()``; cells x ``n_latent`` float32, in the data's cell
        order) as a ``.npy`` file. The model is in memory here, so this costs a few seconds
        less than the export step loading it again (it then needs no torch).
    model_class
        ``"scvi"``, or ``"scanvi"``: scVI is trained first (``train_params``), then scANVI is
        built from it (``SCANVI.from_scvi_model``) and trained for ``scanvi_max_epochs``
        (``None``: scvi-tools' rule for pretrained models), as scvi-tools recommends. The
        registry must have a labels key and an unlabeled category. The scANVI phase
        checkpoints to ``<checkpoint_dir>/scanvi/``, so either phase resumes; ``history.csv``
        holds both phases' rows, told apart by its ``phase`` column.
    checkpoint_dir
        Where checkpoints go (default: ``checkpoints/`` beside ``model_out``); not an output.
    model_params
        ``SCVI`` constructor parameters (``n_latent``, ``n_hidden``, ``gene_likelihood``, ...).
    train_params
        Training parameters: ``max_epochs``, early stopping, ``check_val_every_n_epoch``,
        ``gradient_clip_val`` and the TrainingPlan's (``lr``, ``weight_decay``,
        ``n_epochs_kl_warmup``, ``reduce_lr_on_plateau``, ...).
    seed
        Seed of the weights, dropout and minibatch order (the split was fixed by prepare).
    accelerator
        ``"cpu"``, ``"cuda"``/``"gpu"`` or ``"auto"``. On CUDA the prepared arrays are copied to
        the GPU once and minibatches are densified there when they take under half of its free
        memory (``SCVI.train(data_on_device="auto")``; the log says so).
    threads
        torch CPU threads (``None``: torch's default).
    checkpoint_every_seconds
        Write ``last.ckpt`` after an epoch only when this many seconds have passed since the
        previous one (``None`` or 0: after every epoch). The last epoch, and the epoch a signal
        stops, are always written; a hard kill loses at most this much training.

    Returns
    -------
    SCVI
        The trained model.
    """
    from snakevi.data import registry_from_json
    from snakevi.data.prepared import load_prepared, read_loader_spec, read_split

    model_params = dict(model_params or {})
    train_params = dict(train_params or {})
    train_kwargs, plan_kwargs = split_train_params(train_params)
    if model_class not in MODEL_CLASSES:
        raise StepError(f"Unknown model_class {model_class!r}; use one of {list(MODEL_CLASSES)}.")
    registry = registry_from_json(registry_json)
    if model_class == "scanvi":
        _check_scanvi_setup(registry, registry_json)
    spec = read_loader_spec(prepared_dir)
    data = load_prepared(prepared_dir, registry)
    split = read_split(prepared_dir)
    # torch only now: inputs that do not fit are refused without its import time.
    import torch

    from snakevi.train.callbacks.nan_guard import NonFiniteLossError

    if threads:
        torch.set_num_threads(int(threads))
    run_fp = fingerprint(spec["registry_sha256"], spec["loader"], spec.get("split_sizes"), model_params,
                         train_params, int(seed), model_class)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else Path(model_out).parent / "checkpoints"
    # One trainer per checkpoint folder, from before it is looked at (resumed from or moved aside)
    # until the outputs are written: a second one stops here, naming the first.
    with hold_checkpoint_folder(ckpt_dir):
        ckpt_path = _resume_path(ckpt_dir, run_fp)
        created = not ckpt_dir.exists()
        if ckpt_path is not None:
            log.info("resuming from %s", ckpt_path)
        try:
            # Inside the try: a full disk refusing the fingerprint leaves no empty folder behind either.
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(ckpt_dir / FINGERPRINT_FILE, {"fingerprint": run_fp, "model_params": model_params,
                                                           "train_params": train_params, "seed": int(seed)})
            model, stopper = _fit(lambda: _build_scvi(data, seed, model_params), split, spec, ckpt_dir, ckpt_path,
                                  train_kwargs, plan_kwargs, seed, accelerator, enable_progress_bar,
                                  checkpoint_every_seconds)
            history = _phase_history(model, "scvi" if model_class == "scanvi" else None)
            if model_class == "scanvi" and stopper.signal_name is None:
                model, stopper = _fit_scanvi(model, split, spec, ckpt_dir / SCANVI_CHECKPOINTS, run_fp, train_params,
                                             seed, accelerator, enable_progress_bar, checkpoint_every_seconds)
                history = history + _phase_history(model, "scanvi")
        except BaseException as err:
            if created and not (ckpt_dir / LAST_CKPT).exists():
                # No epoch completed: leave no folder behind that looks like a run to resume.
                shutil.rmtree(ckpt_dir, ignore_errors=True)
            if isinstance(err, NonFiniteLossError):
                raise StepError(f"{err} {_kept_checkpoint(ckpt_dir)}") from err
            raise
        if stopper.signal_name is not None:
            raise TrainingInterrupted(
                f"Training received {stopper.signal_name} and stopped after epoch {len(model.history_records)}; the "
                f"checkpoint is in {ckpt_dir / LAST_CKPT}. Run the same step again (snakemake: rerun the "
                "workflow) to resume from it."
            )
        model.save(model_out, overwrite=True)
        write_text_atomic(history_out, _history_csv(history))
        log.info("trained %d epochs -> %s, %s", len(history), model_out, history_out)
        if latent_out is not None:
            import numpy as np

            latent = np.asarray(model.get_latent_representation(batch_size=1024), dtype=np.float32)
            write_npy_atomic(latent_out, latent)
            log.info("latent representation (%d cells x %d dims) -> %s", *latent.shape, latent_out)
        return model


def _kept_checkpoint(ckpt_dir: Path) -> str:
    """What a failed run leaves to resume from, for the error message."""
    last = ckpt_dir / LAST_CKPT
    if not last.is_file():
        return "No epoch had completed, so no checkpoint was kept."
    return (
        f"The last checkpoint (written after a good epoch) is kept in {last}; training again with other parameters "
        f"(e.g. a lower lr) starts from scratch and moves it to {ckpt_dir}.stale."
    )


def _build_scvi(data, seed, model_params):
    from snakevi.model import SCVI

    try:
        return SCVI(data, seed=int(seed), **model_params)
    except TypeError as err:
        raise StepError(f"Invalid model parameter: {err}. Check the run's 'model' section.") from err


def _check_scanvi_setup(registry: dict, source) -> None:
    from snakevi.data.registry import registry_unlabeled_category

    if registry["fields"]["labels"]["original_key"] is None or registry_unlabeled_category(registry) is None:
        raise StepError(
            f"{source}: model_class scanvi needs a registry with a labels key and an unlabeled category; "
            "register the data with setup.labels_key and setup.unlabeled_category."
        )


def _fit_scanvi(scvi_model, split, spec, ckpt_dir, run_fp, train_params, seed, accelerator, enable_progress_bar,
                checkpoint_every_seconds):
    """The scANVI phase: from the trained scVI model, with its own checkpoint folder."""
    from snakevi.data.registry import registry_unlabeled_category
    from snakevi.model import SCANVI

    scanvi_fp = fingerprint(run_fp, "scanvi")
    ckpt_path = _resume_path(ckpt_dir, scanvi_fp)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(ckpt_dir / FINGERPRINT_FILE, {"fingerprint": scanvi_fp})
    if ckpt_path is not None:
        log.info("resuming the scANVI phase from %s", ckpt_path)
    unlabeled = registry_unlabeled_category(scvi_model.registry)
    train_kwargs, plan_kwargs = split_train_params({k: v for k, v in train_params.items() if k not in SCANVI_KEYS})
    # Validation, early stopping and clipping as in the scVI phase; the adversarial classifier is scVI's only.
    train_kwargs.pop("adversarial_classifier", None)
    train_kwargs.update(max_epochs=train_params.get("scanvi_max_epochs"),
                        n_samples_per_label=train_params.get("n_samples_per_label"))
    # The scANVI phase keeps the optimiser settings but not scVI's KL warm-up: scvi-tools trains it
    # with the plan's defaults unless told otherwise.
    plan_kwargs = {k: v for k, v in plan_kwargs.items() if k in ("optimizer", "lr", "weight_decay", "eps")}
    plan_kwargs["classification_ratio"] = float(train_params.get("classification_ratio", 50))
    return _fit(lambda: SCANVI.from_scvi_model(scvi_model, unlabeled), split, spec, ckpt_dir, ckpt_path,
                train_kwargs, plan_kwargs, seed, accelerator, enable_progress_bar, checkpoint_every_seconds)


def _phase_history(model, phase: str | None) -> list[dict]:
    """The model's history rows without their epoch (history.csv numbers epochs on through the
    phases), tagged with ``phase`` when given."""
    rows = [{k: v for k, v in row.items() if k != "epoch"} for row in model.history_records]
    if phase is not None:
        for row in rows:
            row["phase"] = phase
    return rows


def _history_csv(rows: list[dict]) -> str:
    """history.csv's text: ``epoch`` (0, 1, ... through the phases), ``phase`` when present, then the
    metrics in the order they were first logged; a metric missing (or NaN) in an epoch is left blank."""
    import math

    from snakevi.model.base import history_columns
    from snakevi.train.callbacks import history_to_csv

    numbered = [{"epoch": epoch, **{k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}}
                for epoch, row in enumerate(rows)]
    columns = history_columns(rows)
    if "phase" in columns:
        columns = ["phase", *[c for c in columns if c != "phase"]]
    return history_to_csv(numbered, columns)


def _fit(build, split, spec, ckpt_dir, ckpt_path, train_kwargs, plan_kwargs, seed, accelerator,
         enable_progress_bar, checkpoint_every_seconds):
    """Build the model and train it with checkpoints and the signal handler; ``(model, stopper)``."""
    from snakevi.train import CSVLogger, ModelCheckpoint

    model = build()

    checkpoint = ModelCheckpoint(str(ckpt_dir), save_last=True, save_best=False,
                                 every_n_seconds=checkpoint_every_seconds)
    stopper = _StopOnSignal(checkpoint)
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, stopper.handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
    try:
        model.train(
            external_indexing=split,
            batch_size=int(spec["loader"]["batch_size"]),
            seed=int(seed),
            accelerator=accelerator,
            plan_kwargs=plan_kwargs,
            callbacks=[
                _LogEpochs(),
                # The history so far, for people watching a long run (history.csv comes at the end).
                CSVLogger(ckpt_dir / "history.live.csv"),
                checkpoint,
                stopper,
            ],
            enable_progress_bar=enable_progress_bar,
            ckpt_path=None if ckpt_path is None else str(ckpt_path),
            **train_kwargs,
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return model, stopper
