"""The workflow with no shared filesystem: every file through object storage, every job on a fresh node.

A real S3 server on the loopback (moto's) is the bucket; Snakemake runs with
``--default-storage-provider s3 --shared-fs-usage none`` and the cluster-generic executor,
whose submit script (cloud/submit.sh) starts each job in a new empty directory holding only the
workflow sources and the config, as a job image on a cloud node would. So a job that read
anything from the submitting directory, or left a result only on its node, fails here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anndata
import pytest

from s3_server import s3_server
from wf_helpers import REPO, snakemake, write_config

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


def run_on_fresh_nodes(workdir: Path, server, prefix: str, *args: str):
    """The workflow in ``workdir`` (a checkout) with S3 default storage; each job on a fresh node."""
    nodes = workdir.parent / f"{workdir.name}-nodes"
    nodes.mkdir()
    env = {"SNAKEVI_TEST_NODES": str(nodes)}
    out = snakemake(workdir, "--cores", "2", "--jobs", "2", "--executor", "cluster-generic",
                    "--cluster-generic-submit-cmd", str(CLOUD / "submit.sh"),
                    "--cluster-generic-status-cmd", str(CLOUD / "status.sh"),
                    *server.snakemake_args(f"{BUCKET}/{prefix}"), *args, env=env, check=False,
                    snakefile=workdir / "Snakefile", timeout=900)
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(nodes.glob("*.log")))
    assert out.returncode == 0, f"{out.stdout[-4000:]}\n{out.stderr[-4000:]}\n{logs}"
    return out, nodes


def test_the_demo_runs_with_every_file_in_the_bucket_and_every_job_on_a_fresh_node(tmp_path, bucket, demo_config):
    workdir = checkout(tmp_path / "submit", demo_config)
    _, nodes = run_on_fresh_nodes(workdir, bucket, "demo")
    keys = bucket.keys(BUCKET, "demo/")
    assert {f"results/demo/{name}" for name in RUN_FILES} <= set(keys)
    assert {"resources/demo.h5ad", "results/summary.tsv", "results/demo/logs/train.log"} <= set(keys)
    # Nothing but the sources, the config and Snakemake's own folder in the submitting directory.
    assert sorted(p.name for p in workdir.iterdir()) == sorted([".snakemake", "config", *SOURCES])
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


@pytest.mark.parametrize(("url", "words"), [
    ("gs://lab/pbmc.h5ad", "read through Snakemake's storage plugin snakemake-storage-plugin-gcs, which is not "
                           "installed: pip install snakemake-storage-plugin-gcs"),
    ("sftp://lab/pbmc.h5ad", "is a URL of scheme 'sftp', which no Snakemake storage plugin snakevi knows reads"),
])
def test_a_dataset_url_without_its_storage_plugin_is_refused_before_any_job(tmp_path, url, words):
    write_config(tmp_path, {"runs": {"pbmc": {"dataset": url}}})
    out = snakemake(tmp_path, "--cores", "1", "-n", check=False)
    assert out.returncode != 0
    assert f"Invalid config at runs.pbmc.dataset: {url!r} " in out.stdout + out.stderr
    assert words in out.stdout + out.stderr
    assert not (tmp_path / "results").exists()
