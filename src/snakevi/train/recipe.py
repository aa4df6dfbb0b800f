"""The training recipe: one run of one or more phases, resumable, stoppable, watched.

A run is named by its *run fingerprint* (the digest of its data, parameters and seed). Its
checkpoint folder holds ``fingerprint.json``; a checkpoint is reused only when written for the
same fingerprint, and a folder written for another one is moved aside to ``<folder>.stale``
with a warning. The folder also holds ``history.live.csv``, rewritten after every epoch. On
SIGTERM (what SLURM sends at a time limit or on preemption) or SIGINT, training stops at the
end of the current epoch, that epoch's checkpoint is kept, and :class:`TrainingInterrupted`
says to rerun. A non-finite loss stops training with the epoch, step and metric; the last
checkpoint (of a good epoch) stays. A run that fails before its first checkpoint leaves no
folder behind. The folder is locked for the whole run (:mod:`snakevi.train.checkpoint_lock`).

A model class declares its phases (``training_phases``): a list of :class:`Phase`, each
building its model from the previous phase's trained one. The first phase checkpoints to the
folder itself, each later one to ``<folder>/<phase name>/`` with its own fingerprint, so every
phase resumes. Nothing here knows AnnData: the recipe only calls the models' ``train``,
``history_records`` and what the caller's ``finish`` does.

Importing this module is cheap (no torch): the step scripts import :class:`TrainingInterrupted`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from snakevi._atomic import write_text_atomic
from snakevi._digest import fingerprint
from snakevi.train.checkpoint_lock import hold_checkpoint_folder

log = logging.getLogger(__name__)

FINGERPRINT_FILE = "fingerprint.json"
LAST_CKPT = "last.ckpt"
LIVE_HISTORY = "history.live.csv"


class TrainingInterrupted(RuntimeError):
    """Training stopped on a signal after saving a checkpoint; rerunning resumes."""

    expected = True  # logged without a traceback
    #: What the process exits with, from the `snakevi` command and from the workflow's script alike.
    exit_status = 3


@dataclass(frozen=True)
class Phase:
    """One phase of a training run, as a model class declares it.

    Parameters
    ----------
    name
        The phase's name: its checkpoint subfolder (phases after the first) and the value of
        history.csv's ``phase`` column (runs of more than one phase).
    build
        ``build(previous)`` -> the model to train; ``previous`` is the previous phase's trained
        model (``None`` for the first phase).
    train_kwargs
        Arguments of the model's ``train`` (``max_epochs``, early stopping, ...), besides those
        the recipe gives (split, batch size, seed, device, callbacks, checkpoint).
    plan_kwargs
        The training plan's arguments (``train(plan_kwargs=...)``).
    """

    name: str
    build: Callable[[Any], Any]
    train_kwargs: dict = field(default_factory=dict)
    plan_kwargs: dict = field(default_factory=dict)


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
        group = trainer.dist
        if group.any(self.signal_name is not None):
            # Every rank stops at the same epoch, even those the signal did not reach (yet).
            names = [name for name in group.all_gather_object(self.signal_name) if name is not None]
            self.signal_name = names[0]
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
        if not trainer.dist.is_main:
            return  # the ranks' histories are the same: one line per epoch is enough
        row = trainer.history[-1]
        shown = ", ".join(f"{k} {row[k]:.4g}" for k in ("elbo_train", "elbo_validation") if k in row)
        seconds = time.perf_counter() - self._started if self._started is not None else float("nan")
        log.info("epoch %d/%d (%.2f s): %s", row["epoch"] + 1, trainer.max_epochs, seconds, shown)


def resume_path(checkpoint_dir: Path, run_fp: str) -> Path | None:
    """The checkpoint to resume from, or None; moves a checkpoint folder of another run aside."""
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
            stacklevel=4,
        )
    else:
        checkpoint_dir.rmdir()
    return None


def kept_checkpoint(checkpoint_dir: Path) -> str:
    """What a failed run leaves to resume from, for the error message."""
    last = checkpoint_dir / LAST_CKPT
    if not last.is_file():
        return "No epoch had completed, so no checkpoint was kept."
    return (
        f"The last checkpoint (written after a good epoch) is kept in {last}; training again with other parameters "
        f"(e.g. a lower lr) starts from scratch and moves it to {checkpoint_dir}.stale."
    )


def run(
    phases: Sequence[Phase],
    checkpoint_dir: str | os.PathLike,
    *,
    run_fingerprint: str,
    stamp: dict,
    finish: Callable[[Any, list[dict]], None],
    split,
    batch_size: int,
    seed: int,
    accelerator: str = "auto",
    enable_progress_bar: bool = False,
    checkpoint_every_seconds: float | None = None,
    mirror=None,
    logger=None,
    tracking: dict | None = None,
    log_every_n_steps: int | None = None,
):
    """Train ``phases`` one after the other with checkpoints, resume and the signal stop.

    Parameters
    ----------
    phases
        The run's phases (see :class:`Phase`), as the model class declares them.
    checkpoint_dir
        The run's checkpoint folder (created; not an output).
    run_fingerprint
        Names the run (see :func:`snakevi._digest.fingerprint`): a checkpoint folder with another
        one is moved aside to ``<folder>.stale``.
    stamp
        Written to ``fingerprint.json`` beside ``run_fingerprint`` (what the run was, for people).
    finish
        ``finish(model, history_rows)`` writes the outputs; it runs while the folder is still
        locked. ``history_rows``: every phase's rows in order, without ``epoch``, with ``phase``
        when there is more than one phase (:func:`history_csv` makes history.csv of them).
    split
        ``[train, validation, test]`` cell positions (``train(external_indexing=...)``).
    batch_size, seed, accelerator, enable_progress_bar
        Passed to every phase's ``train``.
    checkpoint_every_seconds
        Write ``last.ckpt`` after an epoch only when this many seconds have passed since the
        previous one (``None`` or 0: after every epoch); the last epoch, and the epoch a signal
        stops, are always written.
    mirror
        A :class:`snakevi.train.checkpoint_mirror.CheckpointMirror` of the folder in an object
        store (a cloud node's disk is lost with the node), or None: pulled before resuming when
        the folder has no checkpoint, given every checkpoint, and closed (its last upload
        waited for) before this returns or raises. Used by rank 0 only.
    logger, tracking
        Experiment trackers for every phase (``train(logger=...)``) and where their run is
        (``{"run_name", "run_key", "tags"}``): all phases log to one tracked run, a later
        phase's epochs and steps numbered on after the earlier ones'.
    log_every_n_steps
        How often the trackers get the step loss (``None``: ``train()``'s default).

    Returns
    -------
    The last phase's trained model.

    Raises
    ------
    TrainingInterrupted
        After SIGTERM/SIGINT, once the epoch's checkpoint is written (nothing is finished).
    NonFiniteLossError
        The loss or gradient became NaN/inf; the message says which checkpoint is kept.
    CheckpointFolderBusy
        Another trainer holds the folder; nothing was touched.
    """
    from snakevi.train.launched_group import launched_process_group

    ckpt_dir = Path(checkpoint_dir)
    fit = dict(split=split, batch_size=int(batch_size), seed=int(seed), accelerator=accelerator,
               enable_progress_bar=enable_progress_bar, checkpoint_every_seconds=checkpoint_every_seconds,
               logger=logger, tracking=dict(tracking or {}), log_every_n_steps=log_every_n_steps)
    # Under a launcher (torchrun, srun) every rank runs this; rank 0 alone locks the folder, decides
    # what to resume from and writes, and the other ranks follow its decisions.
    with launched_process_group(accelerator) as group:
        # One trainer per checkpoint folder, from before it is looked at (resumed from or moved
        # aside) until the outputs are written: a second one stops here, naming the first.
        with hold_checkpoint_folder(ckpt_dir) if group.is_main else contextlib.nullcontext():
            mirror = mirror if group.is_main else None
            if mirror is None:
                return _run_phases(group, phases, ckpt_dir, run_fingerprint, stamp, finish, fit)
            mirror.pull()
            try:
                return _run_phases(group, phases, ckpt_dir, run_fingerprint, stamp, finish,
                                   {**fit, "after_save": mirror.snapshot})
            finally:
                # After a SIGTERM stop too: the node may be gone soon, the checkpoint must be stored first.
                mirror.close()


def _run_phases(group, phases, ckpt_dir: Path, run_fingerprint: str, stamp: dict, finish, fit: dict):
    """:func:`run` once the folder is locked (by rank 0 under several processes)."""
    from snakevi.train.callbacks.nan_guard import NonFiniteLossError
    from snakevi.train.launched_group import from_rank_zero

    main = group.is_main
    ckpt_path = resume_path(ckpt_dir, run_fingerprint) if main else None
    ckpt_path = from_rank_zero(group, ckpt_path)
    created = not ckpt_dir.exists()
    if ckpt_path is not None and main:
        log.info("resuming from %s", ckpt_path)
    try:
        if main:
            # Inside the try: a full disk refusing the fingerprint leaves no empty folder behind either.
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            _write_json(ckpt_dir / FINGERPRINT_FILE, {"fingerprint": run_fingerprint, **stamp})
        model, rows, stopper, steps = None, [], None, 0
        for i, phase in enumerate(phases):
            phase_dir, phase_ckpt = ckpt_dir, ckpt_path
            if i > 0:
                phase_dir = ckpt_dir / phase.name
                phase_ckpt = _later_phase_folder(phase_dir, run_fingerprint, phase.name) if main else None
                phase_ckpt = from_rank_zero(group, phase_ckpt)
            offsets = {"epoch_offset": len(rows), "step_offset": steps}
            model, stopper = _fit(phase.build(model), phase, phase_dir, phase_ckpt,
                                  **{**fit, "tracking": {**fit["tracking"], **offsets}})
            rows += phase_history(model, phase.name if len(phases) > 1 else None)
            steps += getattr(getattr(model, "trainer", None), "global_step", 0)
            if stopper.signal_name is not None:
                break
    except BaseException as err:
        if main and created and not (ckpt_dir / LAST_CKPT).exists():
            # No epoch completed: leave no folder behind that looks like a run to resume.
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        if isinstance(err, NonFiniteLossError):
            raise NonFiniteLossError(f"{err} {kept_checkpoint(ckpt_dir)}") from err
        raise
    if stopper.signal_name is not None:
        raise TrainingInterrupted(
            f"Training received {stopper.signal_name} and stopped after epoch {len(model.history_records)}; the "
            f"checkpoint is in {ckpt_dir / LAST_CKPT}. Run the same step again (snakemake: rerun the "
            "workflow) to resume from it."
        )
    if main:
        finish(model, rows)
    return model


def _write_json(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1, allow_nan=False) + "\n")


def _later_phase_folder(phase_dir: Path, run_fp: str, name: str) -> Path | None:
    """Make a later phase's checkpoint folder (its own fingerprint); the checkpoint to resume from."""
    phase_fp = fingerprint(run_fp, name)
    ckpt_path = resume_path(phase_dir, phase_fp)
    phase_dir.mkdir(parents=True, exist_ok=True)
    _write_json(phase_dir / FINGERPRINT_FILE, {"fingerprint": phase_fp})
    if ckpt_path is not None:
        log.info("resuming the %s phase from %s", name, ckpt_path)
    return ckpt_path


def phase_history(model, phase: str | None) -> list[dict]:
    """The model's history rows without their epoch (history.csv numbers epochs on through the
    phases), tagged with ``phase`` when given."""
    rows = [{k: v for k, v in row.items() if k != "epoch"} for row in model.history_records]
    if phase is not None:
        for row in rows:
            row["phase"] = phase
    return rows


def history_csv(rows: list[dict]) -> str:
    """history.csv's text: ``epoch`` (0, 1, ... through the phases), ``phase`` when present, then the
    metrics in the order they were first logged; a metric missing (or NaN) in an epoch is left blank."""
    from snakevi.train.callbacks.csv_logger import history_to_csv

    numbered = [{"epoch": epoch, **{k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}}
                for epoch, row in enumerate(rows)]
    names = list(dict.fromkeys(key for row in rows for key in row))
    columns = (["phase"] if "phase" in names else []) + [c for c in names if c != "phase"]
    return history_to_csv(numbered, columns)


def _fit(model, phase: Phase, ckpt_dir: Path, ckpt_path: Path | None, *, split, batch_size, seed, accelerator,
         enable_progress_bar, checkpoint_every_seconds, logger=None, tracking=None, log_every_n_steps=None,
         after_save=None):
    """Train ``model`` for ``phase`` with checkpoints and the signal handler; ``(model, stopper)``."""
    from snakevi.train.callbacks import CSVLogger, ModelCheckpoint

    def saved(epoch: int) -> None:
        after_save(phase=phase.name, epochs=epoch + 1)

    checkpoint = ModelCheckpoint(str(ckpt_dir), save_last=True, save_best=False,
                                 every_n_seconds=checkpoint_every_seconds,
                                 after_save=None if after_save is None else saved)
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
            batch_size=batch_size,
            seed=seed,
            accelerator=accelerator,
            plan_kwargs=dict(phase.plan_kwargs),
            callbacks=[
                _LogEpochs(),
                # The history so far, for people watching a long run (history.csv comes at the end).
                CSVLogger(ckpt_dir / LIVE_HISTORY),
                checkpoint,
                stopper,
            ],
            enable_progress_bar=enable_progress_bar,
            ckpt_path=None if ckpt_path is None else str(ckpt_path),
            logger=logger,
            tracking=tracking,
            **({} if log_every_n_steps is None else {"log_every_n_steps": int(log_every_n_steps)}),
            **phase.train_kwargs,
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return model, stopper
