"""Keeping freed host memory (snakevi.train.host_memory): fewer page faults, the same numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from snakevi.train import host_memory

#: Trains a default SCVI at batch 1,024 in a fresh process and prints its history and latent.
_TRAIN = textwrap.dedent("""
    import json
    import torch
    torch.set_num_threads(1)
    from snakevi.data import simulate
    from snakevi.model import SCVI
    from snakevi.train import host_memory

    adata = simulate(3072, 2000, seed=0, n_batches=2)
    SCVI.setup_anndata(adata, batch_key="batch")
    model = SCVI(adata)
    model.train(max_epochs=3, batch_size=1024, train_size=0.75, check_val_every_n_epoch=1, seed=0,
                enable_progress_bar=False)
    history = {k: [float(v).hex() for v in model.history[k]] for k in model.history.columns}
    latent = model.get_latent_representation()
    print(json.dumps({"applied": host_memory._applied, "history": history,
                      "latent": [float(v).hex() for v in latent.ravel()]}))
""")

#: In a fresh process: where glibc puts an 8 MiB tensor (bytes it maps separately) and how much
#: the heap grew and kept once the tensor is freed (glibc's mallinfo2).
_ALLOCATE = textwrap.dedent("""
    import ctypes, json, sys
    import torch
    from snakevi.train import host_memory

    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Info
    if sys.argv[1] == "keep":
        host_memory.keep_freed_host_memory()
    before = libc.mallinfo2()
    tensor = torch.ones(2**21)  # 8 MiB, like a step's activation at 1,024 cells x 2,000 genes
    mapped = libc.mallinfo2().hblkhd - before.hblkhd
    del tensor
    print(json.dumps({"mapped": mapped, "heap_kept": libc.mallinfo2().arena - before.arena}))
""")


def _run(script: str, *args: str, keep: str = "1") -> dict:
    env = {**os.environ, host_memory.ENV_SWITCH: keep}
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


_GLIBC = pytest.mark.skipif(host_memory._glibc() is None,
                            reason="the setting needs glibc's mallopt; this C library is not glibc")


@_GLIBC
def test_training_gives_the_same_numbers_with_and_without_the_setting():
    kept, returned = _run(_TRAIN, keep="1"), _run(_TRAIN, keep="0")
    assert kept["applied"] is True and returned["applied"] is False
    # Same minibatches, same kernels (torch aligns its blocks to 64 bytes either way): bit-identical.
    assert kept["history"] == returned["history"]
    assert kept["latent"] == returned["latent"]


@_GLIBC
def test_a_freed_activation_stays_in_the_heap_for_the_next_step():
    libc = host_memory._glibc()
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("glibc older than 2.33 has no mallinfo2 to look at the heap with")
    default, kept = _run(_ALLOCATE, "default"), _run(_ALLOCATE, "keep")
    # glibc's default: a block this large gets a mapping of its own, unmapped again when freed.
    assert default["mapped"] >= 2**23 and default["heap_kept"] < 2**20, default
    # Kept: from the heap, which still holds it after the free, for the next step to reuse.
    assert kept["mapped"] == 0 and kept["heap_kept"] >= 2**23, kept


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setattr(host_memory, "_applied", None)
    monkeypatch.setenv(host_memory.ENV_SWITCH, "0")
    monkeypatch.setattr(host_memory, "_glibc", lambda: pytest.fail("the C library must not be touched"))
    assert host_memory.keep_freed_host_memory() is False


def test_a_c_library_other_than_glibc_is_left_alone(monkeypatch):
    monkeypatch.setattr(host_memory, "_applied", None)
    monkeypatch.delenv(host_memory.ENV_SWITCH, raising=False)
    monkeypatch.setattr(host_memory, "_glibc", lambda: None)
    assert host_memory.keep_freed_host_memory() is False


def test_applied_once_per_process(monkeypatch):
    calls = []

    class FakeLibc:
        class mallopt:  # noqa: N801 - stands in for the C function
            argtypes = None

            def __new__(cls, param, value):
                calls.append((param, value))
                return 1

    monkeypatch.setattr(host_memory, "_applied", None)
    monkeypatch.delenv(host_memory.ENV_SWITCH, raising=False)
    monkeypatch.setattr(host_memory, "_glibc", lambda: FakeLibc)
    assert host_memory.keep_freed_host_memory() is True
    assert host_memory.keep_freed_host_memory() is True
    assert calls == [(host_memory._M_MMAP_THRESHOLD, host_memory.MMAP_THRESHOLD),
                     (host_memory._M_TRIM_THRESHOLD, host_memory.TRIM_THRESHOLD)]
