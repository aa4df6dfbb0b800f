"""``WandbLogger``: Weights & Biases, offline by default (``wandb sync`` uploads the run later).

A W&B run is named by an id; here it is derived from the run key (the workflow's run
fingerprint), so a resumed job continues it (``resume="allow"``). An offline run cannot be
asked what it holds, so this logger keeps ``wandb/snakevi-<id>.json`` (last epoch and step
logged) in the W&B folder, rewritten after every log call. Report figures are not attached: an
offline W&B run cannot be found again by a later step.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from snakevi.train.loggers.base import EPOCH_METRIC, Logger, TrackerUnavailable, check_writable

_INSTALL = "pip install 'snakevi[wandb]' (or: pip install wandb)"


class WandbLogger(Logger):
    """Log to a Weights & Biases run.

    Parameters
    ----------
    project
        The W&B project.
    save_dir
        Where W&B writes the run (its ``wandb/`` folder) and this logger its state file.
    offline
        Write the run locally only (default); ``False`` sends it to W&B (needs a login).
    name
        The run's display name; ``None`` takes the name :meth:`start` gets.
    id
        The W&B run id; ``None``: derived from the run key (else a new one).
    entity
        The W&B team or user.
    """

    kind = "wandb"

    def __init__(self, project: str = "snakevi", save_dir: str | os.PathLike = "snakevi_logs", offline: bool = True,
                 name: str | None = None, id: str | None = None, entity: str | None = None) -> None:  # noqa: A002
        self.project, self.save_dir, self.offline = project, Path(save_dir), offline
        self.name, self.id, self.entity = name, id, entity
        self._run = None
        self._start_args: dict = {}
        self._through = [-1, -1]

    def check(self) -> None:
        _import_wandb()
        check_writable(self.save_dir, "W&B logger")

    def start(self, *, run_name: str | None = None, run_key: str | None = None, tags: dict | None = None) -> None:
        if self.id is None:
            # W&B ids are short and alphanumeric: a digest of the key, stable across resumes.
            self.id = hashlib.sha256(run_key.encode()).hexdigest()[:16] if run_key else _import_wandb().util.generate_id()
        (self.save_dir / "wandb").mkdir(parents=True, exist_ok=True)
        self._start_args = {"name": self.name or run_name, "tags": [f"{k}={v}" for k, v in sorted((tags or {}).items())]}
        self._open()
        state = self._state_file()
        if state.is_file():
            self._through = list(json.loads(state.read_text())["through"])

    def _open(self) -> None:
        wandb = _import_wandb()
        self._run = wandb.init(project=self.project, entity=self.entity, id=self.id, dir=str(self.save_dir),
                               mode="offline" if self.offline else "online", resume="allow", reinit="create_new",
                               settings=wandb.Settings(console="off", quiet=True), **self._start_args)
        self._run.define_metric("global_step")
        self._run.define_metric("train_loss_step", step_metric="global_step")

    def logged_through(self) -> tuple[int, int]:
        return tuple(self._through)

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        self._run.config.update(params, allow_val_change=True)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if EPOCH_METRIC in metrics:
            self._run.log(dict(metrics))
            self._through[0] = max(self._through[0], int(step))
        else:
            self._run.log({**metrics, "global_step": int(step)})
            self._through[1] = max(self._through[1], int(step))
        tmp = self._state_file().with_suffix(".tmp")
        tmp.write_text(json.dumps({"through": self._through}))
        os.replace(tmp, self._state_file())

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        wandb = _import_wandb()
        if self._run is None:  # the fit ended the run: continue it for the artifact
            self._open()
        path = Path(path)
        artifact = wandb.Artifact(f"{artifact_path or path.stem}-{self.id}", type=artifact_path or "file")
        (artifact.add_dir if path.is_dir() else artifact.add_file)(str(path))
        self._run.log_artifact(artifact)
        self._run.finish()
        self._run = None

    def finalize(self, status: str) -> None:
        if self._run is not None:
            self._run.finish(exit_code=0 if status == "success" else 1)
            self._run = None

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "project": self.project, "id": self.id, "offline": self.offline,
                "dir": str(self.save_dir)}

    def _state_file(self) -> Path:
        return self.save_dir / "wandb" / f"snakevi-{self.id}.json"


def _import_wandb():
    try:
        import wandb
    except ImportError as err:
        raise TrackerUnavailable(f"The W&B logger needs the wandb package: {_INSTALL}.") from err
    return wandb
