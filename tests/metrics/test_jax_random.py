"""The numpy copy of jax's random draws, and scib-metrics' k-means built on it, against jax itself.

Every expected value below was printed by jax 0.10.2 / scib-metrics 0.5.10 in the environment
``benchmarks/setup_scib_env.sh`` makes (defaults: threefry2x32, partitionable).
"""

from __future__ import annotations

import numpy as np

from snakevi.metrics import _jax_random as jr
from snakevi.metrics.kmeans import scib_kmeans

KEY = jr.prng_key(7)


def test_keys_split_and_bits_are_jax_s():
    assert jr.prng_key(0).tolist() == [0, 0] and KEY.tolist() == [0, 7]
    assert jr.split(KEY, 3).tolist() == [[3625411723, 1954958720], [195045567, 4062205631], [966301609, 1948237315]]
    assert jr.random_bits(KEY, 6).tolist() == [2895194379, 4185947648, 1300703658, 1906787632, 3139134342,
                                               2709822315]


def test_uniforms_permutations_and_weighted_choices_are_jax_s():
    np.testing.assert_array_equal(jr.uniform(KEY, 4), np.array(
        [0.6740899085998535, 0.9746168851852417, 0.3028435707092285, 0.4439585208892822], dtype=np.float32))
    assert jr.permutation(KEY, 12).tolist() == [10, 9, 4, 2, 3, 11, 5, 0, 7, 6, 1, 8]
    p = (np.arange(20, dtype=np.float32) % 5)
    assert jr.choice_without_replacement(KEY, 20, 4, p / p.sum()).tolist() == [19, 14, 1, 4]
    assert jr.choice_without_replacement(KEY, 12, 3).tolist() == [10, 9, 4]  # no p: a permutation's head


def test_scib_kmeans_gives_scib_metrics_clusters_on_data_without_clusters():
    # Gaussian noise has many local optima: only the same draws and the same updates land on the same one.
    X = np.random.default_rng(3).normal(size=(300, 4)).astype(np.float32)
    expected = [int(c) for c in "534314140441443322550554103032311112313350210400305345335444131513114401415331304340352114423242134422002111404503410502451000454442440044344450125010313244551045530525040230405302103420253431353404435103310513415555403555400031214233110552101403134442414525415423041253204512310424430312531505113530"]
    assert scib_kmeans(X, 6).labels.tolist() == expected
    assert scib_kmeans(X, 6, seed=1).labels.tolist() != expected
