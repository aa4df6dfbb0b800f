"""Step 3, train: prepared arrays + registry + parameters -> ``model/`` and ``history.csv``.

The training recipe (:mod:`snakevi.train.recipe`) does the work: checkpoints in a folder
outside the declared outputs (``results/{run}/checkpoints/`` in the workflow), so a killed or
failed job resumes when run again; reuse only for the same *run fingerprint* (registry, prepared
split and loader, model parameters, training parameters, seed, model class), a folder of another
run moved aside to ``<folder>.stale``; ``history.live.csv`` rewritten after every epoch; on
SIGTERM a checkpoint, then :class:`TrainingInterrupted` (exit status 3); a non-finite loss
stops with the epoch, step and metric, keeping the last good checkpoint; one trainer per folder
(``.<folder>.lock`` beside it). The model class (``model_class``, see ``snakevi.model.MODELS``)
declares its phases: scanvi trains scVI, then scANVI from it. This step reads the inputs,
asks the class for its phases and writes the outputs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from snakevi._constants import DEFAULT_CHECKPOINT_SECONDS
from snakevi.steps._io import StepError, write_npy_atomic, write_text_atomic
from snakevi.steps.tracked_run import attach_outputs
from snakevi.train.recipe import TrainingInterrupted  # noqa: F401 - the scripts and the command catch it here

log = logging.getLogger(__name__)


def train(
    prepared_dir: str | os.PathLike,
    registry_json: str | os.PathLike,
    model_out: str | os.PathLike,
    history_out: str | os.PathLike,
    *,
    latent_out: str | os.PathLike | None = None,
    model_class: str = "scvi",
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_store: str | None = None,
    model_params: dict | None = None,
    train_params: dict | None = None,
    seed: int = 0,
    accelerator: str = "auto",
    threads: int | None = None,
    enable_progress_bar: bool = False,
    checkpoint_every_seconds: float | None = DEFAULT_CHECKPOINT_SECONDS,
    devices: int | None = None,
    nodes: int = 1,
    launcher: str = "auto",
    logger=None,
    log_every_n_steps: int | None = None,
    run_name: str | None = None,
):
    """Train a model on a prepared folder and save the model and its history.

    Parameters
    ----------
    prepared_dir, registry_json
        Outputs of the prepare and register steps.
    model_out
        Model folder to write (``model.save``; read back with ``snakevi.model.load_model``).
    history_out
        Per-epoch metrics as CSV (one row per epoch, scvi-tools' metric names).
    latent_out
        If given, also write the latent representation of every prepared cell (the posterior
        mean, ``get_latent_representation()``; cells x ``n_latent`` float32, in the data's cell
        order) as a ``.npy`` file. The model is in memory here, so this costs a few seconds
        less than the export step loading it again (it then needs no torch).
    model_class
        A name in ``snakevi.model.MODELS``: ``"scvi"``, ``"linear_scvi"`` or ``"scanvi"``
        (scVI is trained first, then scANVI is built from it, ``SCANVI.from_scvi_model``, and
        trained with ``train_params["scanvi"]``, as scvi-tools recommends; the registry must
        have a labels key and an unlabeled category). A later phase checkpoints to
        ``<checkpoint_dir>/<phase>/``, so every phase resumes; ``history.csv`` then holds every
        phase's rows, told apart by its ``phase`` column.
    checkpoint_dir
        Where checkpoints go (default: ``checkpoints/`` beside ``model_out``); not an output.
    checkpoint_store
        An ``s3://bucket/prefix`` where the checkpoint folder is mirrored (the workflow gives
        one under its default storage): on a node without a checkpoint the stored one is
        resumed from, and each new checkpoint is uploaded in the background
        (:mod:`snakevi.train.checkpoint_mirror`), so a job killed with its node (a spot
        reclaim) resumes on another. None: the folder stays on this machine.
    model_params
        The model class's constructor parameters (``n_latent``, ``n_hidden``, ``gene_likelihood``, ...).
    train_params
        The config's ``train`` section, grouped as scvi-tools' ``train(..., plan_kwargs=...)``:
        ``max_epochs``, early stopping, ``check_val_every_n_epoch``, ``gradient_clip_val``,
        ``adversarial`` at the top; ``plan: {lr, weight_decay, n_epochs_kl_warmup,
        reduce_lr_on_plateau, ...}``; a later phase's section (``scanvi: {max_epochs,
        classification_ratio, n_samples_per_label}``). See :mod:`snakevi.model.phases`.
    seed
        Seed of the weights, dropout and minibatch order (the split was fixed by prepare).
    accelerator
        ``"cpu"``, ``"cuda"``/``"gpu"`` or ``"auto"``. On CUDA the prepared arrays are copied to
        the GPU once and minibatches are densified there when they take under half of its free
        memory (``train(data_on_device="auto")``; the log says so).
    threads
        torch CPU threads (``None``: torch's default).
    checkpoint_every_seconds
        Write ``last.ckpt`` after an epoch only when this many seconds have passed since the
        previous one (``None`` or 0: after every epoch). The last epoch, and the epoch a signal
        stops, are always written; a hard kill loses at most this much training.
    devices, nodes
        Train with ``devices`` processes on each of ``nodes`` nodes (one GPU each on CUDA), as one
        DDP run (:mod:`snakevi.train.distributed`). The prepared ``batch_size`` is per process, as
        in scvi-tools: N processes take steps of N x ``batch_size`` cells. ``None``: one process,
        or as many as the launcher started when torchrun/srun started this one. With more than
        one, this process starts the ranks (``launcher``) and waits for them; rank 0 writes the
        outputs. A run's checkpoints resume only with the same number of processes.
    launcher
        How the ranks start: ``"local"`` (processes on this machine), ``"srun"`` (inside a SLURM
        allocation; needed for ``nodes`` > 1), ``"torchrun"``, or ``"auto"`` (srun in a SLURM job,
        else local). See :mod:`snakevi.steps.train_launch`.
    logger
        Experiment trackers (the config's ``train.logger``: ``"tensorboard"``, ``{"type":
        "mlflow", "tracking_uri": ...}``, or a list; see :func:`snakevi.train.loggers.make_loggers`).
        The run is one tracked run, named ``run_name`` and found again by its run fingerprint, so
        a resumed job continues it; on success the model folder and history.csv are attached as
        artifacts (MLflow). TensorBoard's event files go to ``tensorboard/<run_name>/`` beside
        the run's folder (``results/tensorboard/<run>/``) unless the logger names a ``save_dir``. Checked before any data is read:
        a missing package or an unreachable tracking URI stops here, nothing written.
    log_every_n_steps
        How often the trackers get ``train_loss_step`` (``None``: ``train()``'s default, 50).
        Given here rather than in ``train_params`` it changes no fingerprint, as the logger.
    run_name
        The tracked run's name (default: the folder holding ``model_out``, the workflow's run).

    Returns
    -------
    The trained model (of the last phase); None when the ranks trained in processes of their own
    (the model is in ``model_out``).
    """
    from snakevi.data import registry_from_json
    from snakevi.data.prepared import load_prepared, read_loader_spec, read_split
    from snakevi.model.phases import ModelParameterError, check_train_config, flat_view
    from snakevi.model.registry import model_class as registered_class

    model_params = dict(model_params or {})
    train_params = dict(train_params or {})
    try:
        cls = registered_class(model_class)
        check_train_config(cls, train_params)
    except ValueError as err:
        raise StepError(str(err)) from err
    registry = registry_from_json(registry_json)
    try:
        cls.check_training_registry(registry, registry_json)
    except ValueError as err:
        raise StepError(str(err)) from err
    run_name = run_name or Path(model_out).resolve().parent.name
    trackers = _trackers(logger, model_out)
    _check_precision(train_params, accelerator)
    processes = _processes(devices, nodes)
    if processes is None:
        # Checked above once, not in every rank: now start the ranks, each running this step.
        from snakevi.steps.train_launch import launch

        # locals(): this call's own arguments (and what was derived from them so far).
        launch(_rank_arguments(locals()), devices=int(devices), nodes=int(nodes), launcher=launcher, threads=threads,
               accelerator=accelerator)
        return None
    spec = read_loader_spec(prepared_dir)
    data = load_prepared(prepared_dir, registry)
    split = read_split(prepared_dir)
    # torch only now: inputs that do not fit are refused without its import time.
    import torch

    from snakevi._digest import fingerprint
    from snakevi.train import recipe
    from snakevi.train.callbacks.nan_guard import NonFiniteLossError
    from snakevi.train.checkpoint_store import CheckpointStoreError

    if threads:
        torch.set_num_threads(int(threads))
    # The flat view of the train section: the fingerprint of a run is the one it had before the
    # section was grouped, so its checkpoints carry over.
    # One process keeps its old fingerprint; N processes are another run (other random streams), whose
    # checkpoints resume only with N processes.
    parts = [spec["registry_sha256"], spec["loader"], spec.get("split_sizes"), model_params,
             flat_view(cls, train_params), int(seed), model_class] + ([{"processes": processes}] if processes > 1 else [])
    run_fp = fingerprint(*parts)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else Path(model_out).parent / "checkpoints"
    phases = cls.training_phases(data, seed=int(seed), model_params=model_params, train_params=train_params)
    mirror = _checkpoint_mirror(ckpt_dir, checkpoint_store)

    def finish(model, history_rows):
        model.save(model_out, overwrite=True)
        write_text_atomic(history_out, recipe.history_csv(history_rows))
        log.info("trained %d epochs -> %s, %s", len(history_rows), model_out, history_out)
        if latent_out is not None:
            import numpy as np

            latent = np.asarray(model.get_latent_representation(batch_size=1024), dtype=np.float32)
            write_npy_atomic(latent_out, latent)
            log.info("latent representation (%d cells x %d dims) -> %s", *latent.shape, latent_out)
        attach_outputs(trackers, model_out, history_out)  # MLflow: artifacts, and the tag the report finds it by

    try:
        return recipe.run(
            phases, ckpt_dir, run_fingerprint=run_fp,
            stamp={"model_params": model_params, "train_params": train_params, "seed": int(seed)},
            finish=finish, split=split, batch_size=int(spec["loader"]["batch_size"]), seed=int(seed),
            accelerator=accelerator, enable_progress_bar=enable_progress_bar,
            checkpoint_every_seconds=checkpoint_every_seconds, mirror=mirror, logger=trackers,
            log_every_n_steps=log_every_n_steps,
            tracking={"run_name": run_name, "run_key": run_fp,
                      "tags": {"snakevi.run": run_name, "snakevi.model_class": model_class, "snakevi.seed": int(seed)},
                      "hparams": {"config": {"model_class": model_class, "seed": int(seed), "model": model_params,
                                             "train": train_params}}},
        )
    except (NonFiniteLossError, ModelParameterError, CheckpointStoreError) as err:
        raise StepError(str(err)) from err


def _trackers(logger, model_out) -> list:
    """The run's experiment trackers, each checked (package, URI) before anything is read or written."""
    if not logger:
        return []
    from snakevi.train.loggers import TrackerUnavailable, check_trackers, make_loggers

    try:
        # results/tensorboard/<run>/: `tensorboard --logdir results/tensorboard` lists the runs by name;
        # W&B's runs in results/wandb/.
        trackers = make_loggers(logger, log_root=Path(model_out).resolve().parent.parent)
        check_trackers(trackers)
    except (ValueError, TrackerUnavailable) as err:
        raise StepError(f"train.logger: {err}") from err
    return trackers


def _check_precision(train_params: dict, accelerator: str) -> None:
    """Refuse ``train.precision`` the device cannot run before any data is read."""
    if "precision" not in train_params:
        return
    from snakevi.train.device import resolve_device
    from snakevi.train.precision import resolve_precision

    try:
        resolve_precision(train_params["precision"], resolve_device(accelerator, "auto"))
    except ValueError as err:
        raise StepError(f"train.{err}") from err


def _checkpoint_mirror(ckpt_dir: Path, checkpoint_store: str | None):
    """The object-store mirror of the checkpoint folder, or None (no store, or one snakevi cannot use)."""
    from snakevi.train.checkpoint_mirror import CheckpointMirror
    from snakevi.train.checkpoint_store import is_store_url, open_store

    if not is_store_url(checkpoint_store):
        return None
    try:
        store = open_store(checkpoint_store)
    except ValueError as err:
        log.warning("%s", err)
        return None
    return CheckpointMirror(ckpt_dir, store)


def _processes(devices: int | None, nodes: int) -> int | None:
    """How many processes this run trains with, or None when this process must start them."""
    from snakevi.train.launcher_env import environment_world

    for name, value in (("devices", devices), ("nodes", nodes)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise StepError(f"{name}={value!r}: expected a whole number >= 1 (processes per node, nodes).")
    world = environment_world()
    asked = None if devices is None else devices * nodes
    if world is None:
        return None if asked is not None and asked > 1 else 1
    if asked is not None and asked != world[1]:
        raise StepError(
            f"devices={devices} x nodes={nodes} = {asked} processes, but the launcher started {world[1]} "
            f"(WORLD_SIZE / SLURM_NTASKS); start {asked}, or leave devices out to train with as many as started."
        )
    return world[1]


def _rank_arguments(args: dict) -> list[str]:
    """The ``snakevi train`` arguments with which every rank runs this step (:func:`train`'s own)."""
    import json

    def path(value):
        return str(Path(value).resolve())

    argv = ["--prepared", path(args["prepared_dir"]), "--registry", path(args["registry_json"]),
            "--model", path(args["model_out"]), "--history", path(args["history_out"]),
            "--model-class", args["model_class"], "--seed", str(int(args["seed"])),
            "--accelerator", args["accelerator"], "--devices", str(args["devices"]), "--nodes", str(args["nodes"]),
            "--model-params", json.dumps(args["model_params"]), "--train-params", json.dumps(args["train_params"]),
            "--checkpoint-every-seconds", str(args["checkpoint_every_seconds"] or 0)]
    if args["latent_out"] is not None:
        argv += ["--latent", path(args["latent_out"])]
    if args["checkpoint_dir"] is not None:
        argv += ["--checkpoint-dir", path(args["checkpoint_dir"])]
    if args["checkpoint_store"] is not None:
        argv += ["--checkpoint-store", str(args["checkpoint_store"])]
    if args["logger"]:
        argv += ["--logger", json.dumps(args["logger"]), "--run-name", args["run_name"]]
    if args["log_every_n_steps"] is not None:
        argv += ["--log-every-n-steps", str(int(args["log_every_n_steps"]))]
    return argv
