"""The workflow on the (tiny) demo config: artifacts, up-to-date reruns, targeted reruns, config errors."""

from __future__ import annotations

import json

import anndata
import numpy as np
import pandas as pd
import pytest
import yaml

from wf_helpers import REPO, planned_jobs, snakemake, write_config

REPORT_FILES = ["loss_elbo.png", "loss_reconstruction.png", "loss_kl.png", "latent_batch.png",
                "latent_label.png", "metrics.json", "integration.png", "metrics.tsv", "integration.json"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, demo_config):
    workdir = tmp_path_factory.mktemp("demo")
    write_config(workdir, demo_config)
    snakemake(workdir, "--cores", "2")
    return workdir


def test_every_artifact_is_written(demo_run):
    run = demo_run / "results" / "demo"
    registry = json.loads((run / "registry.json").read_text())
    assert registry["summary"]["n_vars"] == 100 and registry["gene_selection"]["n_top_genes"] == 100
    assert (run / "prepared" / "loader.json").is_file()
    assert (run / "model" / "model.pt").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    emb = anndata.read_h5ad(run / "embedding.h5ad")
    assert emb.obsm["X_scVI"].shape == (400, 4)
    assert emb.layers["scvi_normalized"].shape == (400, 100)
    history = pd.read_csv(run / "history.csv")
    assert len(history) == 2 and {"elbo_train", "elbo_validation"} <= set(history.columns)
    for name in REPORT_FILES:
        assert (run / "report" / name).stat().st_size > 0
    for rule in ("register", "prepare", "train", "export", "report", "integration"):
        assert (run / "logs" / f"{rule}.log").is_file()
        assert (run / "benchmarks" / f"{rule}.tsv").is_file()
    assert "finished" in (run / "logs" / "train.log").read_text()
    summary = pd.read_csv(demo_run / "results" / "summary.tsv", sep="\t")
    assert list(summary["run"]) == ["demo"] and summary.loc[0, "epochs"] == 2
    assert np.load(run / "latent.npy").shape == (400, 4)
    scores = pd.read_csv(run / "report" / "metrics.tsv", sep="\t", index_col="embedding")
    assert summary.loc[0, "Total"] == pytest.approx(scores.loc["X_scVI", "Total"], abs=1e-5)


def test_the_report_builds(demo_run):
    # .snakemake-workflow-catalog.yml says `snakemake --report` works: every registered figure is in it.
    snakemake(demo_run, "--cores", "1", "--report", "report.html")
    html = (demo_run / "report.html").read_text(errors="replace")
    for name in ("loss_elbo.png", "latent_batch.png", "integration.png", "summary.tsv"):
        assert name in html, name


def test_a_second_run_with_nothing_changed_runs_no_job(demo_run):
    out = snakemake(demo_run, "--cores", "2", "-n")
    assert planned_jobs(out.stdout) == {}
    assert "Nothing to be done" in out.stdout + out.stderr


def test_changing_a_train_parameter_reruns_train_and_downstream_only(demo_run):
    extra = write_config(demo_run, {"runs": {"demo": {"train": {"max_epochs": 3}}}}, name="extra.yaml")
    out = snakemake(demo_run, "--cores", "2", "-n", "--configfile", str(demo_run / "config" / "config.yaml"), str(extra))
    assert planned_jobs(out.stdout) == {"train": 1, "export": 1, "report": 1, "integration": 1, "summary": 1,
                                        "all": 1}


def test_changing_how_often_to_checkpoint_reruns_nothing(demo_run):
    # The docs say it changes no result; so it must not count as a changed parameter either.
    extra = write_config(demo_run, {"runs": {"demo": {"train": {"checkpoint_every_seconds": 5}}}}, name="ckpt.yaml")
    out = snakemake(demo_run, "--cores", "2", "-n", "--configfile", str(demo_run / "config" / "config.yaml"), str(extra))
    assert planned_jobs(out.stdout) == {}, out.stdout


def test_unknown_config_key_is_rejected_naming_it(tmp_path, demo_config):
    bad = json.loads(json.dumps(demo_config))
    bad["runs"]["demo"]["train"]["max_epoch"] = 3
    write_config(tmp_path, bad)
    out = snakemake(tmp_path, "--cores", "1", "-n", check=False)
    assert out.returncode != 0
    assert "Invalid config at runs.demo.train: Additional properties are not allowed ('max_epoch' was unexpected)" \
        in out.stdout + out.stderr


def test_wrong_type_is_rejected_naming_the_key(tmp_path, demo_config):
    bad = json.loads(json.dumps(demo_config))
    bad["runs"]["demo"]["model"]["n_latent"] = "ten"
    write_config(tmp_path, bad)
    out = snakemake(tmp_path, "--cores", "1", "-n", check=False)
    assert out.returncode != 0
    assert "Invalid config at runs.demo.model.n_latent: 'ten' is not of type 'integer'" in out.stdout + out.stderr


@pytest.mark.parametrize(("section", "key", "value", "words"), [
    ("train", "max_epochs", 5.0, "runs.demo.train.max_epochs: 5.0 is not an integer (write 5)"),
    ("model", "n_latent", 10.0, "runs.demo.model.n_latent: 10.0 is not an integer (write 10)"),
    ("split", "batch_size", 128.0, "runs.demo.split.batch_size: 128.0 is not an integer (write 128)"),
    ("resources", "gpu", 1.0, "runs.demo.resources.gpu: 1.0 is not an integer (write 1)"),
    (None, "seed", -1, "runs.demo.seed: -1 is less than the minimum of 0"),
])
def test_a_count_that_is_no_integer_is_refused_before_any_job(tmp_path, demo_config, section, key, value, words):
    bad = json.loads(json.dumps(demo_config))
    (bad["runs"]["demo"] if section is None else bad["runs"]["demo"].setdefault(section, {}))[key] = value
    write_config(tmp_path, bad)
    out = snakemake(tmp_path, "--cores", "1", "-n", check=False)
    assert out.returncode != 0
    assert f"Invalid config at {words}" in out.stdout + out.stderr
    assert not (tmp_path / "results").exists()


def test_a_key_given_twice_in_a_config_file_is_refused(tmp_path, demo_config):
    text = yaml.safe_dump(demo_config, sort_keys=False)
    # The same run twice: YAML readers keep the second silently.
    twice = text.replace("runs:\n", "runs:\n  demo:\n    dataset: other.h5ad\n", 1)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(twice)
    first, second = [n for n, line in enumerate(twice.splitlines(), 1) if line == "  demo:"]
    out = snakemake(tmp_path, "--cores", "1", "-n", check=False)
    assert out.returncode != 0
    assert f"key 'demo' appears twice in one section (lines {first} and {second})" in out.stdout + out.stderr
    extra = tmp_path / "extra.json"
    extra.write_text('{"runs": {"demo": {"seed": 1}}, "runs": {}}')
    write_config(tmp_path, demo_config)
    out = snakemake(tmp_path, "--cores", "1", "-n", "--configfile", str(extra), check=False)
    assert out.returncode != 0
    assert f"Invalid config file {extra}: key 'runs' appears twice" in out.stdout + out.stderr


def test_several_runs_are_planned_side_by_side(tmp_path):
    runs = {f"latent{n}": {"dataset": "resources/demo.h5ad", "model": {"n_latent": n}} for n in (5, 10, 20)}
    write_config(tmp_path, {"runs": runs})
    out = snakemake(tmp_path, "--cores", "2", "-n")
    jobs = planned_jobs(out.stdout)
    assert jobs["simulate"] == 1 and jobs["train"] == 3 and jobs["report"] == 3 and jobs["integration"] == 3
    assert jobs["summary"] == 1


def test_lint_and_snakefmt_are_clean():
    import subprocess
    import sys
    from pathlib import Path

    bindir = Path(sys.executable).parent
    # From the root (its Snakefile) and the catalog's main definition, as the catalog checks it.
    for snakefile in ([], ["--snakefile", "workflow/Snakefile"]):
        lint = subprocess.run([str(bindir / "snakemake"), *snakefile, "--lint"], cwd=REPO, capture_output=True,
                              text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run([str(bindir / "snakefmt"), "--check", "Snakefile", "workflow/"], cwd=REPO,
                         capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_the_shipped_config_is_valid_and_plans_the_whole_demo(tmp_path):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    write_config(tmp_path, config)
    out = snakemake(tmp_path, "--cores", "2", "-n")
    assert planned_jobs(out.stdout) == {"simulate": 1, "register": 1, "prepare": 1, "train": 1, "export": 1,
                                        "report": 1, "integration": 1, "summary": 1, "all": 1}


def test_the_shipped_demo_shows_the_model_mixing_batches_that_pca_keeps_apart(tmp_path):
    # The README's main job as it ships (2,000 cells, 30 epochs): a newcomer's first report
    # must show what the tool is for, integration, beside the unintegrated baseline.
    write_config(tmp_path, yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    snakemake(tmp_path, "--cores", "2")
    scores = pd.read_csv(tmp_path / "results" / "demo" / "report" / "metrics.tsv", sep="\t", index_col=0,
                         comment="#")
    model, pca = scores.loc["X_scVI"], scores.loc["PCA (unintegrated)"]
    assert model["iLISI"] > 0.6 > 0.3 > pca["iLISI"]
    assert model["KBET"] > 0.6 > 0.1 > pca["KBET"]
    assert model["Batch correction"] > pca["Batch correction"] + 0.3
    assert model["Bio conservation"] > pca["Bio conservation"] - 0.03  # the labels are kept
    assert model["Total"] > pca["Total"]


def test_select_runs_builds_only_the_named_runs(tmp_path):
    runs = {name: {"dataset": "resources/demo.h5ad"} for name in ("a", "b")}
    write_config(tmp_path, {"runs": runs, "select_runs": ["b"]})
    out = snakemake(tmp_path, "--cores", "2", "-n")
    assert planned_jobs(out.stdout)["train"] == 1
    assert "results/b/model" in out.stdout and "results/a/" not in out.stdout
    write_config(tmp_path, {"runs": runs, "select_runs": ["c"]})
    out = snakemake(tmp_path, "--cores", "2", "-n", check=False)
    assert out.returncode != 0 and "select_runs: ['c'] not among the runs ['a', 'b']" in out.stdout + out.stderr


def test_gpu_resource_only_for_runs_that_ask(tmp_path):
    runs = {"cpu": {"dataset": "resources/demo.h5ad"},
            "gpu": {"dataset": "resources/demo.h5ad", "resources": {"gpu": 1}}}
    write_config(tmp_path, {"runs": runs})
    out = snakemake(tmp_path, "--cores", "2", "-n").stdout
    blocks = {block.split("output: ")[1].split("/")[1]: block for block in out.split("rule train:")[1:]}
    assert "gpu=1" in blocks["gpu"]
    assert "gpu" not in blocks["cpu"].split("resources:")[1].splitlines()[0]
