import pytest
import torch

from snakevi.module.base import LossOutput
from snakevi.train import EpochMetrics


def _output(rec, kl, kl_global=0.0, loss=None, extra=None):
    rec, kl = torch.tensor(rec), torch.tensor(kl)
    return LossOutput(
        loss=torch.tensor(loss if loss is not None else float((rec + kl).mean())),
        reconstruction_loss=rec,
        kl_local={"kl_divergence_z": kl},
        kl_global=torch.tensor(kl_global),
        extra_metrics=extra or {},
    )


def test_epoch_metrics_match_the_scvi_definitions():
    m = EpochMetrics("train")
    m.update(_output([1.0, 2.0, 3.0], [0.5, 0.5, 0.5], kl_global=3.0, loss=10.0, extra={"acc": torch.tensor(0.2)}))
    m.update(_output([4.0], [1.0], kl_global=1.0, loss=2.0, extra={"acc": torch.tensor(1.0)}))
    got = m.compute(n_obs_total=10)
    rec = (1 + 2 + 3 + 4) / 4
    kl_local = (0.5 * 3 + 1.0) / 4
    kl_global = (3.0 + 1.0) / 2  # per minibatch
    assert got == pytest.approx(
        {
            "train_loss": (10.0 * 3 + 2.0 * 1) / 4,  # weighted by minibatch size
            "elbo_train": rec + kl_local + kl_global / 10,
            "reconstruction_loss_train": rec,
            "kl_local_train": kl_local,
            "kl_global_train": kl_global,
            "acc_train": (0.2 * 3 + 1.0) / 4,
        }
    )
    assert all(isinstance(v, float) for v in got.values())


def test_compute_resets_and_empty_epoch_gives_nothing():
    m = EpochMetrics("validation")
    m.update(_output([1.0], [1.0]))
    assert set(m.compute(None)) == {
        "validation_loss",
        "elbo_validation",
        "reconstruction_loss_validation",
        "kl_local_validation",
        "kl_global_validation",
    }
    assert m.compute(None) == {}


def test_update_keeps_sums_on_the_device_as_tensors():
    m = EpochMetrics("train")
    m.update(_output([1.0, 2.0], [0.0, 0.0]))
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in m._sums.values())


def test_non_scalar_extra_metric_is_rejected_by_name():
    m = EpochMetrics("train")
    with pytest.raises(ValueError, match=r"extra_metrics\['per_cell'\] has shape \(2,\)"):
        m.update(_output([1.0, 2.0], [0.0, 0.0], extra={"per_cell": torch.ones(2)}))


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="mode='test'"):
        EpochMetrics("test")
