"""snakevi used as a Snakemake module by another workflow (``module``/``use rule * from``)."""

from __future__ import annotations

import anndata
import pandas as pd
import pytest

from wf_helpers import REPO, planned_jobs, snakemake, write_config

# The catalog's way: the module is the main definition, workflow/Snakefile (from GitHub:
# github("OWNER/snakevi", path="workflow/Snakefile", tag=...)).
HOST_SNAKEFILE = """\
configfile: "config/config.yaml"


module snakevi:
    snakefile:
        "{snakefile}"
    config:
        config["snakevi"]
    prefix:
        "scvi"


use rule * from snakevi as snakevi_*


rule all:
    default_target: True
    input:
        rules.snakevi_all.input,
"""


def write_host(workdir, snakefile=REPO / "workflow" / "Snakefile"):
    (workdir / "Snakefile").write_text(HOST_SNAKEFILE.format(snakefile=snakefile))


@pytest.fixture(scope="module")
def host_run(tmp_path_factory, demo_config):
    """A host workflow whose only config is the demo config under the key "snakevi"."""
    workdir = tmp_path_factory.mktemp("host")
    write_host(workdir)
    write_config(workdir, {"snakevi": demo_config})
    snakemake(workdir, "--cores", "2", snakefile=workdir / "Snakefile")
    return workdir


def test_the_module_builds_every_artifact_under_its_prefix(host_run):
    run = host_run / "scvi" / "results" / "demo"
    emb = anndata.read_h5ad(run / "embedding.h5ad")
    # n_hidden 32 and 2 epochs come from the host's config; n_top_genes 100 from it too.
    assert emb.obsm["X_scVI"].shape == (400, 4) and emb.n_vars == 100
    assert (run / "model" / "model.pt").is_file() and (run / "model" / "model.json").is_file()
    assert len(pd.read_csv(run / "history.csv")) == 2
    for name in ("loss_elbo.png", "loss_reconstruction.png", "loss_kl.png", "latent_batch.png",
                 "latent_label.png", "metrics.json"):
        assert (run / "report" / name).stat().st_size > 0
    summary = pd.read_csv(host_run / "scvi" / "results" / "summary.tsv", sep="\t")
    assert list(summary["run"]) == ["demo"] and summary.loc[0, "epochs"] == 2


def test_checkpoints_follow_the_prefix_and_datasets_keep_their_path(host_run):
    # Checkpoints sit beside the run's outputs; the dataset path is the config's, unprefixed.
    assert (host_run / "scvi" / "results" / "demo" / "checkpoints" / "last.ckpt").is_file()
    assert not (host_run / "results").exists()
    assert (host_run / "resources" / "demo.h5ad").is_file()


def test_the_host_reruns_nothing_when_nothing_changed(host_run):
    out = snakemake(host_run, "--cores", "2", "-n", snakefile=host_run / "Snakefile")
    assert planned_jobs(out.stdout) == {}


def test_the_summary_keeps_runs_on_disk_under_the_prefix_too(host_run, tmp_path):
    # A run built earlier (since taken out of the config) keeps its row: found under the prefix.
    import json
    import shutil

    host = tmp_path / "host"
    shutil.copytree(host_run, host, ignore=shutil.ignore_patterns(".snakemake"))
    old = host / "scvi" / "results" / "old" / "report"
    old.mkdir(parents=True)
    for name in ("metrics.json", "integration.json"):
        values = json.loads((host / "scvi" / "results" / "demo" / "report" / name).read_text())
        (old / name).write_text(json.dumps({**values, "run": "old"}))
    snakemake(host, "--cores", "1", "--forcerun", "snakevi_summary", snakefile=host / "Snakefile")
    summary = pd.read_csv(host / "scvi" / "results" / "summary.tsv", sep="\t")
    assert sorted(summary["run"]) == ["demo", "old"]


def test_a_host_may_name_the_root_snakefile_too(tmp_path, demo_config):
    # The repository root's Snakefile only includes workflow/Snakefile: the same jobs.
    planned = {}
    for name, snakefile in (("main", REPO / "workflow" / "Snakefile"), ("root", REPO / "Snakefile")):
        workdir = tmp_path / name
        workdir.mkdir()
        write_host(workdir, snakefile)
        write_config(workdir, {"snakevi": demo_config})
        out = snakemake(workdir, "--cores", "2", "-n", snakefile=workdir / "Snakefile")
        planned[name] = planned_jobs(out.stdout)
    assert planned["root"] == planned["main"]
    assert planned["main"]["snakevi_train"] == 1 and planned["main"]["all"] == 1
