"""``BaseModelClass``: the user API that ties registered data to a module and a trainer.

A model owns three things, passed explicitly: the registry (how data maps to tensors), the
module (the network) and its training history. There is no class-level store: the registry
travels on the AnnData (``adata.uns``) or inside a :class:`~snakevi.data.CellData`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from snakevi.model import persistence
# history_columns is imported for its old import path (snakevi.model.base.history_columns).
from snakevi.model.history import continued_history, history_columns, history_frame  # noqa: F401
from snakevi.model.phases import TrainingDeclaration

if TYPE_CHECKING:  # pragma: no cover - imports for type checkers only
    import pandas as pd
    import torch
    from anndata import AnnData

    from snakevi.data import CellData


class BaseModelClass(TrainingDeclaration):
    """Base for models: registry + module + history, with ``train``, ``save`` and ``load``.

    Subclasses set ``_module_cls`` and implement :meth:`_module_kwargs` (how registry
    summaries and user parameters become module constructor arguments).

    Parameters
    ----------
    adata
        A registered AnnData (see ``setup_anndata``) or a :class:`~snakevi.data.CellData`.
    seed
        Seeds the module's weight initialisation and is the default seed of :meth:`train`
        (data split, shuffling, dropout). Same seed, same data, same parameters: same model.
    **model_kwargs
        Passed to the module (see the subclass).
    """

    _module_cls: type | None = None

    def __init__(self, adata: AnnData | CellData, *, seed: int | None = 0, **model_kwargs: Any) -> None:
        from snakevi.data import CellData, get_registry

        if isinstance(adata, CellData):
            self.adata, self._data, self.registry = None, adata, adata.registry
        else:
            self.adata, self._data, self.registry = adata, None, get_registry(adata)
        self._check_model_name(self.registry)
        self.seed = seed
        self.init_params = {"seed": seed, **model_kwargs}
        self.module = self._build_module(seed, model_kwargs)
        self.is_trained = False
        self.history_records = []
        self.train_indices = self.validation_indices = self.test_indices = None
        self.stop_reason: str | None = None

    @property
    def history(self) -> pd.DataFrame:
        """Per-epoch metrics (scvi-tools' names), one row per epoch, indexed by ``epoch``.

        Built from :attr:`history_records` on access, so that training and saving a model never
        import pandas (half a second of every train job).
        """
        if self._history_frame is None:
            self._history_frame = history_frame(self._history_records)
        return self._history_frame

    @property
    def history_records(self) -> list[dict]:
        """The history as plain rows, one dict per epoch (``epoch`` included); read-only copies."""
        return [dict(row) for row in self._history_records]

    @history_records.setter
    def history_records(self, rows: list[dict]) -> None:
        self._history_records = [dict(row) for row in rows]
        self._history_frame = None

    # ---- construction -------------------------------------------------------------------
    def _module_kwargs(self, model_kwargs: dict) -> dict:
        raise NotImplementedError

    def _build_module(self, seed: int | None, model_kwargs: dict):
        import torch

        kwargs = self._module_kwargs(model_kwargs)
        # Seed only the initialisation, inside a forked RNG, so building a model never
        # changes the caller's global random state.
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            return self._module_cls(**kwargs)

    @classmethod
    def _check_model_name(cls, registry: dict) -> None:
        name = registry.get("model_name")
        if name is not None and name != cls.__name__ and name not in getattr(cls, "_compatible_registries", ()):
            raise ValueError(
                f"The data was registered with {name}.setup_anndata, not {cls.__name__}.setup_anndata; "
                f"call {cls.__name__}.setup_anndata(adata, ...) first."
            )

    # ---- data ----------------------------------------------------------------------------
    @property
    def data(self) -> CellData:
        """Training data as a :class:`~snakevi.data.CellData` (built once, on first use)."""
        if self._data is None:
            from snakevi.data import CellData

            self._data = CellData.from_anndata(self.adata, self.registry)
        return self._data

    def _resolve_data(self, adata: AnnData | CellData | None) -> CellData:
        """The data for an inference call: the model's own, or new data checked against the registry."""
        from snakevi.data import CellData, transfer_setup

        if adata is None or adata is self.adata:
            return self.data
        if isinstance(adata, CellData):
            return adata
        registry = transfer_setup(adata, self.registry)
        return CellData.from_anndata(adata, registry)

    @property
    def device(self) -> torch.device:
        """Device the module lives on."""
        return self.module.device

    @property
    def summary(self) -> dict:
        """The registry summary (n_obs, n_vars, n_batch, n_labels, covariate counts)."""
        return self.registry["summary"]

    # ---- training ------------------------------------------------------------------------
    def train(
        self,
        max_epochs: int | None = None,
        *,
        accelerator: str = "auto",
        devices: int | str | Sequence[int] = "auto",
        strategy: str = "auto",
        train_size: float | None = None,
        validation_size: float | None = None,
        shuffle_set_split: bool = True,
        external_indexing: Sequence[Sequence[int]] | None = None,
        batch_size: int = 128,
        data_on_device: bool | str = "auto",
        early_stopping: bool = False,
        early_stopping_monitor: str = "elbo_validation",
        early_stopping_patience: int = 45,
        early_stopping_min_delta: float = 0.0,
        early_stopping_warmup_epochs: int = 0,
        early_stopping_mode: str = "min",
        check_val_every_n_epoch: int | None = None,
        gradient_clip_val: float | None = None,
        learning_rate_monitor: bool = False,
        seed: int | None = None,
        deterministic: bool = False,
        plan_kwargs: dict | None = None,
        callbacks: list | None = None,
        enable_progress_bar: bool = True,
        ckpt_path: str | os.PathLike | None = None,
        datasplitter_kwargs: dict | None = None,
        precision: str | int = "32",
        accumulate_grad_batches: int = 1,
        max_steps: int | None = None,
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None,
        log_every_n_steps: int = 50,
        logger=None,
        tracking: dict | None = None,
    ) -> BaseModelClass:
        """Train the model.

        Parameters
        ----------
        max_epochs
            Passes through the data. ``None`` uses scvi-tools' heuristic
            ``max(1, min(round(20000 / n_obs * 400), 400))``.
        accelerator, devices, strategy
            ``"auto"`` picks CUDA, then MPS, then CPU. ``devices=N`` (N > 1) trains with N
            processes, one device each (DDP; ``batch_size`` cells per process and minibatch):
            under torchrun or ``srun`` this process is one of them; started alone, the model
            starts them itself and takes rank 0's result (see :class:`~snakevi.train.Trainer`).
        train_size, validation_size
            Fractions of cells; ``None`` means 0.9 for training and the rest for validation.
        shuffle_set_split
            Randomly assign cells to the sets (seeded); otherwise split in order.
        external_indexing
            Explicit ``[train, validation, test]`` cell positions, overriding the sizes
            (the workflow's prepare step writes them).
        batch_size
            Cells per minibatch.
        data_on_device
            Copy the data to the training device once and gather minibatches there, instead of
            gathering each on the host and copying it over. ``"auto"``: on for CUDA when the
            data takes under half of the GPU's free memory (otherwise off, with a warning);
            ``True``: always (also on the CPU); ``False``: never. The minibatches, and so the
            results, are the same either way.
        early_stopping, early_stopping_*
            Stop when ``early_stopping_monitor`` has not improved by ``min_delta`` for
            ``patience`` validation checks, ignoring the first ``warmup_epochs``.
        check_val_every_n_epoch
            ``None`` runs validation only when a callback, early stopping or the LR scheduler
            needs it (then every epoch).
        gradient_clip_val
            Clip the gradient norm to this value.
        learning_rate_monitor
            Log ``lr-<Optimizer>`` every epoch (on automatically with ``reduce_lr_on_plateau``).
        seed
            Seed for the split, shuffling and dropout; defaults to the model's ``seed``.
        deterministic
            Ask torch/cuDNN for deterministic kernels while training (``Trainer(deterministic=...)``);
            matters on GPUs only (see the README's "Reproducibility").
        plan_kwargs
            Passed to :class:`~snakevi.train.TrainingPlan` (``lr``, ``weight_decay``,
            ``n_epochs_kl_warmup``, ``reduce_lr_on_plateau``, ...).
        callbacks
            Extra callback objects (see :mod:`snakevi.train.callbacks`).
        enable_progress_bar
            Show one tqdm bar with the per-epoch training loss.
        ckpt_path
            Resume from this checkpoint (written by ``ModelCheckpoint``); training continues
            exactly where it stopped.
        datasplitter_kwargs
            Further arguments of the model's data splitter (e.g. ``drop_last``).
        precision, accumulate_grad_batches, max_steps, limit_train_batches, limit_val_batches
            As Lightning's (scvi-tools passes them on to it): see :class:`~snakevi.train.Trainer`.
        logger, log_every_n_steps
            Experiment trackers (``"tensorboard"``, ``"mlflow"``, a mapping with ``type``, or
            :class:`~snakevi.train.loggers.Logger` objects) and how often they get the step
            loss. They record the history, and the model, plan, trainer, seed and data
            (registry fingerprint) as hyperparameters.
        tracking
            ``{"run_name", "run_key", "tags"}`` for the trackers (see ``Trainer.tracking``).

        Returns
        -------
        The model itself, so calls can be chained.
        """
        arguments = {k: v for k, v in locals().items() if k not in ("self", "devices")}  # before any other name
        from snakevi.data.device_loader import resolve_data_on_device
        from snakevi.model.train_processes import needs_spawn, train_in_processes
        from snakevi.train import EarlyStopping, LearningRateMonitor, Trainer

        if needs_spawn(devices):  # devices=N from a plain session: N processes train, this model gets the result
            if max_epochs is None:  # decided here: the ranks' rebuilt models do not know how this one was made
                arguments["max_epochs"] = self._default_max_epochs(len(self.data))
            return train_in_processes(self, devices, arguments)
        seed = self.seed if seed is None else seed
        data = self.data
        if max_epochs is None:
            max_epochs = self._default_max_epochs(len(data))
        splitter = self._make_splitter(
            data,
            train_size=train_size,
            validation_size=validation_size,
            batch_size=batch_size,
            shuffle_set_split=shuffle_set_split,
            seed=seed,
            external_indexing=external_indexing,
            **(datasplitter_kwargs or {}),
        )
        plan_kwargs = dict(plan_kwargs or {})
        plan = self._make_plan(plan_kwargs, seed)
        plan.n_obs_training = len(splitter.train_idx)
        plan.n_obs_validation = len(splitter.val_idx)

        all_callbacks = list(callbacks or [])
        if early_stopping:
            if len(splitter.val_idx) == 0 and early_stopping_monitor.endswith("_validation"):
                raise ValueError(
                    f"early_stopping monitors {early_stopping_monitor!r} but the validation set is empty "
                    f"(train_size={train_size}, validation_size={validation_size}); leave validation cells "
                    "(e.g. train_size=0.9) or turn early stopping off."
                )
            all_callbacks.append(
                EarlyStopping(
                    monitor=early_stopping_monitor,
                    patience=early_stopping_patience,
                    min_delta=early_stopping_min_delta,
                    warmup_epochs=early_stopping_warmup_epochs,
                    mode=early_stopping_mode,
                )
            )
        if learning_rate_monitor or plan_kwargs.get("reduce_lr_on_plateau", False):
            all_callbacks.append(LearningRateMonitor())
        all_callbacks += self._required_callbacks(splitter, all_callbacks)

        trainer = Trainer(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            strategy=strategy,
            check_val_every_n_epoch=check_val_every_n_epoch,
            gradient_clip_val=gradient_clip_val,
            callbacks=all_callbacks,
            enable_progress_bar=enable_progress_bar,
            seed=seed,
            deterministic=deterministic,
            precision=precision,
            accumulate_grad_batches=accumulate_grad_batches,
            max_steps=max_steps,
            limit_train_batches=limit_train_batches,
            limit_val_batches=limit_val_batches,
            logger=logger,
            log_every_n_steps=log_every_n_steps,
        )
        if trainer.loggers:
            trainer.hparams.update(self._tracked_hparams(plan_kwargs, seed, batch_size))
            trainer.tracking = dict(tracking or {})
        on_device = resolve_data_on_device(data_on_device, data, trainer.device)
        train_loader, val_loader = self._make_loaders(splitter, on_device, trainer.device)
        self.module.train()
        try:
            trainer.fit(plan, train_loader, val_loader, ckpt_path=ckpt_path)
        finally:
            self.module.eval()
        self.trainer = trainer
        self.stop_reason = trainer.stop_reason
        self.train_indices = np.asarray(splitter.train_idx)
        self.validation_indices = np.asarray(splitter.val_idx)
        self.test_indices = np.asarray(splitter.test_idx)
        rows = trainer.history
        if self.is_trained:  # further training: scvi-tools appends to the history, numbering epochs on
            rows = continued_history(self._history_records, rows, trainer.restored_epochs)
        self.history_records = rows
        self.is_trained = True
        return self

    def _tracked_hparams(self, plan_kwargs: dict, seed, batch_size: int) -> dict:
        """What experiment trackers record of this model's training besides the trainer's settings."""
        from snakevi._digest import fingerprint

        return {
            "model": {"class": type(self).__name__, **{k: v for k, v in self.init_params.items() if k != "seed"}},
            "plan": dict(plan_kwargs),
            "seed": seed,
            "batch_size": batch_size,
            "data": {**{k: v for k, v in self.summary.items() if isinstance(v, (int, float, str))},
                     "registry_fingerprint": fingerprint(self.registry)},
        }

    # ---- training hooks (subclasses override what differs) --------------------------------
    def _default_max_epochs(self, n_obs: int) -> int:
        """``max_epochs`` when the user gives none: scvi-tools' heuristic."""
        from snakevi.train import get_max_epochs_heuristic

        return get_max_epochs_heuristic(n_obs)

    def _make_splitter(self, data: CellData, **kwargs):
        """The data splitter (train/validation/test sets and their loaders)."""
        from snakevi.data import DataSplitter

        return DataSplitter(data, **kwargs)

    def _make_plan(self, plan_kwargs: dict, seed: int | None):
        """The training plan for ``self.module`` (``plan_kwargs`` may be consumed)."""
        from snakevi.train import TrainingPlan

        return TrainingPlan(self.module, **plan_kwargs)

    def _required_callbacks(self, splitter, callbacks: list) -> list:
        """Callbacks the model needs whatever the user passed (added after ``callbacks``)."""
        return []

    def _make_loaders(self, splitter, on_device: bool, device):
        """``(train_loader, val_loader)``; gathered on ``device`` when ``on_device``."""
        from snakevi.data.device_loader import device_dataloaders

        if on_device:
            return device_dataloaders(
                splitter.data, splitter.train_idx, splitter.val_idx, batch_size=splitter.batch_size,
                seed=splitter.seed, drop_last=splitter.drop_last, device=device,
            )
        return splitter.train_dataloader(), splitter.val_dataloader() if len(splitter.val_idx) > 0 else None

    # ---- persistence ---------------------------------------------------------------------
    def save(self, dir_path: str | os.PathLike, *, overwrite: bool = False, format: str = "snakevi") -> None:
        """Save the model as a directory readable by :meth:`load`.

        ``format="snakevi"`` writes ``model.pt`` (the module's ``state_dict``, tensors only) and
        ``model.json`` (model class, constructor parameters, registry with var_names and
        category mappings, history, split indices, snakevi version). ``format="scvi-tools"``
        writes scvi-tools' model directory (one ``model.pt``), which ``scvi.model.SCVI.load``
        / ``SCANVI.load`` (scvi-tools 1.4.x) read, and so does :meth:`load`. The write is atomic.
        """
        if format == "scvi-tools":
            from snakevi.model.scvi_tools_format import save_scvi_tools

            save_scvi_tools(self, dir_path, overwrite=overwrite)
        elif format == "snakevi":
            persistence.save_model(self, dir_path, overwrite=overwrite)
        else:
            raise ValueError(f"format={format!r}: use 'snakevi' (the default) or 'scvi-tools'.")

    @classmethod
    def load(
        cls,
        dir_path: str | os.PathLike,
        adata: AnnData | CellData,
        *,
        accelerator: str = "cpu",
        verify: bool = True,
    ) -> BaseModelClass:
        """Load a model saved with :meth:`save` (either format) for the data ``adata``.

        ``dir_path`` may also be a scvi-tools model directory (scvi-tools' ``model.save``, or
        a scvi-hub model); its ``model.pt`` is read with a restricted unpickler that admits
        only the types such files hold, so no code from the file runs.

        ``adata`` must have the model's genes in the same order and only categories the
        model knows (batch, labels, categorical covariates); otherwise a ``ValueError`` says
        which genes or categories differ. It need not have been registered: the saved setup
        is applied to it. ``model.pt`` must be the file that was saved (its SHA-256 is in
        ``model.json``); ``verify=False`` loads weights that were edited on purpose.
        """
        return persistence.load_into_class(cls, dir_path, adata, accelerator=accelerator, verify=verify)

    def __repr__(self) -> str:
        s = self.summary
        state = "trained" if self.is_trained else "untrained"
        return (
            f"{type(self).__name__}({state}; n_obs={s['n_obs']}, n_vars={s['n_vars']}, "
            f"n_batch={s['n_batch']}, n_labels={s['n_labels']}; params={self.init_params})"
        )
