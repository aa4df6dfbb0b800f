"""Step 5, report: history + latent representation -> plots and numbers a person wants to look at.

``report/`` holds loss curves (train and validation) for the ELBO, the reconstruction loss and
the KL divergence, a 2-D view of the latent space (its first two principal components, numpy
only) coloured by batch and by label, and ``metrics.json``. The integration scores beside them
come from their own step (:mod:`snakevi.steps.integration`), which runs in parallel with this
one. :func:`summarize` gathers the ``metrics.json`` and ``integration.json`` of several runs
into one TSV (``results/summary.tsv``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from snakevi.steps._io import StepError, load_scored_run, write_json_atomic, write_text_atomic
from snakevi.steps.tracked_run import attach_report

log = logging.getLogger(__name__)

#: The files :func:`report` writes in its folder.
REPORT_FILES = ("loss_elbo.png", "loss_reconstruction.png", "loss_kl.png", "latent_batch.png",
                "latent_label.png", "metrics.json")
#: (file, title, y label, history metric stem)
_CURVES = (
    ("loss_elbo.png", "ELBO", "negative ELBO per cell", "elbo"),
    ("loss_reconstruction.png", "Reconstruction loss", "negative log-likelihood per cell", "reconstruction_loss"),
    ("loss_kl.png", "KL divergence (local)", "KL(q(z|x) || p(z)) per cell", "kl_local"),
)
#: Columns of the summary table, in order (metrics absent for a run are left empty).
SUMMARY_COLUMNS = ("run", "group", "seed", "n_obs", "n_vars", "n_batch", "n_labels", "n_latent", "epochs", "elbo_train",
                   "elbo_validation", "reconstruction_loss_train", "reconstruction_loss_validation",
                   "kl_local_train", "kl_local_validation", "latent_key", "Bio conservation",
                   "Batch correction", "Total", "Total (PCA baseline)")


def pca_2d(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First two principal components of ``Z`` (cells x dims) and their explained variance ratio.

    Signs are fixed (largest loading positive) so the picture does not flip between runs.
    """
    Z = np.asarray(Z, dtype=np.float64)
    centred = Z - Z.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(2, vt.shape[0])
    signs = np.sign(vt[np.arange(k), np.abs(vt[:k]).argmax(axis=1)])
    signs[signs == 0] = 1
    comps = vt[:k] * signs[:, None]
    pcs = centred @ comps.T
    if k < 2:  # a 1-D latent space: plot it against zero
        pcs = np.column_stack([pcs, np.zeros(len(pcs))])
    var = s**2
    ratio = var[:2] / var.sum() if var.sum() > 0 else np.zeros(2)
    return pcs, np.pad(ratio, (0, 2 - ratio.size))


def read_history(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The train step's ``history.csv``: ``(epochs, {column: values})``.

    Numeric columns become float arrays (empty cells NaN), others (scANVI's ``phase``) stay
    strings. Plain ``csv``: the report job needs no pandas for one small table.
    """
    import csv

    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as err:
        raise StepError(f"Could not read the training history {path} ({err}); rerun the train step.") from err
    if not rows or "epoch" not in rows[0]:
        raise StepError(f"{path} has no 'epoch' column; it is not a history written by the train step. "
                        "Rerun the train step.")
    header, body = rows[0], rows[1:]
    columns = {}
    for j, name in enumerate(header):
        values = [row[j] if j < len(row) else "" for row in body]
        try:
            columns[name] = np.array([float(v) if v != "" else np.nan for v in values], dtype=float)
        except ValueError:
            columns[name] = np.array(values, dtype=object)
    epochs = columns.pop("epoch")
    return epochs.astype(np.int64) if np.isfinite(epochs).all() else epochs, columns


def last_value(columns: dict[str, np.ndarray], name: str) -> float | None:
    """The last non-missing value of a numeric history column, or None."""
    values = columns.get(name)
    if values is None or values.dtype == object:
        return None
    values = values[~np.isnan(values)]
    return float(values[-1]) if values.size else None


def plot_curve(epochs: np.ndarray, columns: dict[str, np.ndarray], stem: str, title: str, ylabel: str,
               run: str, path: Path) -> None:
    """One loss curve figure: ``<stem>_train`` and ``<stem>_validation`` against epoch."""
    from snakevi.steps.figures import new_axes, save_png

    fig, ax = new_axes((6, 4))
    drawn = 0
    for split, style in (("train", "-"), ("validation", "--")):
        values = columns.get(f"{stem}_{split}")
        if values is None or values.dtype == object:
            continue
        kept = ~np.isnan(values)
        if kept.any():
            ax.plot(epochs[kept], values[kept], style, marker="o" if kept.sum() < 30 else None,
                    markersize=3, label=split)
            drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, f"no {stem} values in the history", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(f"{title} — run {run}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(title="cells")
    save_png(fig, path)


def plot_latent(pcs: np.ndarray, ratio: np.ndarray, values, what: str, key: str | None, run: str,
                latent_key: str, path: Path) -> None:
    """Scatter of the 2-D view, one colour per category of ``values``."""
    from snakevi.steps.figures import category_colors, marker_handle, new_axes, save_png

    fig, ax = new_axes((6.5, 5))
    # Draw cells in a seeded random order so that no category hides the others.
    order = np.random.default_rng(0).permutation(len(pcs))
    size = max(1.0, min(12.0, 20000.0 / max(len(pcs), 1)))
    if key is None:
        ax.scatter(pcs[order, 0], pcs[order, 1], s=size, color="tab:blue", linewidths=0)
        ax.set_title(f"{latent_key}, PCA — run {run}\n(no {what} key registered)")
    else:
        categories, codes = np.unique(np.asarray(values, dtype=str), return_inverse=True)
        colors = category_colors(len(categories))
        ax.scatter(pcs[order, 0], pcs[order, 1], s=size, c=colors[codes[order]], linewidths=0)
        shown = list(categories[:20])
        handles = [marker_handle(colors[i], str(c)) for i, c in enumerate(shown)]
        extra = len(categories) - len(shown)
        ax.legend(handles=handles, title=f"{key}" + (f" (+{extra} more)" if extra > 0 else ""),
                  bbox_to_anchor=(1.02, 1), loc="upper left", fontsize="small", markerscale=1.5)
        ax.set_title(f"{latent_key}, PCA, coloured by {what} ({key}) — run {run}")
    ax.set_xlabel(f"PC1 ({100 * ratio[0]:.1f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * ratio[1]:.1f}% of variance)")
    save_png(fig, path)


def report(
    history_csv: str | os.PathLike,
    latent_npy: str | os.PathLike,
    prepared_dir: str | os.PathLike,
    registry_json: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    run: str = "run",
    latent_key: str = "X_scVI",
    group: str | None = None,
    seed: int | None = None,
    logger=None,
) -> dict:
    """Write the training curves, the latent-space views and ``metrics.json`` of one run.

    It reads what training wrote and the prepared folder, never the h5ad or the model, so it
    needs neither anndata nor torch and runs beside the export and integration steps.

    Parameters
    ----------
    history_csv
        The train step's history (one row per epoch).
    latent_npy
        The train step's latent representation of every cell (``latent.npy``).
    prepared_dir
        The prepare step's folder (batch and label codes of the same cells).
    registry_json
        The register step's registry (category names of the codes).
    out_dir
        Folder for the files in :data:`REPORT_FILES`.
    run
        Run name shown in titles and in ``metrics.json``.
    latent_key
        Name of the latent representation in titles (the export step's ``obsm`` key).
    group, seed
        Recorded in ``metrics.json`` for the summary: the run group a seed replicate belongs
        to (``None``: the run is its own group) and the run's seed.
    logger
        The run's experiment trackers (``train.logger``): the figures are attached to the
        tracked run that logged this history (:func:`snakevi.steps.tracked_run.attach_report`).

    Returns
    -------
    dict
        The numbers written to ``metrics.json``: data sizes and the last epoch's losses.
    """
    epochs, history = read_history(history_csv)
    registry, data, Z = load_scored_run(latent_npy, prepared_dir, registry_json)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, title, ylabel, stem in _CURVES:
        plot_curve(epochs, history, stem, title, ylabel, run, out / name)
    pcs, ratio = pca_2d(Z)
    for what, field, name in (("batch", "batch", "latent_batch.png"), ("label", "labels", "latent_label.png")):
        key = registry["fields"][field]["original_key"]
        values = None if key is None else category_values(data, registry, field)
        plot_latent(pcs, ratio, values, what, key, run, latent_key, out / name)
    s = registry["summary"]
    metrics = {
        "run": run,
        "group": group or run,
        "seed": None if seed is None else int(seed),
        "n_obs": int(s["n_obs"]),
        "n_vars": int(s["n_vars"]),
        "n_batch": int(s["n_batch"]),
        "n_labels": int(s["n_labels"]),
        "n_latent": int(Z.shape[1]),
        "epochs": int(len(epochs)),
        "latent_key": latent_key,
        **{c: last_value(history, c) for c in SUMMARY_COLUMNS if c.endswith(("_train", "_validation"))},
        "last_epoch": int(epochs[-1]) if len(epochs) else None,
    }
    write_json_atomic(out / "metrics.json", metrics)
    attach_report(logger, history_csv, [out / name for name, *_ in _CURVES] +
                  [out / "latent_batch.png", out / "latent_label.png", out / "metrics.json"])
    log.info("report for run %s -> %s", run, out)
    return metrics


def category_values(data, registry: dict, field: str) -> np.ndarray:
    """The category names (strings) of every cell for ``field`` ("batch" or "labels")."""
    mapping = np.asarray([str(c) for c in registry["fields"][field]["categorical_mapping"]], dtype=object)
    return mapping[np.asarray(data.obs[field]).reshape(-1)]


def summarize(metrics_files: list[str | os.PathLike], summary_tsv: str | os.PathLike,
              integration_files: list[str | os.PathLike] = (),
              groups_tsv: str | os.PathLike | None = None) -> list[dict]:
    """One row per run from the runs' ``metrics.json`` (and ``integration.json``) files, as a TSV.

    Plain ``json`` and ``csv``: this job runs at the end of every workflow, and pandas alone
    would add half a second to it. The integration scores of a run are matched to its metrics
    by run name; a run without them has those columns empty. Returns the rows (dicts over
    :data:`SUMMARY_COLUMNS`), sorted by run name; values a run lacks are empty in the file and
    ``None`` in the rows. With ``groups_tsv``, also the mean and standard deviation of the
    numbers per run group (seed replicates; see :mod:`snakevi.steps.summary_groups`). The
    writes are atomic.
    """
    from snakevi.steps.summary_groups import GROUP_COLUMNS, group_rows

    runs = [_read_run_json(path, "run metrics", "report") for path in metrics_files]
    scores = {}
    for path in integration_files:
        values = _read_run_json(path, "integration scores", "integration")
        scores[values.get("run")] = values
    unmatched = sorted(set(scores) - {metrics.get("run") for metrics in runs}, key=str)
    if unmatched:
        raise StepError(f"Integration scores of run(s) {unmatched} have no metrics.json among {list(metrics_files)}; "
                        "pass both files of every run.")
    names = [metrics.get("run") for metrics in runs]
    repeated = sorted({str(n) for n in names if names.count(n) > 1})
    if repeated:
        raise StepError(f"Run(s) {repeated} have more than one metrics.json among {list(metrics_files)}; "
                        "pass one per run.")
    rows = []
    for metrics in runs:
        merged = {**metrics, **scores.get(metrics.get("run"), {})}
        merged.setdefault("group", merged.get("run"))  # a metrics.json of before groups
        rows.append({c: merged.get(c) for c in SUMMARY_COLUMNS})
    rows.sort(key=lambda row: str(row["run"]))
    write_text_atomic(summary_tsv, _tsv(SUMMARY_COLUMNS, rows))
    if groups_tsv is not None:
        write_text_atomic(groups_tsv, _tsv(GROUP_COLUMNS, group_rows(rows)))
    return rows


def _tsv(columns: tuple[str, ...], rows: list[dict]) -> str:
    """A tab-separated table with a header; ``None`` is an empty field."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
    return buf.getvalue()


def _read_run_json(path: str | os.PathLike, what: str, step: str) -> dict:
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise StepError(f"Could not read {what} {path} ({err}); rerun that run's {step} step.") from err
    if not isinstance(values, dict):
        raise StepError(f"{path} holds no JSON object of {what}; rerun that run's {step} step.")
    return values
