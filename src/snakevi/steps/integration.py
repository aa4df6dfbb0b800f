"""Step 5b, integration: scib-style scores of the run's latent space and of a baseline.

Writes ``metrics.tsv``, ``integration.png`` and ``integration.json`` into the run's report
folder. It is a step of its own, not part of the report, because it is the slow one (k-nearest
neighbours over all cells, kBET): the workflow runs it beside the report and export steps, and
on a cluster it can get its own resources.

Both embeddings are scored on the same cells with :func:`snakevi.metrics.integration_metrics`,
scib-metrics 0.5.10's ``Benchmarker`` defaults number for number
(``tests/metrics/test_scib_reference.py``): the run's latent representation, and a PCA of the
log-normalized counts (the "unintegrated" baseline every integration method is compared with;
also the reference of PCR comparison). The PCA is fitted on all cells, as scib-metrics fits
it, with a fixed start vector, so the baseline does not move with the run's seed. Cells whose
label is the unlabelled category are left out of the scores, since their true label is unknown.

Scores need a labels key. Without a batch key (or with one batch) the bio-conservation metrics
are still computed and the batch-correction ones are reported as not defined, with the reason,
in ``metrics.tsv``, ``integration.json`` ("notes") and the figure.
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

    Returns
    -------
    dict
        What ``integration.json`` holds: ``run``, ``latent_key``, the aggregate scores
        (:data:`snakevi.metrics.AGGREGATES`) of the latent space, ``"Total (PCA baseline)"``
        (``None`` where not defined) and ``notes``: why anything was not computed.
    """
    from snakevi.metrics import AGGREGATES

    registry, data, Z = load_scored_run(latent_npy, prepared_dir, registry_json)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not metrics:
        scores, notes = {}, ["integration metrics were switched off (report.metrics: false)"]
    elif registry["fields"]["labels"]["original_key"] is None:
        scores, notes = {}, ["integration metrics need setup.labels_key: every scib metric but iLISI and PCR "
                             "comparison compares the embedding with cell-type labels"]
    else:
        scores, notes = score_embeddings(data, registry, Z, latent_key)
    write_metrics_tsv(out / "metrics.tsv", scores, notes)
    plot_scores(scores, run, out / "integration.png", notes)
    summary = {"run": run, "latent_key": latent_key}
    summary.update({name: _finite(scores[latent_key].get(name)) if scores else None for name in AGGREGATES})
    summary["Total (PCA baseline)"] = _finite(scores[BASELINE].get("Total")) if scores else None
    summary["notes"] = notes
    write_json_atomic(out / "integration.json", summary)
    if scores:
        log.info("integration scores of run %s -> %s", run, out)
    for note in notes:
        log.info("run %s: %s", run, note)
    return summary


def _finite(value) -> float | None:
    """A float for JSON, or None for a missing or undefined (NaN) score."""
    return None if value is None or not np.isfinite(value) else float(value)


def labelled_cells(data, registry: dict) -> np.ndarray:
    """Positions of the cells with a known label (all cells unless the setup has an unlabelled category)."""
    from snakevi.data.registry import registry_unlabeled_category

    codes = np.asarray(data.obs["labels"]).reshape(-1)
    unlabeled = registry_unlabeled_category(registry)
    if unlabeled is None:
        return np.arange(len(codes))
    mapping = [str(c) for c in registry["fields"]["labels"]["categorical_mapping"]]
    return np.flatnonzero(codes != mapping.index(str(unlabeled)))


def undefined_notes(registry: dict, batch: np.ndarray, labels: np.ndarray) -> list[str]:
    """Why a group of metrics is not defined on the scored cells (empty when all are)."""
    from snakevi.metrics import BATCH_METRICS, BIO_METRICS

    notes = []
    if len(np.unique(labels)) < 2:
        notes.append(f"bio-conservation metrics ({', '.join(BIO_METRICS)}) are not defined: the scored cells "
                     "have one label; and so Total is not defined")
    if registry["fields"]["batch"]["original_key"] is None:
        why = "the run has no batch key (setup.batch_key)"
    elif len(np.unique(batch)) < 2:
        why = "the scored cells come from one batch"
    else:
        return notes
    notes.append(f"batch-correction metrics ({', '.join(BATCH_METRICS)}) are not defined: {why}; so Total, "
                 "0.4 x batch correction + 0.6 x bio conservation, is not defined either (scib-metrics gives "
                 "none); compare runs by Bio conservation")
    return notes


def score_embeddings(data, registry: dict, Z: np.ndarray, latent_key: str) -> tuple[dict[str, dict], list[str]]:
    """Metrics of the latent space ``Z`` and of the PCA baseline, and why any is not defined.

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

    Returns
    -------
    tuple
        ``{embedding name: {metric: value}}`` and the notes of :func:`undefined_notes`.
    """
    import warnings

    from snakevi.metrics import UndefinedMetricWarning, integration_metrics

    cells = labelled_cells(data, registry)
    batch = np.asarray(data.obs["batch"]).reshape(-1)[cells]
    labels = np.asarray(data.obs["labels"]).reshape(-1)[cells]
    notes = undefined_notes(registry, batch, labels)
    pca = baseline_embedding(data.X)[cells]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # the notes say it once, with the reason
        scores = {
            latent_key: integration_metrics(np.asarray(Z)[cells], batch, labels, pre_integrated=pca),
            BASELINE: integration_metrics(pca, batch, labels, pre_integrated=pca),
        }
    log.info("integration metrics on %d of %d cells: %s Total %.3f, %s Total %.3f", len(cells), len(data),
             latent_key, scores[latent_key]["Total"], BASELINE, scores[BASELINE]["Total"])
    return scores, notes


def baseline_embedding(counts) -> np.ndarray:
    """The PCA baseline of all cells: :data:`BASELINE_COMPONENTS` components (fewer for tiny data).

    scib-metrics' ``Benchmarker`` runs ``sc.tl.pca`` on the whole AnnData it is given; the start
    vector is fixed (seed 0, scanpy's ``random_state=0``), not the run's seed, so that runs of
    the same data share one baseline.
    """
    from snakevi.metrics import pca_baseline

    n_comps = int(min(BASELINE_COMPONENTS, counts.shape[1] - 1, counts.shape[0] - 1))
    return pca_baseline(counts, n_comps=n_comps, seed=0)


def write_metrics_tsv(path: str | Path, scores: dict[str, dict], notes=()) -> None:
    """``metrics.tsv``: one row per embedding, one column per metric (empty when not defined).

    Each of ``notes`` (why a metric or all of them were not computed) follows as a ``#`` comment line.
    """
    names = list(next(iter(scores.values()))) if scores else []
    lines = ["\t".join(["embedding", *names])]
    for embedding, values in scores.items():
        cells = ["" if values[n] is None or not np.isfinite(values[n]) else f"{values[n]:.6g}" for n in names]
        lines.append("\t".join([embedding, *cells]))
    lines.extend(f"# {note}" for note in notes)
    write_text_atomic(path, "\n".join(lines) + "\n")


def plot_scores(scores: dict[str, dict], run: str, path: Path, notes=()) -> None:
    """Grouped horizontal bars: every metric (0 to 1, higher is better) for each embedding; ``notes`` below."""
    import textwrap

    from snakevi.steps.figures import new_axes, save_png

    if not scores:
        fig, ax = new_axes((6, 2))
        ax.axis("off")
        text = "\n".join(textwrap.fill(note, 80) for note in notes)
        ax.text(0.5, 0.5, f"No integration metrics for run {run}:\n{text}", ha="center", va="center")
        save_png(fig, path)
        return
    names = list(next(iter(scores.values())))
    footer = "\n".join(textwrap.fill(f"Not shown: {note}", 110) for note in notes)
    footer_in = 0.17 * (footer.count("\n") + 1) + 0.2 if notes else 0.0
    height = 0.35 * len(names) * len(scores) + 1.5 + footer_in
    fig, ax = new_axes((7, height))
    bar = 0.8 / len(scores)
    y = np.arange(len(names))
    for i, (embedding, values) in enumerate(scores.items()):
        vals = np.array([np.nan if values[n] is None else values[n] for n in names], dtype=float)
        ax.barh(y + i * bar, np.nan_to_num(vals), height=bar, label=embedding)
    ax.set_yticks(y + bar * (len(scores) - 1) / 2, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("score (0 to 1, higher is better)")
    ax.set_title(f"Integration metrics (scib-style) — run {run}")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(title="embedding", loc="lower right", fontsize="small")
    if notes:  # a metric left empty gets its reason under the axes (the layout makes room for it)
        fig.supxlabel(footer, x=0.02, ha="left", fontsize="x-small")
    save_png(fig, path)
