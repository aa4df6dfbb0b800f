"""``Trainer``: one explicit fit loop over epochs, with callbacks and exact resume.

Per epoch, in this order::

    set_epoch(epoch) on the loaders that have it
    on_train_epoch_start
    for each training minibatch (the first limit_train_batches):
        training_step (under autocast for mixed precision) -> backward
        every accumulate_grad_batches minibatches (and after the epoch's last one):
            [clip_grad_norm_] -> optimizer.step -> [plan.after_optimizer_step] -> on_train_batch_end
        stop the epoch here once max_steps optimizer steps are taken
    train metrics computed (one host sync)
    if this is a validation epoch:
        validation loop -> validation metrics -> [scheduler step on a validation metric]
        -> on_validation_epoch_end
    [scheduler step on a training metric]
    the epoch's row appended to history
    on_train_epoch_end
    stop if a callback set trainer.should_stop

Experiment trackers (``logger``) get every history row, the hyperparameters in ``hparams`` and
``train_loss_step`` every ``log_every_n_steps`` steps, on the main process only
(:class:`~snakevi.train.callbacks.ExperimentTracking`, run after every other callback).

``on_fit_start`` runs once before the first epoch (after a checkpoint is restored),
``on_fit_end`` after the loop, and ``on_exception`` when anything raised (then it re-raises).
Callbacks with ``runs_last = True`` run after the others in every hook.

A plan may own more than the module's optimizer (the adversarial plan trains a classifier with
its own): it then defines ``after_optimizer_step()``, run after each step of the module's
optimizer, and ``state_dict()``/``load_state_dict()``, saved in checkpoints under ``"plan"``.
Under DDP such a plan lists those modules in ``auxiliary_modules`` (broadcast from rank 0, their
BatchNorm over the whole minibatch) and takes the ranks' gradient averaging through
``set_gradient_averaging(average)``, to call after its own backward.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from typing import Any

import torch

from snakevi._constants import CHECKPOINT_FORMAT_VERSION
from snakevi.train.callbacks.nan_guard import NaNGuard
from snakevi.train.callbacks.progress import ProgressBar
from snakevi.train.checkpoint_io import write_checkpoint
from snakevi.train.device import move_batch, resolve_device
from snakevi.train.distributed import SINGLE_PROCESS, join_process_group
from snakevi.train.distributed_setup import (
    attach_plan,
    auxiliary_modules,
    check_ddp_plan,
    detach_plan,
    rank_device,
    shard_loaders,
    wants_ddp,
)
from snakevi.train.batch_limits import batches_to_use, check_limit
from snakevi.train.callbacks.experiment_tracking import ExperimentTracking
from snakevi.train.global_batch_norm import global_batch_norm
from snakevi.train.host_memory import keep_freed_host_memory
from snakevi.train.loggers import check_trackers, make_loggers
from snakevi.train.precision import autocast, grad_scaler, resolve_precision
from snakevi.train.reproducibility import deterministic_algorithms, get_rng_states, seed_everything
from snakevi.train.resume_state import restore_fit_state


class Trainer:
    """Runs a :class:`~snakevi.train.TrainingPlan` for up to ``max_epochs`` epochs on one device.

    Parameters
    ----------
    max_epochs
        Number of epochs to train for (a resumed run counts the epochs already done).
    accelerator
        ``"auto"`` (CUDA, else MPS, else CPU), ``"cpu"``, ``"cuda"`` (or ``"gpu"``) or ``"mps"``.
    devices
        ``"auto"``, ``1`` or ``[index]``: one device. An int N > 1 (or ``strategy="ddp"``): N
        processes, one device each (see ``strategy``).
    strategy
        ``"auto"``: DDP when ``devices`` is an int > 1, or when a launcher (torchrun, ``srun``)
        started this process as one of several (``WORLD_SIZE`` > 1); otherwise one process.
        ``"ddp"``: always DDP. Under DDP this process is one rank of torch's process group
        (:mod:`snakevi.train.distributed`): each rank trains on its shard of every minibatch
        (``batch_size`` cells per rank), gradients are averaged, BatchNorm normalises over the
        whole minibatch, metrics are summed over the ranks, and only rank 0 writes files.
    check_val_every_n_epoch
        Run validation after every n-th epoch. ``None`` (default, as in scvi-tools): never,
        unless a callback (``needs_validation``) or the plan's LR scheduler needs validation
        metrics, and then every epoch.
    gradient_clip_val
        Clip the gradient norm (``torch.nn.utils.clip_grad_norm_``) to this value.
    callbacks
        Callback objects (see :class:`~snakevi.train.callbacks.Callback`).
    enable_progress_bar
        Show one tqdm bar over epochs on stderr ("Epoch k/N", postfix ``train_loss``).
    seed
        Seed Python, NumPy and torch when ``fit`` starts. Seed before building the module as
        well (:func:`~snakevi.train.seed_everything`) to make its initial weights reproducible.
    deterministic
        Ask torch/cuDNN for deterministic kernels during ``fit`` (CPU runs are deterministic anyway).
    nan_guard
        Add :class:`~snakevi.train.callbacks.NaNGuard`, which stops with a clear error on a
        non-finite loss or gradient norm.
    precision
        ``"32"`` (default), ``"bf16-mixed"`` or ``"16-mixed"`` (CUDA; with a gradient scaler),
        as Lightning names them (:mod:`snakevi.train.precision`). Refused here when the device
        cannot run it.
    accumulate_grad_batches
        Take an optimizer step every k minibatches, on the mean of their gradients (each loss
        divided by k, as Lightning does), and after the last minibatch of an epoch. Plans that
        step an optimizer of their own (the adversarial plan) need 1.
    max_steps
        Stop once this many optimizer steps are taken, also in the middle of an epoch (that
        epoch's row then covers the minibatches it trained on). ``None`` or -1: no limit.
        Training stops at ``max_epochs`` or ``max_steps``, whichever comes first.
    limit_train_batches, limit_val_batches
        Use only the first minibatches of each epoch: an int (that many) or a float in [0, 1]
        (that fraction); ``limit_val_batches=0`` turns validation off (Lightning's semantics,
        :mod:`snakevi.train.batch_limits`). ``None``: all.
    logger
        Experiment trackers: a :class:`~snakevi.train.loggers.Logger`, a name
        (``"tensorboard"``, ``"mlflow"``), a ``{"type": name, ...}`` mapping or a list of those
        (:func:`~snakevi.train.loggers.make_loggers`); ``None``/``False``: none. Each is checked
        here (package installed, URI reachable), before any training.
    log_every_n_steps
        Log ``train_loss_step`` to the trackers every n optimizer steps (0: never).

    Attributes
    ----------
    current_epoch
        Index of the running epoch; after ``fit``, the number of epochs completed.
    global_step
        Optimizer steps taken.
    history
        One dict per epoch: ``"epoch"`` plus every metric logged that epoch.
    restored_epochs
        How many of the rows of ``history`` a resumed fit took from its checkpoint (else 0).
    train_loader, val_loader
        The loaders of the running (or last) ``fit``, for callbacks that act on them.
    logged_metrics
        The current epoch's dict (the last row of ``history`` once the epoch ended).
    should_stop, stop_reason
        Set by callbacks (e.g. early stopping) to end training after the current epoch.
    loggers
        The experiment trackers.
    hparams
        What the trackers record as the run's hyperparameters: this trainer's settings under
        ``"trainer"``; a model's ``train`` adds the model, plan, seed and data.
    tracking
        ``{"run_name", "run_key", "tags"}`` given to each tracker's ``start``: the workflow
        names the tracked run after its run and keys it by the run fingerprint, so a resumed
        job continues it.
    """

    def __init__(
        self,
        max_epochs: int = 400,
        accelerator: str = "auto",
        devices: int | str | Sequence[int] = "auto",
        strategy: str = "auto",
        check_val_every_n_epoch: int | None = None,
        gradient_clip_val: float | None = None,
        callbacks: Iterable | None = None,
        enable_progress_bar: bool = True,
        seed: int | None = None,
        deterministic: bool = False,
        nan_guard: bool = True,
        precision: str | int = "32",
        accumulate_grad_batches: int = 1,
        max_steps: int | None = None,
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None,
        logger=None,
        log_every_n_steps: int = 50,
    ) -> None:
        if not isinstance(max_epochs, int) or isinstance(max_epochs, bool) or max_epochs < 1:
            raise ValueError(f"max_epochs={max_epochs!r}: expected an int >= 1.")
        if check_val_every_n_epoch is not None and (
            not isinstance(check_val_every_n_epoch, int) or check_val_every_n_epoch < 1
        ):
            raise ValueError(f"check_val_every_n_epoch={check_val_every_n_epoch!r}: expected None or an int >= 1.")
        if gradient_clip_val is not None and not gradient_clip_val > 0:
            raise ValueError(f"gradient_clip_val={gradient_clip_val!r}: expected None or a number > 0.")
        for name, value, least in (("accumulate_grad_batches", accumulate_grad_batches, 1),
                                   ("log_every_n_steps", log_every_n_steps, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name}={value!r}: expected an int >= {least}.")
        if max_steps == -1:  # Lightning's "no limit"
            max_steps = None
        if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
            raise ValueError(f"max_steps={max_steps!r}: expected None (or -1) for no limit, or an int >= 1.")
        check_limit("limit_train_batches", limit_train_batches)
        check_limit("limit_val_batches", limit_val_batches)
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.accumulate_grad_batches = accumulate_grad_batches
        self.limit_train_batches = limit_train_batches
        self.limit_val_batches = limit_val_batches
        self.log_every_n_steps = log_every_n_steps
        self.devices = devices
        self.ddp = wants_ddp(strategy, devices)
        self.device = rank_device(accelerator, devices) if self.ddp else resolve_device(accelerator, devices)
        #: This process's place in a multi-process run (rank 0 of 1 when alone); set when fit starts.
        self.dist = SINGLE_PROCESS
        self.check_val_every_n_epoch = check_val_every_n_epoch
        self.gradient_clip_val = gradient_clip_val
        self.seed = seed
        self.deterministic = deterministic
        self.precision = resolve_precision(precision, self.device)
        self.loggers = make_loggers(logger)
        check_trackers(self.loggers)  # a missing package or an unreachable URI fails now, not after an epoch
        self.hparams: dict[str, Any] = {"trainer": {
            "max_epochs": max_epochs, "max_steps": max_steps, "precision": self.precision,
            "accumulate_grad_batches": accumulate_grad_batches, "gradient_clip_val": gradient_clip_val,
            "check_val_every_n_epoch": check_val_every_n_epoch, "limit_train_batches": limit_train_batches,
            "limit_val_batches": limit_val_batches, "seed": seed, "deterministic": deterministic,
            "accelerator": self.device.type,
        }}
        self.tracking: dict[str, Any] = {}
        defaults = ([NaNGuard()] if nan_guard else []) + ([ProgressBar()] if enable_progress_bar else [])
        tracking = [ExperimentTracking(self.loggers, log_every_n_steps)] if self.loggers else []
        given = defaults + list(callbacks or []) + tracking
        # A stable partition: order within each group is the order given.
        self.callbacks = [c for c in given if not getattr(c, "runs_last", False)] + [
            c for c in given if getattr(c, "runs_last", False)
        ]
        self.plan = None
        self.train_loader = self.val_loader = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler = None
        self.scaler = None
        self._clip_params: list[torch.nn.Parameter] = []
        self._reset_progress()

    def _reset_progress(self) -> None:
        self.current_epoch = 0
        self.global_step = 0
        self._epochs_completed = 0
        self.should_stop = False
        self.stop_reason: str | None = None
        self.history: list[dict[str, float]] = []
        self.restored_epochs = 0  # rows of history that came from the checkpoint resumed
        self.logged_metrics: dict[str, float] = {}
        self.validated = False  # whether the current epoch ran the validation loop
        self.grad_norm: torch.Tensor | None = None  # last step's norm when clipping, else None

    # -- the loop ----------------------------------------------------------------------------
    def fit(
        self,
        plan,
        train_loader: Iterable,
        val_loader: Iterable | None = None,
        ckpt_path: str | os.PathLike | None = None,
    ) -> None:
        """Train ``plan.module`` on ``train_loader``; validate on ``val_loader`` when scheduled.

        Parameters
        ----------
        plan
            A :class:`~snakevi.train.TrainingPlan`.
        train_loader, val_loader
            Re-iterables of minibatch dicts; ``set_epoch(epoch)`` is called before each epoch
            on loaders that have it, so a loader can derive its shuffling from (seed, epoch).
        ckpt_path
            A checkpoint written by :class:`~snakevi.train.callbacks.ModelCheckpoint`: restore
            weights, optimizer, scheduler, callbacks, history and RNG states, and continue.
            A run that had already stopped early stays stopped.
        """
        self._reset_progress()
        keep_freed_host_memory()  # a step's activations are made and freed again every step
        self.plan = plan
        self.train_loader, self.val_loader = train_loader, val_loader
        if self.accumulate_grad_batches > 1 and hasattr(plan, "after_optimizer_step"):
            raise ValueError(
                f"accumulate_grad_batches={self.accumulate_grad_batches}: {type(plan).__name__} steps an optimizer "
                "of its own after each step of the model's (e.g. the adversarial classifier), which does not "
                "accumulate; use accumulate_grad_batches=1 (or a larger batch size)."
            )
        if self.limit_val_batches == 0:
            val_loader = None  # validation off (Lightning's limit_val_batches=0)
        interval = self._validation_interval(plan, val_loader)
        if self.ddp:
            check_ddp_plan(plan, self.callbacks)
            self.dist = join_process_group(self.device, self.devices)
            shard_loaders(self.dist, train_loader, val_loader)
        with deterministic_algorithms(self.deterministic):
            if self.seed is not None:
                # Each rank its own stream (dropout, sampling); rank 0's is a single process's.
                seed_everything(self.seed + self.dist.rank)
            plan.module.to(self.device)
            self.dist.broadcast_module(plan.module)  # every rank starts from rank 0's weights
            plan.reset_metrics()
            self.optimizer, self.scheduler = plan.configure_optimizers()
            self.scaler = grad_scaler(self.precision, self.device)
            if self.dist.enabled:
                attach_plan(self.dist, plan)
            self._clip_params = [p for group in self.optimizer.param_groups for p in group["params"]]
            if ckpt_path is not None:
                restore_fit_state(self, ckpt_path, plan)
                if (self.stop_reason or "").startswith("max_steps=") and not self._max_steps_taken():
                    # Resumed with a higher max_steps: go on, from the epoch after the one that stopped.
                    self.should_stop, self.stop_reason = False, None
            batch_norm = (global_batch_norm(plan.module, *auxiliary_modules(plan)) if self.dist.enabled
                          else nullcontext())
            try:
                with batch_norm:
                    self._call("on_fit_start", plan)
                    while not self.should_stop and self.current_epoch < self.max_epochs and not self._max_steps_taken():
                        self._run_epoch(plan, train_loader, val_loader, interval)
                    self._call("on_fit_end", plan)
            except BaseException as exc:
                self._call("on_exception", plan, exc)
                raise
            finally:
                if self.dist.enabled:
                    detach_plan(plan)

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and logs: always alone, rank 0 under DDP."""
        return self.dist.is_main

    def _run_epoch(self, plan, train_loader, val_loader, interval: int | None) -> None:
        epoch = self.current_epoch
        self.logged_metrics = {"epoch": epoch}
        self.validated = False
        for loader in (train_loader, val_loader):
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)
        plan.module.train()
        self._call("on_train_epoch_start", plan)
        after_step = getattr(plan, "after_optimizer_step", None)
        limit = batches_to_use("limit_train_batches", self.limit_train_batches, train_loader)
        accumulate = self.accumulate_grad_batches
        n_batches = pending = 0
        loss = None
        for batch_idx, batch in enumerate(train_loader):
            if limit is not None and batch_idx >= limit:
                break
            if pending == 0:
                # Before the group's first backward (not after the step): callbacks read the gradients.
                self.optimizer.zero_grad(set_to_none=True)
            with autocast(self.precision, self.device):
                loss = plan.training_step(
                    move_batch(batch, self.device), batch_idx, epoch=epoch, global_step=self.global_step
                )
            self._backward(loss / accumulate if accumulate > 1 else loss)
            pending += 1
            n_batches += 1
            if pending == accumulate:
                pending = 0
                self._optimizer_step(after_step)
                self._call("on_train_batch_end", plan, loss.detach(), batch_idx)
                if self._max_steps_taken():
                    break
        if pending:  # the epoch's last, smaller group of minibatches
            self._optimizer_step(after_step)
            self._call("on_train_batch_end", plan, loss.detach(), n_batches - 1)
        if n_batches == 0:
            raise ValueError(
                f"train_loader yielded no minibatch in epoch {epoch}; check that the training split "
                "is not empty and that drop_last does not drop every batch."
            )
        self.logged_metrics.update(plan.train_epoch_metrics())
        if interval is not None and (epoch + 1) % interval == 0:
            self._validate(plan, val_loader, epoch)
            if self.scheduler is not None and plan.scheduler_phase == "validation":
                plan.lr_scheduler_step(self.scheduler, self.logged_metrics)
            self._call("on_validation_epoch_end", plan)
        if self.scheduler is not None and plan.scheduler_phase == "train":
            plan.lr_scheduler_step(self.scheduler, self.logged_metrics)
        if self._max_steps_taken() and not self.should_stop:
            self.should_stop = True
            self.stop_reason = f"max_steps={self.max_steps} reached"
        self.history.append(self.logged_metrics)
        self._epochs_completed += 1
        self._call("on_train_epoch_end", plan)
        self.current_epoch += 1

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def _optimizer_step(self, after_step) -> None:
        """Average (DDP), unscale (float16), clip, step; then the plan's own step and the count."""
        self.dist.average_gradients(self._clip_params)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.gradient_clip_val is not None:
            self.grad_norm = torch.nn.utils.clip_grad_norm_(self._clip_params, self.gradient_clip_val)
        if self.scaler is not None:
            if self.grad_norm is None:
                self.grad_norm = torch.nn.utils.get_total_norm([p.grad for p in self._clip_params if p.grad is not None])
            # An overflowing float16 step is skipped by the scaler, by design: not a NaN to stop on.
            self.grad_norm = torch.where(torch.isfinite(self.grad_norm), self.grad_norm, 0.0)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if after_step is not None:
            after_step()
        self.global_step += 1

    def _max_steps_taken(self) -> bool:
        return self.max_steps is not None and self.global_step >= self.max_steps

    def _validate(self, plan, val_loader, epoch: int) -> None:
        plan.module.eval()
        limit = batches_to_use("limit_val_batches", self.limit_val_batches, val_loader)
        with torch.no_grad():
            for batch_idx, batch in enumerate(val_loader):
                if limit is not None and batch_idx >= limit:
                    break
                with autocast(self.precision, self.device):
                    plan.validation_step(
                        move_batch(batch, self.device), batch_idx, epoch=epoch, global_step=self.global_step
                    )
        plan.module.train()
        self.logged_metrics.update(plan.validation_epoch_metrics())
        self.validated = True

    def _validation_interval(self, plan, val_loader) -> int | None:
        """Every how many epochs to validate (None: never); error if validation is needed but impossible."""
        needers = [type(c).__name__ for c in self.callbacks if getattr(c, "needs_validation", False)]
        if getattr(plan, "needs_validation", False):
            needers.append(f"{type(plan).__name__}(lr_scheduler_metric={plan.lr_scheduler_metric!r})")
        if val_loader is None:
            if needers:
                raise ValueError(
                    f"{', '.join(needers)} monitor a validation metric but fit() got val_loader=None. "
                    "Pass a validation loader (e.g. train_size < 1), or monitor a training metric such as 'elbo_train'."
                )
            return None
        if self.check_val_every_n_epoch is not None:
            return self.check_val_every_n_epoch
        return 1 if needers else None

    def _call(self, hook: str, plan, *args) -> None:
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if method is not None:
                method(self, plan, *args)

    # -- logging -----------------------------------------------------------------------------
    def log(self, name: str, value: float | torch.Tensor) -> None:
        """Add ``name = value`` to the current epoch's row (a tensor is read back once, here)."""
        if name == "epoch":
            raise ValueError("'epoch' is written by the trainer; log the metric under another name.")
        if isinstance(value, torch.Tensor):
            value = value.item()
        self.logged_metrics[name] = float(value)

    # -- checkpoints -------------------------------------------------------------------------
    def _callback_keys(self) -> list[tuple[str, Any]]:
        """``(key, callback)``: the class name, plus ``[i]`` when that class appears more than once."""
        names = [type(c).__name__ for c in self.callbacks]
        seen: dict[str, int] = {}
        keyed = []
        for name, callback in zip(names, self.callbacks):
            k = seen.get(name, 0)
            seen[name] = k + 1
            keyed.append((f"{name}[{k}]" if names.count(name) > 1 else name, callback))
        return keyed

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything needed to continue this fit exactly, as a ``weights_only``-loadable dict."""
        if self.plan is None or self.optimizer is None:
            raise RuntimeError("checkpoint_state() needs a running fit(); call it from a callback.")
        return {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "epoch": self._epochs_completed,
            "global_step": self.global_step,
            "module": self.plan.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            # float16 training's loss scale (None otherwise).
            "grad_scaler": None if self.scaler is None else self.scaler.state_dict(),
            "plan": self.plan.state_dict() if hasattr(self.plan, "state_dict") else {},
            "callbacks": {key: cb.state_dict() for key, cb in self._callback_keys() if hasattr(cb, "state_dict")},
            "history": [dict(row) for row in self.history],
            "should_stop": self.should_stop,
            "stop_reason": self.stop_reason,
            "rng": get_rng_states(self.device),
            # Under DDP every rank's own RNG states (dropout, sampling), in rank order.
            "rng_ranks": self.dist.all_gather_object(get_rng_states(self.device)) if self.dist.enabled else [],
        }

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write :meth:`checkpoint_state` to ``path`` atomically, with its SHA-256 beside it.

        Under DDP every rank calls it (the state gathers each rank's RNG states); rank 0 writes.
        """
        state = self.checkpoint_state()
        if self.is_main:
            write_checkpoint(state, path)
