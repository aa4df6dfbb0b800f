"""DataSplitter: scvi-tools' split sizes (tail-move rule), permutation, loaders, external indexing."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

from snakevi.data import CellData, DataSplitter, validate_data_split


def _data(n: int) -> CellData:
    obs = {"batch": np.zeros((n, 1), np.int64), "labels": np.zeros((n, 1), np.int64)}
    return CellData(np.arange(n, dtype=np.float32)[:, None], obs, {"summary": {"n_batch": 1}})


# Expected values worked out by hand from scvi-tools' rule:
# n_train = ceil(train_size * n); n_val = floor(validation_size * n) or n - n_train; then if
# n_train % batch_size is 1 or 2 and not drop_last: move the tail to validation when train_size
# was not given (to test when n_val is 0), else only warn.
CASES = [
    # n,   train, val,  bs,  drop,  (n_train, n_val, n_test), warns
    (1000, None, None, 128, False, (900, 100, 0), None),    # 900 % 128 = 4
    (143, None, None, 128, False, (128, 15, 0), "moved"),   # ceil(128.7)=129, tail 1 -> val 14+1
    (144, None, None, 128, False, (128, 16, 0), "moved"),   # ceil(129.6)=130, tail 2 -> val 14+2
    (145, None, None, 128, False, (131, 14, 0), None),      # ceil(130.5)=131, tail 3: kept
    (143, 0.9, None, 128, False, (129, 14, 0), "Last|last"),  # user gave train_size: warn only
    (143, None, None, 128, True, (129, 14, 0), None),       # drop_last: nothing to fix
    (143, None, 0.05, 128, False, (128, 8, 7), "moved"),    # n_val = floor(7.15) = 7, +1
    (143, None, 0.0, 128, False, (128, 0, 15), "test set"),  # n_val 0: the tail goes to test
    (1000, 0.5, 0.3, 128, False, (500, 300, 200), None),
    (300, 1.0, None, 64, False, (300, 0, 0), None),
    (10, None, None, 4, False, (8, 2, 0), "moved"),         # ceil(9.0) = 9, 9 % 4 = 1 -> val 1+1
]


@pytest.mark.parametrize("n, train, val, bs, drop, sizes, warns", CASES)
def test_split_sizes_follow_scvi_rule(n, train, val, bs, drop, sizes, warns):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = DataSplitter(_data(n), train_size=train, validation_size=val, batch_size=bs, drop_last=drop)
    assert (len(s.train_idx), len(s.val_idx), len(s.test_idx)) == sizes
    messages = " ".join(str(w.message) for w in caught)
    if warns is None:
        assert not caught, messages
    else:
        assert caught and any(m in messages for m in warns.split("|")), messages


def test_validate_data_split_without_batch_size_never_moves_cells():
    assert validate_data_split(10, 0.9) == (9, 1)


def test_split_is_the_scvi_permutation_sliced_val_train_test():
    s = DataSplitter(_data(1000), train_size=0.5, validation_size=0.3, seed=7)
    perm = np.random.RandomState(7).permutation(1000)
    np.testing.assert_array_equal(s.val_idx, perm[:300])
    np.testing.assert_array_equal(s.train_idx, perm[300:800])
    np.testing.assert_array_equal(s.test_idx, perm[800:])


def test_no_shuffle_slices_in_order():
    s = DataSplitter(_data(100), train_size=0.5, validation_size=0.2, batch_size=10, shuffle_set_split=False)
    np.testing.assert_array_equal(s.val_idx, np.arange(20))
    np.testing.assert_array_equal(s.train_idx, np.arange(20, 70))


@pytest.mark.parametrize(
    "train, val, match",
    [(0.0, None, r"train_size must be in \(0, 1\]"), (1.5, None, "train_size"),
     (0.5, 1.0, r"validation_size must be in \[0, 1\)"), (0.8, 0.3, "at most 1")],
)
def test_bad_sizes(train, val, match):
    with pytest.raises(ValueError, match=match):
        DataSplitter(_data(100), train_size=train, validation_size=val, batch_size=8)


def test_batch_size_larger_than_training_set_trains_one_short_minibatch(caplog):
    # scvi-tools trains with one smaller minibatch; the log says so.
    with caplog.at_level(logging.INFO, logger="snakevi.data.splitter"):
        s = DataSplitter(_data(100), batch_size=128)
    assert len(s.train_idx) == 90
    batches = list(s.train_dataloader())
    assert [len(b["X"]) for b in batches] == [90]
    assert "batch_size=128 is larger than the training set (90 of 100 cells)" in caplog.text
    assert "one minibatch of 90 cells" in caplog.text


# The training-set edge cases: (n_obs, train_size, batch_size, drop_last) -> training cells, or the error.
EDGE_CASES = [
    (3, None, 128, False, 3, None),            # ceil(2.7) = 3 cells, tail 3: kept, one minibatch of 3
    (10, 0.2, 128, False, 2, None),            # given train_size: a 2-cell tail only warns (scvi-tools)
    (2, None, 128, False, None, r"Too few cells to train: 2 cell\(s\) leave 0"),  # the 2-cell tail is moved
    (1, None, 128, False, None, r"Too few cells to train: 1 cell\(s\) leave 0"),  # item 12's one-cell AnnData
    (1, 1.0, 128, False, None, r"Too few cells to train: 1 cell\(s\) leave 1"),   # one cell breaks BatchNorm
    (100, None, 128, True, None, r"drop_last=True would drop the only training minibatch.*90 of 100"),
]


@pytest.mark.parametrize("n, train, bs, drop, n_train, error", EDGE_CASES)
def test_training_set_edge_cases(n, train, bs, drop, n_train, error):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if error is not None:
            with pytest.raises(ValueError, match=error) as info:
                DataSplitter(_data(n), train_size=train, batch_size=bs, drop_last=drop)
            assert "batch_size <= 0" not in str(info.value)
            return
        s = DataSplitter(_data(n), train_size=train, batch_size=bs, drop_last=drop)
    assert [len(b["X"]) for b in s.train_dataloader()] == [n_train]


def test_one_cell_message_says_what_to_do():
    with pytest.raises(ValueError) as info:
        DataSplitter(_data(1))
    message = str(info.value)
    assert "Too few cells to train" in message and "at least 3 cells" in message
    assert "batch_size" not in message


def test_external_indexing_with_a_short_training_set():
    s = DataSplitter(_data(100), batch_size=128, external_indexing=[np.arange(50), np.arange(50, 100)])
    assert [len(b["X"]) for b in s.train_dataloader()] == [50]
    with pytest.raises(ValueError, match=r"Too few cells to train: 100 cell\(s\) leave 1"):
        DataSplitter(_data(100), batch_size=128, external_indexing=[np.arange(1), np.arange(1, 100)])


def test_loaders_cover_their_sets():
    s = DataSplitter(_data(100), train_size=0.6, validation_size=0.3, batch_size=16, seed=1)
    train = s.train_dataloader()
    assert train.shuffle and not s.val_dataloader().shuffle and not s.test_dataloader().shuffle
    train.set_epoch(1)
    seen = np.concatenate([b["X"][:, 0].numpy() for b in train]).astype(int)
    assert sorted(seen) == sorted(s.train_idx)
    val = np.concatenate([b["X"][:, 0].numpy() for b in s.val_dataloader()]).astype(int)
    np.testing.assert_array_equal(val, s.val_idx)  # in order


def test_empty_sets_have_no_loader():
    s = DataSplitter(_data(50), train_size=1.0, batch_size=10)
    assert s.val_dataloader() is None and s.test_dataloader() is None


def test_external_indexing_is_used_as_given():
    train, val, test = np.arange(0, 60), np.arange(60, 90), np.arange(90, 100)
    s = DataSplitter(_data(100), batch_size=16, external_indexing=[train, val, test])
    np.testing.assert_array_equal(s.train_idx, train)
    np.testing.assert_array_equal(s.val_idx, val)
    np.testing.assert_array_equal(s.test_idx, test)
    s = DataSplitter(_data(100), batch_size=16, external_indexing=[np.arange(100)])
    assert len(s.val_idx) == 0 and len(s.test_idx) == 0


@pytest.mark.parametrize(
    "sets, match",
    [
        ([np.array([0, 0, 1]), np.arange(2, 10)], r"train set lists 1 position\(s\) more than once, e.g. \[0\]"),
        ([np.arange(6), np.arange(5, 10)], "train and validation sets share 1"),
        ([np.arange(5), np.arange(5, 11)], r"outside \[0, 10\)"),
        ([np.arange(5), np.arange(5, 9)], "assigns 9 of 10 cells"),
        ([np.arange(5.0), np.arange(5, 10)], "integer positions"),
    ],
)
def test_external_indexing_errors(sets, match):
    with pytest.raises(ValueError, match=match):
        DataSplitter(_data(10), batch_size=2, external_indexing=sets)
