import math

import pytest
from train_toys import ScriptedMetric, make_loaders, quiet_trainer, toy_plan

from snakevi.train import EarlyStopping


def _stop_index(values, **kwargs):
    """Position of the value that makes evaluate() say stop, or None."""
    es = EarlyStopping(monitor="m", **kwargs)
    for i, v in enumerate(values):
        stop, _ = es.evaluate(v)
        if stop:
            return i
    return None


@pytest.mark.parametrize(
    ("values", "kwargs", "expected"),
    [
        ([5, 4, 3, 2, 1], {"patience": 2}, None),  # always improving: never stops
        ([5, 4, 4, 4, 3], {"patience": 2}, 3),  # 2 records without improvement (equal is not better)
        ([5, 4, 4.5, 3, 3, 3], {"patience": 2}, 5),  # the count restarts on improvement
        ([5, 4.95, 4.9, 1], {"patience": 2, "min_delta": 0.1}, 2),  # small gains do not count
        ([1, 2, 3, 3, 3], {"patience": 2, "mode": "max"}, 4),
        ([1, 0, 0, 5], {"patience": 2, "mode": "max"}, 2),
        ([5, float("nan"), 1], {"patience": 10}, 1),  # non-finite stops at once
        ([5, float("nan"), 1], {"patience": 10, "check_finite": False}, None),
    ],
)
def test_evaluate_table(values, kwargs, expected):
    assert _stop_index(values, **kwargs) == expected


def test_evaluate_reasons():
    es = EarlyStopping(monitor="elbo_validation", patience=2)
    assert es.evaluate(10.0) == (False, "Metric elbo_validation improved. New best score: 10.000")
    assert es.evaluate(9.5) == (
        False,
        "Metric elbo_validation improved by 0.500 >= min_delta = 0.0. New best score: 9.500",
    )
    assert es.evaluate(9.7) == (False, None)
    assert es.evaluate(9.6) == (
        True,
        "Monitored metric elbo_validation did not improve in the last 2 records. Best score: 9.500. Signaling Trainer to stop.",
    )
    stop, reason = EarlyStopping(monitor="x").evaluate(math.inf)
    assert stop and "Monitored metric x = inf is not finite" in reason


def _fit_scripted(values, max_epochs, **es_kwargs):
    train, _ = make_loaders()
    es = EarlyStopping(monitor="scripted", **es_kwargs)
    trainer = quiet_trainer(max_epochs=max_epochs, callbacks=[ScriptedMetric("scripted", values), es])
    trainer.fit(toy_plan(), train)
    return trainer, es


def test_stops_at_the_right_epoch_and_says_why(capsys):
    values = [10, 9, 8, 8.5, 8.2, 8.1, 7, 7, 7]
    trainer, es = _fit_scripted(values, max_epochs=9, patience=3)
    # best 8 at epoch 2; epochs 3, 4, 5 do not improve -> stop after epoch 5
    assert len(trainer.history) == 6 and trainer.current_epoch == 6
    assert trainer.should_stop and es.stopped_epoch == 5 and es.best_epoch == 2
    expected = (
        "Monitored metric scripted did not improve in the last 3 records. Best score: 8.000. Signaling Trainer to stop."
    )
    assert trainer.stop_reason == expected
    assert expected in capsys.readouterr().err


def test_warmup_epochs_are_ignored():
    # Without warm-up the early 1.0 would be the best and stop the run at epoch 3.
    values = [1.0, 9.0, 8.0, 7.0, 7.0, 7.0, 6.0]
    trainer, _ = _fit_scripted(values, max_epochs=7, patience=3)
    assert len(trainer.history) == 4
    trainer, es = _fit_scripted(values, max_epochs=7, patience=3, warmup_epochs=1)
    assert len(trainer.history) == 7 and not trainer.should_stop and es.best_score == 6.0


def test_no_validation_set_is_a_clear_error():
    train, _ = make_loaders()
    trainer = quiet_trainer(max_epochs=2, callbacks=[EarlyStopping()])
    with pytest.raises(ValueError, match="EarlyStopping monitor a validation metric but fit\\(\\) got val_loader=None"):
        trainer.fit(toy_plan(), train)


def test_a_metric_that_never_appears_is_a_clear_error():
    train, _ = make_loaders()
    trainer = quiet_trainer(max_epochs=2, callbacks=[EarlyStopping(monitor="elbo_trian")])
    with pytest.raises(KeyError, match="monitor='elbo_trian'.*not logged in epoch 0.*'elbo_train'"):
        trainer.fit(toy_plan(), train)


def test_monitors_elbo_validation_on_a_real_fit():
    train, val = make_loaders()
    es = EarlyStopping(patience=2)
    trainer = quiet_trainer(max_epochs=3, callbacks=[es])
    trainer.fit(toy_plan(), train, val)
    assert all("elbo_validation" in row for row in trainer.history)
    assert es.best_score == min(row["elbo_validation"] for row in trainer.history)


def test_state_round_trip():
    es = EarlyStopping(patience=5)
    es.evaluate(3.0)
    es.evaluate(4.0)
    other = EarlyStopping(patience=5)
    other.load_state_dict(es.state_dict())
    assert (other.best_score, other.wait_count) == (3.0, 1)
