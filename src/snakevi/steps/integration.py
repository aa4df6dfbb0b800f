"""The report's integration scores: scib-style metrics of the run's latent space and of a baseline.

Both embeddings are scored on the same cells with :func:`snakevi.metrics.integration_metrics`:
the run's latent representation, and a PCA of the log-normalized counts (the "unintegrated"
baseline every integration method is compared with; also the reference of PCR comparison).
Scores need a batch key and a labels key; cells whose label is the unlabelled category (scanvi
runs) are left out, since their true label is unknown.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from snakevi._atomic import write_text_atomic

log = logging.getLogger(__name__)

#: Name of the baseline embedding's row in ``metrics.tsv``.
BASELINE = "PCA (unintegrated)"
#: Components of the PCA baseline (also what scib-metrics users pass as X_pca).
BASELINE_COMPONENTS = 50


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
