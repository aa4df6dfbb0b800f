"""The checkpoint folder mirrored in S3 (moto's server on the loopback): stored, pulled back, cleaned.

What a preempted cloud job relies on: every checkpoint reaches the bucket in the background, a
fresh node gets the newest one back byte for byte, a stored set is never a mix of two
checkpoints, and a bucket that is missing or refuses the credentials is a clear error.
"""

from __future__ import annotations

import json
import logging

import pytest

from s3_server import ACCESS_KEY, SECRET_KEY, s3_server
from snakevi.train.checkpoint_mirror import CheckpointMirror
from snakevi.train.checkpoint_store import CheckpointStoreError, open_store

BUCKET = "ckpt"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with s3_server(tmp_path_factory.mktemp("s3") / "moto.log") as server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture
def s3_env(server, monkeypatch):
    """The settings Snakemake gives a remote job for snakemake-storage-plugin-s3."""
    monkeypatch.setenv("SNAKEMAKE_STORAGE_S3_ENDPOINT_URL", server.endpoint)
    monkeypatch.setenv("SNAKEMAKE_STORAGE_S3_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("SNAKEMAKE_STORAGE_S3_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("SNAKEMAKE_STORAGE_S3_REGION", "us-east-1")
    return server


def checkpoint_folder(folder, epoch: int):
    """A checkpoint folder as the recipe leaves it (a later phase in a subfolder)."""
    (folder / "scanvi").mkdir(parents=True, exist_ok=True)
    (folder / "fingerprint.json").write_text('{"fingerprint": "abc"}')
    (folder / "last.ckpt").write_bytes(bytes([epoch % 256]) * 100_000)
    (folder / "last.ckpt.sha256.json").write_text(json.dumps({"epoch": epoch}))
    (folder / "history.live.csv").write_text("epoch\n" + "".join(f"{e}\n" for e in range(epoch)))
    (folder / "scanvi" / "fingerprint.json").write_text('{"fingerprint": "def"}')
    (folder / ".last.ckpt.host-1-x.tmp").write_bytes(b"half written")  # never stored
    return folder


def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def test_a_fresh_node_gets_the_newest_checkpoint_back_and_the_bucket_keeps_one_set(tmp_path, s3_env, caplog):
    url = f"s3://{BUCKET}/run1/checkpoints"
    node1 = tmp_path / "node1" / "checkpoints"
    mirror = CheckpointMirror(node1, open_store(url))
    assert mirror.pull() is False  # nothing stored yet
    for epoch in (1, 2, 3):
        checkpoint_folder(node1, epoch)
        mirror.snapshot(phase="scvi", epochs=epoch)
    assert mirror.close() is True
    manifest = json.loads(s3_env.client().get_object(Bucket=BUCKET, Key="run1/checkpoints/manifest.json")["Body"].read())
    assert manifest["epochs"] == 3 and set(manifest["files"]) == set(files(node1))
    # One object per file of the newest set (unchanged files uploaded once, replaced ones deleted).
    keys = s3_env.keys(BUCKET, "run1/checkpoints/")
    assert sorted(keys) == sorted(["manifest.json", *(f["key"] for f in manifest["files"].values())])

    node2 = tmp_path / "node2" / "checkpoints"
    with caplog.at_level(logging.INFO, logger="snakevi.train.checkpoint_mirror"):
        assert CheckpointMirror(node2, open_store(url)).pull() is True
    assert files(node2) == files(node1)
    assert f"checkpoint (phase scvi, epochs 3) retrieved from {url}" in caplog.text


def test_a_node_with_its_own_checkpoint_keeps_it(tmp_path, s3_env):
    url = f"s3://{BUCKET}/run2/checkpoints"
    mirror = CheckpointMirror(checkpoint_folder(tmp_path / "a", 5), open_store(url))
    mirror.snapshot(epochs=5)
    mirror.close()
    local = checkpoint_folder(tmp_path / "b", 7)
    assert CheckpointMirror(local, open_store(url)).pull() is False
    assert (local / "last.ckpt").read_bytes() == bytes([7]) * 100_000


def test_a_stored_file_changed_in_the_bucket_is_refused(tmp_path, s3_env):
    url = f"s3://{BUCKET}/run3/checkpoints"
    mirror = CheckpointMirror(checkpoint_folder(tmp_path / "a", 2), open_store(url))
    mirror.snapshot(epochs=2)
    mirror.close()
    manifest = json.loads(s3_env.client().get_object(Bucket=BUCKET, Key="run3/checkpoints/manifest.json")["Body"].read())
    key = "run3/checkpoints/" + manifest["files"]["last.ckpt"]["key"]
    s3_env.client().put_object(Bucket=BUCKET, Key=key, Body=b"other bytes")
    with pytest.raises(CheckpointStoreError, match="does not have the SHA-256 that .*manifest.json records for last.ckpt"):
        CheckpointMirror(tmp_path / "b", open_store(url)).pull()
    assert not (tmp_path / "b" / "last.ckpt").exists()


def test_a_missing_bucket_is_named_with_the_fix(tmp_path, s3_env):
    store = open_store("s3://no-such-bucket/run/checkpoints")
    with pytest.raises(CheckpointStoreError, match=r"s3://no-such-bucket/run/checkpoints/manifest.json: the bucket "
                                                   r"'no-such-bucket' does not exist at http://127\.0\.0\.1:\d+: create it"):
        CheckpointMirror(tmp_path, store).pull()


def test_an_endpoint_that_does_not_answer_is_named(tmp_path, monkeypatch):
    from s3_server import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("SNAKEMAKE_STORAGE_S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("SNAKEMAKE_STORAGE_S3_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("SNAKEMAKE_STORAGE_S3_SECRET_KEY", SECRET_KEY)
    with pytest.raises(CheckpointStoreError, match=f"the S3 endpoint {endpoint} does not answer"):
        CheckpointMirror(tmp_path, open_store(f"s3://{BUCKET}/x")).pull()


def test_a_failed_upload_is_logged_and_training_goes_on(tmp_path, s3_env, caplog):
    mirror = CheckpointMirror(checkpoint_folder(tmp_path / "a", 1), open_store("s3://no-such-bucket/x"))
    with caplog.at_level(logging.WARNING, logger="snakevi.train.checkpoint_mirror"):
        mirror.snapshot(epochs=1)
        assert mirror.close() is False
    assert "could not store the checkpoint (epochs 1) in s3://no-such-bucket/x" in caplog.text
    assert "the bucket 'no-such-bucket' does not exist" in caplog.text


def test_only_s3_keeps_checkpoints():
    with pytest.raises(ValueError, match="snakevi keeps checkpoints in S3 .* only"):
        open_store("gs://bucket/run/checkpoints")
