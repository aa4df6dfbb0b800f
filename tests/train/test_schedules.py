import warnings

import pytest

from snakevi.train import compute_kl_weight, get_max_epochs_heuristic


@pytest.mark.parametrize(
    ("epoch", "step", "n_epochs", "n_steps", "max_w", "min_w", "expected"),
    [
        # epoch-based warm-up (scvi-tools' own table)
        (0, 1, 400, None, 1.0, 0.0, 0.0),
        (200, 1, 400, None, 1.0, 0.0, 0.5),
        (400, 1, 400, None, 1.0, 0.0, 1.0),
        (0, 1, 400, None, 1.0, 0.5, 0.5),
        (200, 1, 400, None, 1.0, 0.5, 0.75),
        (400, 1, 400, None, 2.0, 0.0, 2.0),
        (1000, 1, 400, None, 1.0, 0.0, 1.0),  # clamped at max after warm-up
        # step-based warm-up, used only when the epoch count is unset
        (0, 0, None, 100, 1.0, 0.0, 0.0),
        (0, 25, None, 100, 1.0, 0.0, 0.25),
        (0, 100, None, 100, 1.0, 0.0, 1.0),
        (0, 5000, None, 100, 1.0, 0.0, 1.0),
        (0, 25, 0, 100, 1.0, 0.0, 0.25),  # 0 epochs counts as unset
        # epochs override steps
        (10, 0, 20, 100, 1.0, 0.0, 0.5),
        (30, 0, 20, 100, 1.0, 0.0, 1.0),
        # neither set: max from the start
        (0, 0, None, None, 1.0, 0.0, 1.0),
        (0, 0, None, None, 0.3, 0.1, 0.3),
    ],
)
def test_compute_kl_weight_table(epoch, step, n_epochs, n_steps, max_w, min_w, expected):
    got = compute_kl_weight(epoch, step, n_epochs, n_steps, max_kl_weight=max_w, min_kl_weight=min_w)
    assert isinstance(got, float)
    assert got == pytest.approx(expected)


def test_compute_kl_weight_rejects_min_above_max():
    with pytest.raises(ValueError, match="min_kl_weight=0.9 is larger than max_kl_weight=0.5"):
        compute_kl_weight(0, 0, 10, None, max_kl_weight=0.5, min_kl_weight=0.9)


@pytest.mark.parametrize(
    ("n_obs", "cap", "decay", "expected"),
    [
        (100, 400, 20000, 400),  # small data: capped
        (20000, 400, 20000, 400),
        (40000, 400, 20000, 200),
        (100000, 400, 20000, 80),  # the documented example
        (1000000, 400, 20000, 8),
        (8000000, 400, 20000, 1),  # 1.0 exactly
        (1000, 50, 20000, 50),
        (30000, 400, 10000, 133),
    ],
)
def test_max_epochs_heuristic_table(n_obs, cap, decay, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert get_max_epochs_heuristic(n_obs, epochs_cap=cap, decay_at_n_obs=decay) == expected


def test_max_epochs_heuristic_warns_at_one_epoch():
    with pytest.warns(UserWarning, match="max_epochs=1"):
        assert get_max_epochs_heuristic(50_000_000) == 1


def test_max_epochs_heuristic_does_not_warn_above_one(recwarn):
    assert get_max_epochs_heuristic(1_000_000) == 8
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


def test_max_epochs_heuristic_rejects_empty_data():
    with pytest.raises(ValueError, match="n_obs=0"):
        get_max_epochs_heuristic(0)
