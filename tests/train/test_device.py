import numpy as np
import pytest
import torch

from snakevi.train import Trainer
from snakevi.train.device import move_batch, resolve_device


@pytest.mark.parametrize("devices", ["auto", 1, [0], (0,)])
def test_cpu_accepts_single_device_specs(devices):
    assert resolve_device("cpu", devices) == torch.device("cpu")


@pytest.mark.parametrize("devices", [2, -1, [0, 1], "0,1", 0, True])
def test_several_devices_are_refused_with_advice(devices):
    with pytest.raises(ValueError, match="single device.*devices=1"):
        resolve_device("cpu", devices)


def test_unavailable_mps_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="accelerator='mps' was requested"):
        resolve_device("mps")


def test_unknown_accelerator_is_refused():
    with pytest.raises(ValueError, match="accelerator='tpu'"):
        resolve_device("tpu")


def test_auto_picks_an_available_device():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_unavailable_cuda_is_an_error_not_a_silent_cpu_run(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="accelerator='cuda' was requested.*accelerator='cpu'"):
        Trainer(accelerator="gpu")


def test_move_batch_converts_numpy_and_rejects_other_values():
    out = move_batch({"X": np.ones((2, 3), dtype=np.float32), "batch": torch.zeros(2, 1)}, torch.device("cpu"))
    assert isinstance(out["X"], torch.Tensor) and out["X"].dtype == torch.float32
    with pytest.raises(TypeError, match=r"minibatch\['X'\] is a list"):
        move_batch({"X": [1, 2]}, torch.device("cpu"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_epochs": 0}, "max_epochs=0"),
        ({"check_val_every_n_epoch": 0}, "check_val_every_n_epoch=0"),
        ({"gradient_clip_val": 0.0}, "gradient_clip_val=0.0"),
    ],
)
def test_trainer_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Trainer(accelerator="cpu", **kwargs)
