"""Step 5b, integration: scib-style scores of the run's latent space and of a baseline.

Writes ``metrics.tsv``, ``integration.png`` and ``integration.json`` into the run's report
folder. It is a step of its own, not part of the report, because it is the slow one (k-nearest
neighbours over all cells, kBET): the workflow runs it beside the report and export steps, and
on a cluster it can get its own resources.

Both embeddings are scored on the same cells with :func:`snakevi.metrics.integration_metrics`:
the run's latent representation, and a PCA of the log-normalized counts (the "unintegrated"
baseline every integration method is compared with; also the reference of PCR comparison).
Scores need a batch key and a labels key; cells whose label is the unlabelled category (scanvi
runs) are left out, since their true label is unknown.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from snakevi.steps._io import load_scored_run, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

#: Name of the baseline embedding's row in ``metrics.tsv``.
BASELINE = "PCA (unintegrated)"
#: Components of the PCA baseline (also what scib-metrics users pass as X_pca).
BASELINE_COMPONENTS = 50
#: The files :func:`integration` writes in the report folder.
INTEGRATION_FILES = ("integration.png", "metrics.tsv", "integration.json")


def integration(
    latent_npy: str | os.PathLike,
    prepared_dir: str | os.PathLike,
    registry_json: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    run: str = "run",
    latent_key: str = "X_scVI",
    metrics: bool = True,
    seed: int = 0,
) -> dict:
    """Score the integration of one run and write :data:`INTEGRATION_FILES` into ``out_dir``.

    Parameters
    ----------
    latent_npy
        The train step's latent representation of every cell (``latent.npy``).
    prepared_dir
        The prepare step's folder (counts, batch and label codes of the same cells).
    registry_json
        The register step's registry.
    out_dir
        The run's report folder.
    run
        Run name shown in the figure's title and in ``integration.json``.
    latent_key
        Row name of the latent space in ``metrics.tsv`` (the export step's ``obsm`` key).
    metrics
        False writes the files with a note instead of scores (the workflow's ``report.metrics``).
        Without a batch key and a labels key there is nothing to score either, and the note
        says so.
    seed
        Seed of the baseline PCA and of the metrics' k-means.

    Returns
    -------
    dict
        What ``integration.json`` holds: ``run``, ``latent_key``, the aggregate scores
        (:data:`snakevi.metrics.AGGREGATES`) of the latent space and ``"Total (PCA baseline)"``;
        scores are ``None`` when not computed.
    """
    from snakevi.metrics import AGGREGATES

    registry, data, Z = load_scored_run(latent_npy, prepared_dir, registry_json)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    note = why_not_scored(registry) if metrics else "integration metrics were switched off (report.metrics: false)"
    scores = {} if note else score_embeddings(data, registry, Z, latent_key, seed=seed)
    write_metrics_tsv(out / "metrics.tsv", scores, note)
    plot_scores(scores, run, out / "integration.png", note)
    summary = {"run": run, "latent_key": latent_key}
    summary.update({name: _finite(scores[latent_key].get(name)) if scores else None for name in AGGREGATES})
    summary["Total (PCA baseline)"] = _finite(scores[BASELINE].get("Total")) if scores else None
    write_json_atomic(out / "integration.json", summary)
    log.info("integration scores of run %s -> %s", run, out)
    return summary


def _finite(value) -> float | None:
    """A float for JSON, or None for a missing or undefined (NaN) score."""
    return None if value is None or not np.isfinite(value) else float(value)


def why_not_scored(registry: dict) -> str | None:
    """Why integration metrics cannot be computed for this setup, or ``None`` if they can."""
    fields = registry["fields"]
    if fields["batch"]["original_key"] is None or fields["labels"]["original_key"] is None:
        return "integration metrics need setup.batch_key and setup.labels_key"
    return None


def labelled_cells(data, registry: dict) -> np.ndarray:
    """Positions of the cells with a known label (all cells unless the setup has an unlabelled category)."""
    from snakevi.data.registry import registry_unlabeled_category

    codes = np.asarray(data.obs["labels"]).reshape(-1)
    unlabeled = registry_unlabeled_category(registry)
    if unlabeled is None:
        return np.arange(len(codes))
    mapping = [str(c) for c in registry["fields"]["labels"]["categorical_mapping"]]
    return np.flatnonzero(codes != mapping.index(str(unlabeled)))


def score_embeddings(data, registry: dict, Z: np.ndarray, latent_key: str, *, seed: int = 0) -> dict[str, dict]:
    """Metrics of the latent space ``Z`` and of the PCA baseline: ``{embedding name: {metric: value}}``.

    Parameters
    ----------
    data
        The prepared :class:`~snakevi.data.CellData` (counts, batch and label codes).
    registry
        Its registry.
    Z
        Latent representation of every cell of ``data``.
    latent_key
        Row name of the latent space.
    seed
        Seed of the baseline PCA and of the metrics' k-means.
    """
    from snakevi.metrics import integration_metrics, pca_baseline

    cells = labelled_cells(data, registry)
    batch = np.asarray(data.obs["batch"]).reshape(-1)[cells]
    labels = np.asarray(data.obs["labels"]).reshape(-1)[cells]
    counts = data.X[cells] if len(cells) < len(data) else data.X
    n_comps = int(min(BASELINE_COMPONENTS, counts.shape[1] - 1, len(cells) - 1))
    pca = pca_baseline(counts, n_comps=n_comps, seed=seed)
    scores = {
        latent_key: integration_metrics(np.asarray(Z)[cells], batch, labels, pre_integrated=pca, seed=seed),
        BASELINE: integration_metrics(pca, batch, labels, pre_integrated=pca, seed=seed),
    }
    log.info("integration metrics on %d cells: %s Total %.3f, %s Total %.3f", len(cells), latent_key,
             scores[latent_key]["Total"], BASELINE, scores[BASELINE]["Total"])
    return scores


def write_metrics_tsv(path: str | Path, scores: dict[str, dict], note: str | None = None) -> None:
    """``metrics.tsv``: one row per embedding, one column per metric (empty when not defined).

    Without scores (``note`` says why) the file holds the header line and that note as a comment.
    """
    names = list(next(iter(scores.values()))) if scores else []
    lines = ["\t".join(["embedding", *names])]
    for embedding, values in scores.items():
        cells = ["" if values[n] is None or not np.isfinite(values[n]) else f"{values[n]:.6g}" for n in names]
        lines.append("\t".join([embedding, *cells]))
    if note:
        lines.append(f"# {note}")
    write_text_atomic(path, "\n".join(lines) + "\n")


def plot_scores(scores: dict[str, dict], run: str, path: Path, note: str | None = None) -> None:
    """Grouped horizontal bars: every metric (0 to 1, higher is better) for each embedding."""
    from snakevi.steps.figures import new_axes, save_png

    if not scores:
        fig, ax = new_axes((6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, f"No integration metrics for run {run}:\n{note}", ha="center", va="center")
        save_png(fig, path)
        return
    names = list(next(iter(scores.values())))
    fig, ax = new_axes((7, 0.35 * len(names) * len(scores) + 1.5))
    height = 0.8 / len(scores)
    y = np.arange(len(names))
    for i, (embedding, values) in enumerate(scores.items()):
        vals = np.array([np.nan if values[n] is None else values[n] for n in names], dtype=float)
        ax.barh(y + i * height, np.nan_to_num(vals), height=height, label=embedding)
    ax.set_yticks(y + height * (len(scores) - 1) / 2, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("score (0 to 1, higher is better)")
    ax.set_title(f"Integration metrics (scib-style) — run {run}")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(title="embedding", loc="lower right", fontsize="small")
    save_png(fig, path)
