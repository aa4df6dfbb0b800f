"""``TensorBoardLogger``: event files under ``save_dir/name/version``, read by ``tensorboard --logdir``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from snakevi.train.loggers.base import (
    EPOCH_METRIC,
    STEP_METRIC,
    Logger,
    TrackerUnavailable,
    check_writable,
    flatten_params,
)

_INSTALL = "pip install 'snakevi[tensorboard]' (or: pip install tensorboard)"


class TensorBoardLogger(Logger):
    """Write metrics and hyperparameters as TensorBoard event files.

    Parameters
    ----------
    save_dir
        The root folder (``tensorboard --logdir <save_dir>`` shows every run under it).
    name
        The experiment's subfolder (``""``: none).
    version
        The run's subfolder; ``None`` takes the run name :meth:`start` gets (the workflow's run),
        else ``version_<n>`` after the last one present, as Lightning does. A resumed fit
        with the same folder appends to its event files.
    """

    kind = "tensorboard"

    def __init__(self, save_dir: str | os.PathLike = "snakevi_logs", name: str = "", version: str | None = None) -> None:
        self.save_dir = Path(save_dir)
        self.name = name
        self.version = version
        self._writer = None
        self.log_dir: Path | None = None

    def check(self) -> None:
        _summary_writer()
        check_writable(self.save_dir, "TensorBoard logger")

    def start(self, *, run_name: str | None = None, run_key: str | None = None, tags: dict | None = None) -> None:
        base = self.save_dir / self.name if self.name else self.save_dir
        version = self.version or run_name or _next_version(base)
        self.log_dir = base / version
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._writer = _summary_writer()(log_dir=str(self.log_dir))
        if tags:
            self._writer.add_text("tags", "\n".join(f"{k}: {v}" for k, v in sorted(tags.items())))

    def logged_through(self) -> tuple[int, int]:
        """Read back what the run's event files hold (a resumed fit appends after it)."""
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        accumulator = EventAccumulator(str(self.log_dir), size_guidance={"scalars": 0})
        accumulator.Reload()
        scalars = accumulator.Tags().get("scalars", [])

        def last(tag: str) -> int:
            return max((e.step for e in accumulator.Scalars(tag)), default=-1) if tag in scalars else -1

        return last(EPOCH_METRIC), last(STEP_METRIC)

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        import yaml

        flat = flatten_params(params)
        # hparams.yaml beside the events, as Lightning writes it; the text tab shows them too.
        (self.log_dir / "hparams.yaml").write_text(yaml.safe_dump(params, sort_keys=True))
        self._writer.add_text("hparams", "\n".join(f"    {k}: {v}" for k, v in sorted(flat.items())))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self._writer.add_scalar(key, value, global_step=step)
        # Flushed at once: a killed job must not lose what the resumed one will skip.
        self._writer.flush()

    def finalize(self, status: str) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "log_dir": str(self.log_dir or self.save_dir)}


def _summary_writer():
    try:
        import tensorboard  # noqa: F401 - torch's SummaryWriter needs it
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise TrackerUnavailable(f"The TensorBoard logger needs the tensorboard package: {_INSTALL}.") from err
    return SummaryWriter


def _next_version(base: Path) -> str:
    taken = [int(p.name.split("_", 1)[1]) for p in base.glob("version_*") if p.name.split("_", 1)[1].isdigit()]
    return f"version_{max(taken, default=-1) + 1}"
