"""Mean and standard deviation of the summary's numbers per run group (seed replicates).

A run written with ``seed: [0, 1, 2]`` becomes the runs ``<name>_seed0``, ... of group
``<name>``; every other run is a group of its own. Plain ``statistics``, no pandas: the summary
job runs at the end of every workflow.
"""

from __future__ import annotations

import statistics

#: Summary columns averaged over a group's runs.
GROUPED_COLUMNS = ("epochs", "elbo_train", "elbo_validation", "reconstruction_loss_train",
                   "reconstruction_loss_validation", "kl_local_train", "kl_local_validation",
                   "Bio conservation", "Batch correction", "Total", "Total (PCA baseline)")
GROUP_COLUMNS = ("group", "n_runs", "runs", "seeds",
                 *(f"{column} {stat}" for column in GROUPED_COLUMNS for stat in ("mean", "sd")))


def group_rows(rows: list[dict]) -> list[dict]:
    """One row per group of the summary ``rows`` (dicts with ``run``, ``group``, ``seed``, metrics).

    ``<column> sd`` is the sample standard deviation (n - 1), ``None`` for a group of one run;
    a run without a value (no integration scores) is left out of that column's statistics.
    """
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(str(row.get("group") or row["run"]), []).append(row)
    out = []
    for name in sorted(groups):
        members = sorted(groups[name], key=lambda row: str(row["run"]))
        grouped = {"group": name, "n_runs": len(members), "runs": ",".join(str(r["run"]) for r in members),
                   "seeds": ",".join("" if r.get("seed") is None else str(r["seed"]) for r in members)}
        for column in GROUPED_COLUMNS:
            values = [float(r[column]) for r in members if r.get(column) is not None]
            grouped[f"{column} mean"] = statistics.fmean(values) if values else None
            grouped[f"{column} sd"] = statistics.stdev(values) if len(values) > 1 else None
        out.append(grouped)
    return out
