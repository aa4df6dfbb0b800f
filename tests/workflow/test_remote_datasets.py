"""A run's dataset named by an http(s):// or gs:// URL, read through Snakemake's storage plugins.

Real servers on the loopback, each on a free port and stopped at the end: the standard
library's HTTP server, and gcp-storage-emulator (the Cloud Storage JSON API, which
google-cloud-storage and so snakemake-storage-plugin-gcs talk to when STORAGE_EMULATOR_HOST is
set). The workflow reads the .h5ad from there and copies nothing of it beside the results. An
http URL that answers 404, or a server that does not answer, stops the workflow before any job
with the config key and what to fix. (s3:// datasets: test_cloud.py.)
"""

from __future__ import annotations

import contextlib
import copy
import functools
import http.server
import socket
import sys
import threading
from pathlib import Path

import anndata
import pytest

from s3_server import free_port, loopback_server
from wf_helpers import snakemake, write_config


@contextlib.contextmanager
def http_server(folder):
    """Serve ``folder`` on 127.0.0.1 (a free port) in a thread; yield its base URL; stop it."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from snakevi.data import simulate

    path = tmp_path_factory.mktemp("www") / "pbmc.h5ad"
    simulate(400, 120, n_batches=2, n_groups=3, seed=0).write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def served(dataset):
    with http_server(dataset.parent) as url:
        yield url


@contextlib.contextmanager
def gcs_emulator(log: Path):
    """gcp-storage-emulator on 127.0.0.1 (a free port, in memory); yield its STORAGE_EMULATOR_HOST; stop it."""
    port = free_port()
    exe = Path(sys.executable).with_name("gcp-storage-emulator")

    def answers() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    cmd = [str(exe), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"]
    with loopback_server(cmd, log, answers):
        yield f"http://127.0.0.1:{port}"


def url_config(demo_config: dict, url: str) -> dict:
    config = copy.deepcopy(demo_config)
    config["runs"]["demo"]["dataset"] = url
    return config


def test_a_dataset_url_is_read_over_http(tmp_path, served, demo_config):
    write_config(tmp_path, url_config(demo_config, f"{served}/pbmc.h5ad"))
    snakemake(tmp_path, "--cores", "2", "results/demo/embedding.h5ad")
    emb = anndata.read_h5ad(tmp_path / "results" / "demo" / "embedding.h5ad")
    assert emb.n_obs == 400 and emb.obsm["X_scVI"].shape == (400, 4)
    assert not (tmp_path / "resources").exists()  # the dataset was not copied beside the results


def test_a_dataset_url_is_read_from_cloud_storage(tmp_path, dataset, demo_config, monkeypatch):
    with gcs_emulator(tmp_path / "gcs.log") as host:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", host)  # for this process's client and for snakemake's
        from google.cloud import storage

        storage.Client().create_bucket("lab-data").blob("raw/pbmc.h5ad").upload_from_filename(str(dataset))
        write_config(tmp_path, url_config(demo_config, "gs://lab-data/raw/pbmc.h5ad"))
        snakemake(tmp_path, "--cores", "2", "--storage-gcs-project", "snakevi-test", "results/demo/embedding.h5ad")
    emb = anndata.read_h5ad(tmp_path / "results" / "demo" / "embedding.h5ad")
    assert emb.n_obs == 400 and emb.obsm["X_scVI"].shape == (400, 4)
    assert not (tmp_path / "resources").exists()


@pytest.mark.parametrize(("path", "words"), [
    ("/absent.h5ad", "the server answered 404"),
    (None, "cannot be reached"),
])
def test_a_dataset_url_that_cannot_be_fetched_is_named_before_any_job(tmp_path, served, demo_config, path, words):
    url = f"{served}{path}" if path else f"http://127.0.0.1:{free_port()}/pbmc.h5ad"
    write_config(tmp_path, url_config(demo_config, url))
    out = snakemake(tmp_path, "--cores", "1", check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert f"HTTP storage (snakemake-storage-plugin-http): {url} (config key runs.demo.dataset)" in text, text[-3000:]
    assert words in text and "Traceback" not in text
    assert not (tmp_path / "results").exists()
