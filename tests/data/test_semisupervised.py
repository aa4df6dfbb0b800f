"""Semi-supervised split and (full, labelled) pair loader: sizes, cycling, sub-sampling, determinism."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from snakevi.data import CellData, SemiSupervisedDataLoader, SemiSupervisedDataSplitter, setup_anndata
from snakevi.data.device_loader import DeviceCellData
from snakevi.data.semisupervised import labelled_mask, unlabeled_code
from snakevi.data.splitter import validate_data_split

N_OBS = 40


@pytest.fixture()
def data(new_adata):
    """40 cells; labels t0/t1/t2 with every 4th cell 'unknown' (10 unlabelled, 30 labelled)."""
    adata = new_adata(n_obs=N_OBS, fmt="csr")
    labels = np.array([f"t{i % 3}" for i in range(N_OBS)], dtype=object)
    labels[::4] = "unknown"
    adata.obs["cell_type"] = pd.Categorical(labels)
    setup_anndata(adata, batch_key="batch", labels_key="cell_type", unlabeled_category="unknown",
                  continuous_covariate_keys=["age"])
    return CellData.from_anndata(adata)


def _cells(batch) -> list[int]:
    """Cell positions of a minibatch, from the 'age' covariate (unique per cell)."""
    ages = np.linspace(20.0, 60.0, N_OBS).astype(np.float32)
    return [int(np.argmin(np.abs(ages - a))) for a in batch["extra_continuous_covs"][:, 0].numpy()]


def test_unlabelled_code_and_mask(data):
    code = unlabeled_code(data.registry)
    assert data.registry["fields"]["labels"]["categorical_mapping"][code] == "unknown"
    mask = labelled_mask(data)
    assert mask.sum() == 30 and not mask[::4].any()


def test_pairs_cycle_the_labelled_loader_to_the_full_length(data):
    labelled = np.flatnonzero(labelled_mask(data))
    loader = SemiSupervisedDataLoader(data, batch_size=8)
    assert len(loader) == 5  # ceil(40 / 8): the full loader sets the length
    pairs = list(loader)
    assert len(pairs) == 5 and all(isinstance(p, tuple) and len(p) == 2 for p in pairs)
    full_cells = [c for full, _ in pairs for c in _cells(full)]
    assert full_cells == list(range(N_OBS))
    lab_cells = [_cells(lab) for _, lab in pairs]
    # 30 labelled cells in batches of 8: 8, 8, 8, 6, then the cycle starts again.
    assert [len(c) for c in lab_cells] == [8, 8, 8, 6, 8]
    assert sorted(c for cells in lab_cells[:4] for c in cells) == sorted(labelled.tolist())
    assert lab_cells[4] == lab_cells[0]  # unshuffled: the second pass starts where the first did
    for _, lab in pairs:
        assert (lab["labels"].numpy() != unlabeled_code(data.registry)).all()


def test_shuffled_passes_are_seeded_by_seed_and_epoch(data):
    def epoch_cells(seed, epoch):
        loader = SemiSupervisedDataLoader(data, batch_size=8, shuffle=True, seed=seed)
        loader.set_epoch(epoch)
        return [(_cells(f), _cells(lab)) for f, lab in loader]

    a = epoch_cells(0, 1)
    assert a == epoch_cells(0, 1)
    assert a != epoch_cells(0, 2) and a != epoch_cells(1, 1)
    # Full minibatches follow AnnDataLoader's order; a second labelled pass is reshuffled.
    from snakevi.data import AnnDataLoader

    plain = AnnDataLoader(data, batch_size=8, shuffle=True, seed=0)
    plain.set_epoch(1)
    assert [f for f, _ in a] == [_cells(b) for b in plain]
    first_pass = [c for _, lab in a[:4] for c in lab]
    assert sorted(first_pass) == sorted(np.flatnonzero(labelled_mask(data)).tolist())
    assert a[4][1] != a[0][1]


def test_n_samples_per_label_and_resampling_by_epoch(data):
    loader = SemiSupervisedDataLoader(data, batch_size=4, shuffle=True, n_samples_per_label=3, seed=2)
    codes = data.obs["labels"][:, 0]
    picked0 = loader.labelled_indices.copy()
    assert picked0.size == 9 and np.bincount(codes[picked0]).max() == 3
    loader.set_epoch(1)
    loader.resample_labels()
    picked1 = loader.labelled_indices.copy()
    assert picked1.size == 9 and not np.array_equal(np.sort(picked0), np.sort(picked1))
    # Same (seed, epoch), same draw: what a resumed run needs.
    again = SemiSupervisedDataLoader(data, batch_size=4, shuffle=True, n_samples_per_label=3, seed=2)
    again.set_epoch(1)
    again.resample_labels()
    np.testing.assert_array_equal(again.labelled_indices, picked1)
    # Classes with fewer cells than asked keep them all.
    big = SemiSupervisedDataLoader(data, n_samples_per_label=50)
    assert big.labelled_indices.size == 30
    with pytest.raises(ValueError, match="n_samples_per_label"):
        SemiSupervisedDataLoader(data, n_samples_per_label=0)


def _shard_steps(data, indices, world_size: int, pad: bool, batch_size: int, n_samples_per_label=None):
    """Per step, the (full cells, labelled cells) of all ranks together, epoch 1 (labels drawn anew)."""
    steps: dict[int, tuple[list, list]] = {}
    for rank in range(world_size):
        loader = SemiSupervisedDataLoader(data, indices, batch_size=batch_size, shuffle=True, seed=3,
                                          n_samples_per_label=n_samples_per_label)
        if world_size > 1:
            loader.shard(rank, world_size, pad=pad)
        loader.set_epoch(1)
        loader.resample_labels()
        for k, pair in enumerate(loader):
            full, lab = pair if isinstance(pair, tuple) else (pair, None)
            step = steps.setdefault(k, ([], []))
            step[0].extend(_cells(full))
            step[1].extend([] if lab is None else _cells(lab))
    return [(sorted(f), sorted(lab)) for f, lab in steps.values()]


def test_shards_of_the_pairs_are_the_pairs_of_one_process_with_the_doubled_batch(data):
    # Training (pad): 32 cells, 6 labelled per class drawn (18), cycled over 4 steps.
    train = np.arange(32)
    assert _shard_steps(data, train, 2, True, 4, 6) == _shard_steps(data, train, 1, True, 8, 6)
    # 7 per class (21) is padded to 22 over 2 ranks: each rank has labelled cells in every step.
    for rank in range(2):
        loader = SemiSupervisedDataLoader(data, train, batch_size=4, shuffle=True, n_samples_per_label=7, seed=3)
        loader.shard(rank, 2, pad=True)
        assert all(isinstance(pair, tuple) and len(_cells(pair[1])) >= 1 for pair in loader)
    # Validation (no pad): 9 cells, so the last full minibatch (1 cell) reaches rank 0 only,
    # which takes that step's whole labelled minibatch; each cell counts once.
    val = np.arange(31, 40)
    assert _shard_steps(data, val, 2, False, 4) == _shard_steps(data, val, 1, False, 8)
    assert _shard_steps(data, val, 3, False, 2) == _shard_steps(data, val, 1, False, 6)


def test_no_labelled_cells_yields_plain_dicts(data):
    unlabelled = np.flatnonzero(~labelled_mask(data))
    loader = SemiSupervisedDataLoader(data, indices=unlabelled, batch_size=4)
    batches = list(loader)
    assert len(batches) == 3 and all(isinstance(b, dict) for b in batches)


def test_split_follows_the_group_rule_with_one_seed(data):
    splitter = SemiSupervisedDataSplitter(data, train_size=0.8, batch_size=8, seed=4)
    labelled = np.flatnonzero(labelled_mask(data))
    unlabelled = np.flatnonzero(~labelled_mask(data))
    expected = {"train": [], "val": [], "test": []}
    for group in (labelled, unlabelled):
        n_train, n_val = validate_data_split(group.size, 0.8, None, 8, False, train_size_is_none=False)
        perm = group[np.random.RandomState(4).permutation(group.size)]
        expected["val"].append(perm[:n_val])
        expected["train"].append(perm[n_val : n_val + n_train])
        expected["test"].append(perm[n_val + n_train :])
    np.testing.assert_array_equal(splitter.train_idx, np.concatenate(expected["train"]))
    np.testing.assert_array_equal(splitter.val_idx, np.concatenate(expected["val"]))
    assert splitter.test_idx.size == 0
    # 30 labelled -> 24 train / 6 validation; 10 unlabelled -> 8 / 2: the shares are kept.
    assert labelled_mask(data)[splitter.train_idx].sum() == 24 and labelled_mask(data)[splitter.val_idx].sum() == 6
    train, val = splitter.train_dataloader(), splitter.val_dataloader()
    assert isinstance(train, SemiSupervisedDataLoader) and train.shuffle and not val.shuffle
    assert len(train) == 4 and len(val) == 1


def test_split_warns_once_about_a_tiny_last_training_batch(data):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        SemiSupervisedDataSplitter(data, train_size=0.9, batch_size=35)  # 27 + 9 = 36 train cells
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "only 1 cell" in messages[0]


def test_without_labelled_cells_the_splitter_gives_plain_loaders(new_adata):
    adata = new_adata(n_obs=20)
    adata.obs["cell_type"] = "unknown"
    setup_anndata(adata, labels_key="cell_type", unlabeled_category="unknown")
    splitter = SemiSupervisedDataSplitter(CellData.from_anndata(adata), batch_size=4)
    assert not splitter.has_labels
    assert all(isinstance(b, dict) for b in splitter.train_dataloader())


def test_device_gathering_gives_the_same_pairs(data):
    host = SemiSupervisedDataLoader(data, batch_size=8, shuffle=True, seed=1)
    on_device = SemiSupervisedDataLoader(
        DeviceCellData(data, "cpu"), batch_size=8, shuffle=True, seed=1,
        labels=data.obs["labels"][:, 0], unlabeled_code=unlabeled_code(data.registry),
    )
    for loader in (host, on_device):
        loader.set_epoch(3)
    for (fa, la), (fb, lb) in zip(host, on_device, strict=True):
        for a, b in ((fa, fb), (la, lb)):
            assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="labels= and unlabeled_code="):
        SemiSupervisedDataLoader(DeviceCellData(data, "cpu"))


def test_batch_size_larger_than_the_training_set_trains_one_short_minibatch(data, caplog):
    # 27 labelled + 9 unlabelled training cells, batch_size 128: one pair per epoch (scvi-tools).
    with caplog.at_level("INFO", logger="snakevi.data.splitter"):
        splitter = SemiSupervisedDataSplitter(data, train_size=0.9, batch_size=128)
    pairs = list(splitter.train_dataloader())
    assert len(pairs) == 1
    full, labelled = pairs[0]
    assert len(full["X"]) == 36 and len(labelled["X"]) == 27
    assert "batch_size=128 is larger than the training set (36 of 40 cells)" in caplog.text


def test_too_few_cells_to_train_is_refused_clearly(new_adata):
    adata = new_adata(n_obs=1)
    adata.obs["cell_type"] = pd.Categorical(["t0"])
    setup_anndata(adata, labels_key="cell_type", unlabeled_category="unknown")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ValueError, match=r"Too few cells to train: 1 cell\(s\) leave 1") as info:
            SemiSupervisedDataSplitter(CellData.from_anndata(adata), train_size=0.9)
    assert "batch_size <=" not in str(info.value)
