"""Checkpoints carry a SHA-256 beside them: a changed byte is refused before resuming, old ones resume."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from tamper import flip_a_tensor_byte
from train_toys import make_loaders, quiet_trainer, toy_plan

import snakevi._atomic
from snakevi.train import ModelCheckpoint, load_checkpoint
from snakevi.train.checkpoint_io import digest_path, write_checkpoint


def _fit(dirpath, max_epochs, ckpt_path=None):
    train, _ = make_loaders()
    trainer = quiet_trainer(max_epochs=max_epochs, seed=3, callbacks=[ModelCheckpoint(dirpath, save_best=False)])
    trainer.fit(toy_plan(seed=1), train, ckpt_path=ckpt_path)
    return trainer


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_each_checkpoint_has_the_sha256_of_its_bytes_beside_it(tmp_path):
    _fit(tmp_path, 2)
    side = digest_path(tmp_path / "last.ckpt")
    assert side.name == "last.ckpt.sha256.json"
    assert json.loads(side.read_text()) == {"file": "last.ckpt", "sha256": [_sha256(tmp_path / "last.ckpt")]}


def test_one_changed_byte_in_a_checkpoint_is_refused_before_resuming(tmp_path):
    _fit(tmp_path, 2)
    last = tmp_path / "last.ckpt"
    recorded = _sha256(last)
    flip_a_tensor_byte(last)
    torch.load(last, weights_only=True)  # torch alone would resume from it silently
    with pytest.raises(ValueError) as info:
        _fit(tmp_path, 4, ckpt_path=last)
    message = str(info.value)
    assert f"checkpoint {last} is damaged" in message and recorded in message and _sha256(last) in message
    assert "delete it to train from scratch" in message
    with pytest.raises(ValueError, match="is damaged"):
        load_checkpoint(last)
    assert load_checkpoint(last, verify=False)["epoch"] == 2


def test_a_checkpoint_without_a_digest_resumes_as_before(tmp_path):
    straight = _fit(tmp_path / "straight", 4)
    _fit(tmp_path / "cut", 2)
    digest_path(tmp_path / "cut" / "last.ckpt").unlink()  # as written by an older snakevi
    resumed = _fit(tmp_path / "cut", 4, ckpt_path=tmp_path / "cut" / "last.ckpt")
    assert resumed.history == straight.history
    # The next save gives it a digest again.
    assert json.loads(digest_path(tmp_path / "cut" / "last.ckpt").read_text())["sha256"] == [
        _sha256(tmp_path / "cut" / "last.ckpt")]


class _Killed(BaseException):
    """Stands for a SIGKILL at one point of a save: nothing after it runs."""


@pytest.mark.parametrize("at", ["before the rename", "after the rename"])
def test_a_save_killed_midway_leaves_a_checkpoint_its_digest_accepts(tmp_path, monkeypatch, at):
    path = tmp_path / "last.ckpt"
    write_checkpoint({"format_version": 1, "step": torch.tensor([1.0])}, path)
    real_replace = snakevi._atomic.os.replace
    renamed = []

    def replace(src, dst):
        if at == "before the rename" and str(dst) == str(path):
            raise _Killed
        if at == "after the rename" and str(dst) == str(digest_path(path)) and str(path) in renamed:
            raise _Killed  # the file is renamed; its sidecar's final write never happens
        real_replace(src, dst)
        renamed.append(str(dst))

    monkeypatch.setattr(snakevi._atomic.os, "replace", replace)
    with pytest.raises(_Killed):
        write_checkpoint({"format_version": 1, "step": torch.tensor([2.0])}, path)
    monkeypatch.undo()
    expected = 1.0 if at == "before the rename" else 2.0
    assert load_checkpoint(path)["step"].item() == expected
    write_checkpoint({"format_version": 1, "step": torch.tensor([3.0])}, path)
    assert json.loads(digest_path(path).read_text())["sha256"] == [_sha256(path)]
