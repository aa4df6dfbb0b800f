"""A model's training history as plain rows: the DataFrame view, further training, JSON.

The history is a list of dicts, one per epoch (``epoch`` included), so that training and
saving a model never import pandas; these helpers turn it into what each caller needs.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - imports for type checkers only
    import pandas as pd


def history_frame(rows: list[dict]) -> pd.DataFrame:
    """Per-epoch history rows -> DataFrame indexed by epoch, one column per metric."""
    import pandas as pd

    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame.from_records(copy.deepcopy(list(rows)))
    if "epoch" in frame.columns:
        frame = frame.set_index("epoch")
    return frame


def continued_history(previous: list[dict], new: list[dict], n_restored: int = 0) -> list[dict]:
    """The history after a further ``train()`` call: ``previous`` rows, then ``new`` ones numbered on.

    Each call's trainer numbers its epochs from 0 (and, as in scvi-tools, restarts the KL
    warm-up and the optimizer); the model's history goes on counting, as scvi-tools'
    ``TrainRunner._update_history`` concatenates with a shifted index. A resumed fit
    (``ckpt_path``) starts with ``n_restored`` rows from its checkpoint: when ``previous``
    already ends with them (the model ran that fit itself and is now taking it further),
    they replace those rows instead of being counted twice.
    """
    if n_restored and len(previous) >= n_restored and _same_rows(previous[-n_restored:], new[:n_restored]):
        previous = previous[:-n_restored]
    start = int(previous[-1]["epoch"]) + 1 if previous and previous[-1].get("epoch") is not None else len(previous)
    return [dict(row) for row in previous] + [{**row, "epoch": start + i} for i, row in enumerate(new)]


def _same_rows(a: list[dict], b: list[dict]) -> bool:
    """Rows equal but for ``epoch``; a missing, None or NaN metric counts as the same gap
    (a history read back from model.json has None where the trainer's row had no entry)."""
    def value(row, key):
        v = row.get(key)
        return None if v is None or (isinstance(v, float) and v != v) else v

    for ra, rb in zip(a, b, strict=True):
        keys = (set(ra) | set(rb)) - {"epoch"}
        if any(value(ra, k) != value(rb, k) for k in keys):
            return False
    return True


def history_columns(rows: list[dict]) -> list[str]:
    """Every key of ``rows`` in first-seen order (a DataFrame's columns), ``epoch`` first if present."""
    names = list(dict.fromkeys(key for row in rows for key in row))
    return (["epoch"] if "epoch" in names else []) + [n for n in names if n != "epoch"]


def json_records(rows: list[dict]) -> list[dict]:
    """``rows`` as JSON-ready records over all columns; a metric missing in an epoch (no
    validation that epoch) or not finite becomes null, since JSON has no NaN."""
    columns = history_columns(rows)
    return [{c: _finite_or_none(row.get(c)) for c in columns} for row in rows]


def _finite_or_none(value):
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value

