"""integration_metrics: names, aggregates, extremes, determinism and the awkward inputs."""

import warnings

import numpy as np
import pytest
from metric_data import mixed_batches, separated_batches

from snakevi.metrics import (
    AGGREGATES,
    BATCH_METRICS,
    BIO_METRICS,
    UndefinedMetricWarning,
    bras,
    clisi_knn,
    ilisi_knn,
    integration_metrics,
)


def test_names_order_and_aggregates():
    X, batch, labels = mixed_batches()
    pre, _, _ = separated_batches()
    m = integration_metrics(X, batch, labels, pre_integrated=pre)
    assert list(m) == [*BIO_METRICS, *BATCH_METRICS, *AGGREGATES]
    assert m["Bio conservation"] == pytest.approx(np.mean([m[k] for k in BIO_METRICS]))
    assert m["Batch correction"] == pytest.approx(np.mean([m[k] for k in BATCH_METRICS]))
    assert m["Total"] == pytest.approx(0.4 * m["Batch correction"] + 0.6 * m["Bio conservation"])
    # the shared kNN graph gives the same numbers as the stand-alone functions
    assert m["iLISI"] == pytest.approx(ilisi_knn(X, batch))
    assert m["cLISI"] == pytest.approx(clisi_knn(X, labels))
    assert m["BRAS"] == pytest.approx(bras(X, labels, batch))


def test_mixed_beats_separated_on_every_batch_metric_and_both_conserve_labels():
    pre, batch, labels = separated_batches(n_batches=3, per_cell=40)  # graph connectivity 1/3
    good = integration_metrics(mixed_batches(n_batches=3, per_cell=40)[0], batch, labels, pre_integrated=pre)
    bad = integration_metrics(pre, batch, labels, pre_integrated=pre)
    for name in BATCH_METRICS:
        assert good[name] > 0.8 > 0.5 > bad[name], name
    for name in BIO_METRICS:
        assert good[name] > 0.6 and bad[name] > 0.6, name
    assert good["Total"] > bad["Total"]


def test_without_pre_integrated_pcr_is_left_out():
    X, batch, labels = mixed_batches()
    m = integration_metrics(X, batch, labels)
    assert "PCR comparison" not in m
    assert m["Batch correction"] == pytest.approx(np.mean([m[k] for k in BATCH_METRICS[:4]]))


def test_classic_batch_silhouette_option():
    X, batch, labels = mixed_batches()
    m = integration_metrics(X, batch, labels, batch_silhouette="classic")
    assert "Silhouette batch" in m and "BRAS" not in m
    with pytest.raises(ValueError, match="'bras' or 'classic'"):
        integration_metrics(X, batch, labels, batch_silhouette="asw")


def test_same_seed_same_numbers_and_strings_equal_integers():
    X, batch, labels = mixed_batches(n_labels=3, seed=5)
    a = integration_metrics(X, batch, labels, seed=1)
    names = np.array(["T cells", "B cells", "NK cells"])[labels]
    b = integration_metrics(X, np.char.add("donor", batch.astype(str)), names, seed=1)
    assert a == b


def test_one_batch_gives_nan_batch_metrics_with_one_warning():
    X, _, labels = mixed_batches()
    with pytest.warns(UndefinedMetricWarning, match="Only one batch") as record:
        m = integration_metrics(X, np.full(len(X), "only"), labels, pre_integrated=X)
    assert len([w for w in record if issubclass(w.category, UndefinedMetricWarning)]) == 1
    assert all(np.isnan(m[k]) for k in BATCH_METRICS) and np.isnan(m["Batch correction"])
    assert np.isfinite(m["Bio conservation"])
    assert np.isnan(m["Total"])  # as scib-metrics: no Total of one group, it would not compare with full ones


def test_a_label_and_a_batch_with_one_cell():
    X, batch, labels = mixed_batches(n_batches=3)
    labels = labels.astype(object)
    batch = batch.astype(object)
    labels[0] = "rare"  # one cell of its own label
    batch[1] = "tiny batch"  # one cell of its own batch
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedMetricWarning)
        m = integration_metrics(X, batch, labels)
    assert all(np.isfinite(v) for v in m.values())
