"""The workflow with no shared filesystem: every file through object storage, every job on a fresh node.

A real S3 server on the loopback (moto's) is the bucket; Snakemake runs with
``--default-storage-provider s3 --shared-fs-usage none`` and the cluster-generic executor,
whose submit script (cloud/submit.sh) starts each job in a new empty directory holding only the
workflow sources and the config, as a job image on a cloud node would. So a job that read
anything from the submitting directory, or left a result only on its node, fails here.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import anndata
import pytest

from s3_server import s3_server
from wf_helpers import REPO, snakemake, snakemake_command, write_config

CLOUD = Path(__file__).parent / "cloud"
DATA = REPO.parent / "shared" / "data"
BUCKET = "snakevi-test"
#: What a checkout holds that the jobs need (and what a job image would).
SOURCES = ("Snakefile", "workflow", "scripts", "envs")
RUN_FILES = ["registry.json", "prepared/loader.json", "model/model.pt", "model/model.json", "history.csv",
             "latent.npy", "embedding.h5ad", "report/metrics.json", "report/metrics.tsv", "report/integration.json",
             "report/integration.png", "report/latent_batch.png", "report/loss_elbo.png"]


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    with s3_server(tmp_path_factory.mktemp("s3") / "moto.log") as server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server


def checkout(workdir: Path, config: dict) -> Path:
    """The workflow sources and a config in ``workdir``: where a user submits from."""
    workdir.mkdir(parents=True)
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, workdir / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, workdir / name)
    write_config(workdir, config)
    return workdir


def fresh_nodes_command(workdir: Path, server, prefix: str, *args: str, nodes: Path):
    """The snakemake command (and environment) that runs every job of ``workdir`` on a fresh node under ``nodes``."""
    nodes.mkdir()
    return snakemake_command(workdir, "--cores", "2", "--jobs", "2", "--executor", "cluster-generic",
                             "--cluster-generic-submit-cmd", str(CLOUD / "submit.sh"),
                             "--cluster-generic-status-cmd", str(CLOUD / "status.sh"),
                             # Targets before the storage flags: --shared-fs-usage takes every word after it.
                             *args, *server.snakemake_args(f"{BUCKET}/{prefix}"),
                             env={"SNAKEVI_TEST_NODES": str(nodes)}, snakefile=workdir / "Snakefile",
                             directory=False)  # with -d, the jobs would work in the submitting directory


def node_logs(nodes: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(nodes.glob("*.log")))


def run_on_fresh_nodes(workdir: Path, server, prefix: str, *args: str, nodes: str = "nodes"):
    """The workflow in ``workdir`` (a checkout) with S3 default storage; each job on a fresh node."""
    nodes = workdir.parent / f"{workdir.name}-{nodes}"
    cmd, env = fresh_nodes_command(workdir, server, prefix, *args, nodes=nodes)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=workdir)
    assert out.returncode == 0, f"{out.stdout[-4000:]}\n{out.stderr[-4000:]}\n{node_logs(nodes)}"
    return out, nodes


def test_the_demo_runs_with_every_file_in_the_bucket_and_every_job_on_a_fresh_node(tmp_path, bucket, demo_config):
    workdir = checkout(tmp_path / "submit", demo_config)
    _, nodes = run_on_fresh_nodes(workdir, bucket, "demo")
    keys = bucket.keys(BUCKET, "demo/")
    assert {f"results/demo/{name}" for name in RUN_FILES} <= set(keys)
    assert {"resources/demo.h5ad", "results/summary.tsv", "results/demo/logs/train.log"} <= set(keys)
    # Nothing but the sources, the config and Snakemake's own folder in the submitting directory,
    # and in that folder no local copy of a stored file but the logs of the two local rules
    # (simulate, summary run on the submitting machine): the other jobs worked on their nodes.
    assert sorted(p.name for p in workdir.iterdir()) == sorted([".snakemake", "config", *SOURCES])
    local_copies = {p.name for p in (workdir / ".snakemake" / "storage").rglob("*") if p.is_file()}
    assert local_copies <= {"simulate.log", "simulate.tsv", "summary.log", "summary.tsv"}
    # register, prepare, train, export, report, integration: each on a node of its own.
    assert len(list(nodes.glob("node.*.rc"))) == 6
    assert all(rc.read_text().strip() == "0" for rc in nodes.glob("node.*.rc"))


@pytest.mark.skipif(not DATA.is_dir(), reason=f"the shared datasets ({DATA}) are not on this machine")
def test_a_real_dataset_named_by_its_s3_url_is_read_from_the_bucket(tmp_path, bucket):
    data = "cellbench_lung_celseq2_dropseq.h5ad"
    bucket.client().create_bucket(Bucket="lab-data")
    bucket.client().upload_file(str(DATA / data), "lab-data", f"raw/{data}")
    run = {"dataset": f"s3://lab-data/raw/{data}", "setup": {"batch_key": "batch", "labels_key": "cell_line",
                                                            "n_top_genes": 500},
           "model": {"n_latent": 5}, "train": {"max_epochs": 3}}
    workdir = checkout(tmp_path / "submit", {"runs": {"cellbench": run}})
    run_on_fresh_nodes(workdir, bucket, "real")
    keys = bucket.keys(BUCKET, "real/")
    assert {f"results/cellbench/{name}" for name in RUN_FILES} <= set(keys)
    assert not any(k.startswith("resources/") for k in keys)  # the dataset stayed where it was
    local = tmp_path / "embedding.h5ad"
    bucket.client().download_file(BUCKET, "real/results/cellbench/embedding.h5ad", str(local))
    emb = anndata.read_h5ad(local)
    assert emb.obsm["X_scVI"].shape == (1408, 5) and emb.n_vars == 500
    scores = json.loads(bucket.client().get_object(Bucket=BUCKET, Key="real/results/cellbench/report/integration.json")
                        ["Body"].read())
    assert scores["run"] == "cellbench" and scores["Total"] is not None


def stored_checkpoint(server, prefix: str) -> dict | None:
    """The manifest of the demo run's checkpoints in the bucket, or None."""
    try:
        body = server.client().get_object(Bucket=BUCKET, Key=f"{prefix}/results/demo/checkpoints/manifest.json")
    except server.client().exceptions.NoSuchKey:
        return None
    return json.loads(body["Body"].read())


def kill_the_train_node(nodes: Path) -> None:
    """SIGKILL the process group of the node running the train job (a spot VM reclaimed)."""
    for log in nodes.glob("node.*.log"):
        node = str(log)[: -len(".log")]
        if "rule train:" in log.read_text() and not Path(f"{node}.rc").exists():
            os.killpg(int(Path(f"{node}.pid").read_text()), signal.SIGKILL)
            return
    raise AssertionError(f"no train job running on a node:\n{node_logs(nodes)}")


def test_a_train_job_killed_with_its_node_resumes_from_the_stored_checkpoint_on_a_fresh_node(
        tmp_path, bucket, demo_config):
    config = copy.deepcopy(demo_config)
    config["runs"]["demo"]["train"].update(max_epochs=200, checkpoint_every_seconds=0)
    targets = ("results/demo/history.csv", "results/demo/model")
    reference = checkout(tmp_path / "reference", config)
    snakemake(reference, "--cores", "2", *targets)  # uninterrupted, on this machine, no storage

    workdir = checkout(tmp_path / "submit", config)
    cmd, env = fresh_nodes_command(workdir, bucket, "spot", *targets, nodes=tmp_path / "first-nodes")
    with open(tmp_path / "first.txt", "w") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while (stored_checkpoint(bucket, "spot") or {}).get("epochs", 0) < 5:
        assert proc.poll() is None, (tmp_path / "first.txt").read_text()[-4000:]
        assert time.monotonic() < deadline, "no checkpoint stored after 600 s"
        time.sleep(0.1)
    kill_the_train_node(tmp_path / "first-nodes")
    assert proc.wait(timeout=300) != 0  # snakemake sees the train job fail
    killed_at = stored_checkpoint(bucket, "spot")["epochs"]
    assert killed_at < 200 and "results/demo/history.csv" not in bucket.keys(BUCKET, "spot/")

    run_on_fresh_nodes(workdir, bucket, "spot", *targets, nodes="second-nodes")
    log = bucket.client().get_object(Bucket=BUCKET, Key="spot/results/demo/logs/train.log")["Body"].read().decode()
    assert "retrieved from s3://snakevi-test/spot/results/demo/checkpoints" in log
    assert "resuming from" in log
    resumed = bucket.client().get_object(Bucket=BUCKET, Key="spot/results/demo/history.csv")["Body"].read().decode()
    assert resumed == (reference / "results/demo/history.csv").read_text()
    weights = bucket.client().get_object(Bucket=BUCKET, Key="spot/results/demo/model/model.pt")["Body"].read()
    assert weights == (reference / "results/demo/model/model.pt").read_bytes()
    # The stored checkpoint is the finished one: one manifest, one object per file, no leftovers.
    final = stored_checkpoint(bucket, "spot")
    assert final["epochs"] == 200
    stored = [k for k in bucket.keys(BUCKET, "spot/results/demo/checkpoints/")]
    assert sorted(stored) == sorted(["manifest.json", *(f["key"] for f in final["files"].values())])


@pytest.mark.parametrize(("url", "words"), [
    ("az://lab/pbmc.h5ad", "read through Snakemake's storage plugin snakemake-storage-plugin-azure, which is not "
                           "installed: pip install snakemake-storage-plugin-azure"),
    ("sftp://lab/pbmc.h5ad", "is a URL of scheme 'sftp', which no Snakemake storage plugin snakevi knows reads"),
])
def test_a_dataset_url_without_its_storage_plugin_is_refused_before_any_job(tmp_path, url, words):
    write_config(tmp_path, {"runs": {"pbmc": {"dataset": url}}})
    out = snakemake(tmp_path, "--cores", "1", "-n", check=False)
    assert out.returncode != 0
    assert f"Invalid config at runs.pbmc.dataset: {url!r} " in out.stdout + out.stderr
    assert words in out.stdout + out.stderr
    assert not (tmp_path / "results").exists()


def storage_flags(endpoint: str, prefix: str) -> list[str]:
    return ["--default-storage-provider", "s3", "--default-storage-prefix", f"s3://{prefix}",
            "--storage-s3-endpoint-url", endpoint, "--storage-s3-access-key", "snakevi-test-key",
            "--storage-s3-secret-key", "snakevi-test-secret"]


def assert_refused_before_any_job(out, words: str, workdir: Path) -> None:
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert words in text, text[-3000:]
    assert "Traceback" not in text and "ExceptionGroup" not in text, text[-3000:]
    assert not (workdir / "results").exists()
    assert not [p for p in (workdir / ".snakemake").rglob("storage/**/*") if p.is_file()]


def test_an_endpoint_that_does_not_answer_is_named_before_any_job(tmp_path, demo_config):
    from s3_server import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"
    write_config(tmp_path, demo_config)
    out = snakemake(tmp_path, "--cores", "1", *storage_flags(endpoint, f"{BUCKET}/x"), check=False)
    assert_refused_before_any_job(out, f"S3 storage (snakemake-storage-plugin-s3): s3://{BUCKET}/x "
                                       f"(--default-storage-prefix) cannot be reached: the endpoint {endpoint} does "
                                       "not answer", tmp_path)
    assert "Fix --storage-s3-endpoint-url" in out.stdout + out.stderr


def test_a_missing_bucket_is_named_before_any_job(tmp_path, bucket, demo_config):
    write_config(tmp_path, demo_config)
    out = snakemake(tmp_path, "--cores", "1", *storage_flags(bucket.endpoint, "no-such-bucket/runs"), check=False)
    assert_refused_before_any_job(out, f"the bucket 'no-such-bucket' does not exist at {bucket.endpoint}. Create it "
                                       "(aws s3 mb s3://no-such-bucket) or fix --default-storage-prefix.", tmp_path)


def test_a_missing_dataset_object_is_named_with_its_config_key(tmp_path, bucket, demo_config):
    config = copy.deepcopy(demo_config)
    config["runs"]["demo"]["dataset"] = f"s3://{BUCKET}/raw/absent.h5ad"
    write_config(tmp_path, config)
    out = snakemake(tmp_path, "--cores", "1", *storage_flags(bucket.endpoint, f"{BUCKET}/missing"), check=False)
    assert_refused_before_any_job(out, f"s3://{BUCKET}/raw/absent.h5ad (config key runs.demo.dataset) does not exist "
                                       f"at {bucket.endpoint}: upload it there", tmp_path)
    assert bucket.keys(BUCKET, "missing/") == []


def test_wrong_credentials_are_named_before_any_job(tmp_path, demo_config):
    write_config(tmp_path, demo_config)
    with s3_server(tmp_path / "moto.log", check_credentials=True) as strict:
        out = snakemake(tmp_path, "--cores", "1", *storage_flags(strict.endpoint, f"{BUCKET}/x"), check=False)
    assert_refused_before_any_job(out, f"{strict.endpoint} refused the credentials (InvalidAccessKeyId). Fix "
                                       "--storage-s3-access-key and --storage-s3-secret-key", tmp_path)


def test_a_failed_job_leaves_no_output_in_the_bucket(tmp_path, bucket, demo_config):
    bucket.client().put_object(Bucket=BUCKET, Key="raw/broken.h5ad", Body=b"not an h5ad file")
    config = copy.deepcopy(demo_config)
    config["runs"]["demo"]["dataset"] = f"s3://{BUCKET}/raw/broken.h5ad"
    write_config(tmp_path, config)
    out = snakemake(tmp_path, "--cores", "1", *storage_flags(bucket.endpoint, f"{BUCKET}/failed"), check=False)
    assert out.returncode != 0
    keys = bucket.keys(BUCKET, "failed/")
    # The register job failed: its log is there to read, its registry is not (nor anything after it).
    assert "results/demo/logs/register.log" in keys
    assert not [k for k in keys if "/logs/" not in k and "/benchmarks/" not in k]
    log = bucket.client().get_object(Bucket=BUCKET, Key="failed/results/demo/logs/register.log")["Body"].read()
    assert b"broken.h5ad" in log
