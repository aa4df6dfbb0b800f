"""jax's default random draws (threefry2x32, partitionable), bit for bit, in numpy.

scib-metrics' k-means takes its k-means++ draws from ``jax.random`` with the key
``PRNGKey(0)``; a local optimum of k-means depends on those draws, so "the same KMeans NMI as
scib-metrics" needs the same draws. Only what that k-means uses is here: keys, ``split``,
32-bit random bits, float32 uniforms and Gumbels, ``permutation`` and ``choice`` (with and
without ``p``, without replacement). It follows jax 0.10's code paths with its defaults
(``jax_threefry_partitionable=True``, low-range Gumbel); ``tests/metrics/test_jax_random.py``
holds it to draws jax itself made.

Keys are ``numpy.ndarray`` of two ``uint32``, as jax's raw keys.
"""

from __future__ import annotations

import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_UINT32_MAX = 0xFFFFFFFF


def _rotl(x: np.ndarray, d: int) -> np.ndarray:
    return (x << np.uint32(d)) | (x >> np.uint32(32 - d))


def threefry2x32(key: np.ndarray, x0: np.ndarray, x1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Threefry-2x32 block cipher (20 rounds) of the counter pairs ``(x0, x1)`` under ``key``."""
    k0, k1 = np.uint32(key[0]), np.uint32(key[1])
    ks = (k0, k1, np.uint32(k0 ^ k1 ^ np.uint32(0x1BD11BDA)))
    with np.errstate(over="ignore"):
        x = [np.asarray(x0, np.uint32) + ks[0], np.asarray(x1, np.uint32) + ks[1]]
        for i in range(5):
            for r in _ROTATIONS[i % 2]:
                x[0] = x[0] + x[1]
                x[1] = _rotl(x[1], r) ^ x[0]
            x[0] = x[0] + ks[(i + 1) % 3]
            x[1] = x[1] + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x[0], x[1]


def prng_key(seed: int) -> np.ndarray:
    """``jax.random.PRNGKey(seed)`` (a 64-bit seed split into its high and low 32 bits)."""
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    return np.array([seed >> 32, seed & _UINT32_MAX], dtype=np.uint32)


def _counters(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The 64-bit flat index of each of ``n`` draws as (high, low) 32-bit halves."""
    i = np.arange(n, dtype=np.uint64)
    return (i >> np.uint64(32)).astype(np.uint32), (i & np.uint64(_UINT32_MAX)).astype(np.uint32)


def split(key: np.ndarray, num: int = 2) -> np.ndarray:
    """``jax.random.split(key, num)``: (num, 2) new keys."""
    hi, lo = threefry2x32(key, *_counters(num))
    return np.stack([hi, lo], axis=1)


def random_bits(key: np.ndarray, n: int) -> np.ndarray:
    """``n`` uniform 32-bit words, as jax's ``_random_bits(key, 32, (n,))``."""
    hi, lo = threefry2x32(key, *_counters(n))
    return hi ^ lo


def uniform(key: np.ndarray, n: int, minval: float = 0.0, maxval: float = 1.0) -> np.ndarray:
    """``jax.random.uniform(key, (n,), float32, minval, maxval)``: the top 23 bits as a mantissa."""
    bits = (random_bits(key, n) >> np.uint32(32 - 23)) | np.float32(1.0).view(np.uint32)
    floats = bits.view(np.float32) - np.float32(1.0)
    lo, hi = np.float32(minval), np.float32(maxval)
    return np.maximum(lo, floats * (hi - lo) + lo)


def gumbel(key: np.ndarray, n: int) -> np.ndarray:
    """``jax.random.gumbel(key, (n,), float32)`` in jax's default (low-range) mode."""
    u = uniform(key, n, minval=np.finfo(np.float32).tiny, maxval=1.0)
    return -np.log(-np.log(u))


def permutation(key: np.ndarray, n: int) -> np.ndarray:
    """``jax.random.permutation(key, n)``: rounds of stable sorts by fresh random words."""
    rounds = int(np.ceil(3 * np.log(max(1, n)) / np.log(_UINT32_MAX)))
    x = np.arange(n)
    for _ in range(rounds):
        key, subkey = split(key)
        x = x[np.argsort(random_bits(subkey, n), kind="stable")]
    return x


def choice_without_replacement(key: np.ndarray, n: int, size: int, p: np.ndarray | None = None) -> np.ndarray:
    """``jax.random.choice(key, n, (size,), replace=False, p=p)``.

    Without ``p``: the first ``size`` of a permutation. With ``p`` (float32): the Gumbel top-k
    trick, the ``size`` largest of ``gumbel + log(p)`` in decreasing order, the lower index
    first among equal values (as XLA's TopK).
    """
    if p is None:
        return permutation(key, n)[:size]
    with np.errstate(divide="ignore"):
        g = gumbel(key, n) + np.log(np.asarray(p, dtype=np.float32))
    return np.argsort(-g, kind="stable")[:size]
