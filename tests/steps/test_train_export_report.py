"""train -> export -> report on tiny data: outputs, exact resume, stale checkpoints, reload."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys

import anndata
import numpy as np
import pandas as pd
import pytest
import torch

from snakevi.model import SCVI
from snakevi.model.bundle import read_bundle
from snakevi.steps import StepError, export, integration, report, summarize, train
from snakevi.steps.integration import INTEGRATION_FILES
from snakevi.steps.report import REPORT_FILES, last_value, read_history

MODEL = {"n_latent": 3, "n_hidden": 16}
TRAIN = {"max_epochs": 3, "check_val_every_n_epoch": 1, "plan": {"lr": 0.01}}
METRICS = ["train_loss", "elbo_train", "reconstruction_loss_train", "kl_local_train", "kl_weight",
           "validation_loss", "elbo_validation", "reconstruction_loss_validation", "kl_local_validation"]


@pytest.fixture(scope="module")
def trained(tiny_registered, tmp_path_factory):
    h5ad, registry_json, prepared = tiny_registered
    out = tmp_path_factory.mktemp("trained")
    train(prepared, registry_json, out / "model", out / "history.csv", latent_out=out / "latent.npy",
          model_params=MODEL, train_params=TRAIN, seed=3, accelerator="cpu")
    return h5ad, registry_json, prepared, out


def _weights(model_dir):
    return read_bundle(model_dir)[0]


def test_train_writes_model_history_and_checkpoint(trained):
    _, _, _, out = trained
    history = pd.read_csv(out / "history.csv", index_col="epoch")
    assert list(history.index) == [0, 1, 2]
    assert set(METRICS) <= set(history.columns)
    assert history[METRICS].notna().all().all()
    assert (out / "model" / "model.pt").is_file() and (out / "model" / "model.json").is_file()
    assert (out / "checkpoints" / "last.ckpt").is_file()
    stamp = json.loads((out / "checkpoints" / "fingerprint.json").read_text())
    assert stamp["train_params"] == TRAIN and stamp["seed"] == 3


def test_sigterm_stops_after_a_checkpoint_and_a_rerun_resumes_exactly(trained, tmp_path, monkeypatch):
    steps_train = importlib.import_module("snakevi.steps.train")  # the module, not the function
    recipe = importlib.import_module("snakevi.train.recipe")  # where the signal stop lives

    _, registry_json, prepared, out = trained
    # Deliver the "signal" before the first epoch ends: training stops after epoch 0, which is
    # saved although the default spacing of checkpoints (a minute) has not passed.
    original_init = recipe._StopOnSignal.__init__

    def signalled(self, checkpoint):
        original_init(self, checkpoint)
        self.signal_name = "SIGTERM"

    monkeypatch.setattr(recipe._StopOnSignal, "__init__", signalled)
    with pytest.raises(steps_train.TrainingInterrupted, match="SIGTERM.*Run the same step again"):
        train(prepared, registry_json, tmp_path / "model", tmp_path / "history.csv", model_params=MODEL,
              train_params=TRAIN, seed=3, accelerator="cpu")
    assert not (tmp_path / "model").exists() and not (tmp_path / "history.csv").exists()
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 1 and not ckpt["should_stop"]
    monkeypatch.setattr(recipe._StopOnSignal, "__init__", original_init)
    train(prepared, registry_json, tmp_path / "model", tmp_path / "history.csv", model_params=MODEL,
          train_params=TRAIN, seed=3, accelerator="cpu")
    resumed, uninterrupted = _weights(tmp_path / "model"), _weights(out / "model")
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        assert torch.equal(resumed[key], uninterrupted[key]), key
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "history.csv"), pd.read_csv(out / "history.csv"))


def test_checkpoints_of_another_run_are_moved_aside(trained, tmp_path):
    _, registry_json, prepared, out = trained
    shutil.copytree(out / "checkpoints", tmp_path / "checkpoints")
    with pytest.warns(UserWarning, match="other data or parameters"):
        train(prepared, registry_json, tmp_path / "model", tmp_path / "history.csv", model_params=MODEL,
              train_params={**TRAIN, "max_epochs": 1}, seed=3, accelerator="cpu")
    assert (tmp_path / "checkpoints.stale" / "last.ckpt").is_file()
    assert len(pd.read_csv(tmp_path / "history.csv")) == 1


def test_adversarial_option_trains_with_the_batch_classifier(trained, tmp_path):
    _, registry_json, prepared, _ = trained
    train(prepared, registry_json, tmp_path / "model", tmp_path / "history.csv", model_params=MODEL,
          train_params={**TRAIN, "max_epochs": 1, "adversarial": True}, seed=3, accelerator="cpu")
    plan_state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["plan"]
    assert plan_state["adversarial_classifier"] and plan_state["classifier_optimizer"]["state"]
    assert len(pd.read_csv(tmp_path / "history.csv")) == 1


def test_scanvi_needs_labels_and_an_unlabeled_category(trained, tmp_path):
    _, registry_json, prepared, _ = trained
    with pytest.raises(StepError, match="unlabeled category"):
        train(prepared, registry_json, tmp_path / "model", tmp_path / "h.csv", model_class="scanvi")
    assert not (tmp_path / "model").exists()


def test_unknown_train_parameter_is_refused(trained, tmp_path):
    _, registry_json, prepared, _ = trained
    with pytest.raises(StepError, match="max_epoch"):
        train(prepared, registry_json, tmp_path / "model", tmp_path / "h.csv", train_params={"max_epoch": 2})
    assert not (tmp_path / "model").exists()


def test_export_writes_the_embedding_and_the_model_reloads_to_the_same_latent(trained, tmp_path):
    h5ad, registry_json, _, out = trained
    emb_path = tmp_path / "embedding.h5ad"
    export(out / "model", h5ad, emb_path, latent_key="X_lat", normalized_layer="scvi_norm")
    emb = anndata.read_h5ad(emb_path)
    registry = json.loads(registry_json.read_text())
    assert emb.shape == (300, 50)
    assert list(emb.var_names) == registry["fields"]["X"]["column_names"]
    assert list(emb.obs.columns) == list(anndata.read_h5ad(h5ad).obs.columns)
    assert emb.obsm["X_lat"].shape == (300, 3)
    norm = emb.layers["scvi_norm"]
    np.testing.assert_allclose(norm.sum(axis=1), 1e4, rtol=1e-3)
    model = SCVI.load(out / "model", emb)
    np.testing.assert_allclose(model.get_latent_representation(), emb.obsm["X_lat"], rtol=1e-5, atol=1e-6)


def test_export_with_the_train_steps_latent_needs_no_model_and_matches_it(trained, tmp_path):
    h5ad, _, _, out = trained
    computed, copied = tmp_path / "computed.h5ad", tmp_path / "copied.h5ad"
    export(out / "model", h5ad, computed)
    # Garbage weights prove the copy path never loads the model.
    shutil.copytree(out / "model", tmp_path / "meta_only")
    (tmp_path / "meta_only" / "model.pt").write_bytes(b"not a torch file")
    export(tmp_path / "meta_only", h5ad, copied, latent=out / "latent.npy")
    a, b = anndata.read_h5ad(computed), anndata.read_h5ad(copied)
    np.testing.assert_allclose(a.obsm["X_scVI"], b.obsm["X_scVI"], rtol=1e-5, atol=1e-6)
    assert a.uns["_snakevi_registry"] == b.uns["_snakevi_registry"]
    model = SCVI.load(out / "model", b)
    np.testing.assert_allclose(model.get_latent_representation(), b.obsm["X_scVI"], rtol=1e-5, atol=1e-6)


def test_export_refuses_a_latent_of_other_cells(trained, tmp_path):
    h5ad, _, _, out = trained
    np.save(tmp_path / "short.npy", np.load(out / "latent.npy")[:-1])
    with pytest.raises(StepError, match="299 cells but the data has 300"):
        export(out / "model", h5ad, tmp_path / "embedding.h5ad", latent=tmp_path / "short.npy")
    assert not (tmp_path / "embedding.h5ad").exists()


def test_report_writes_every_file(trained, tmp_path):
    _, registry_json, prepared, out = trained
    metrics = report(out / "history.csv", out / "latent.npy", prepared, registry_json, tmp_path / "report",
                     run="tiny")
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == sorted(REPORT_FILES)
    for name in REPORT_FILES:
        path = tmp_path / "report" / name
        assert path.stat().st_size > 0, name
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert metrics["run"] == "tiny" and metrics["epochs"] == 3 and metrics["n_latent"] == 3
    assert metrics["elbo_validation"] == pytest.approx(pd.read_csv(out / "history.csv")["elbo_validation"].iloc[-1])
    assert json.loads((tmp_path / "report" / "metrics.json").read_text()) == metrics


def test_integration_scores_and_the_summary_row(trained, tmp_path):
    _, registry_json, prepared, out = trained
    report(out / "history.csv", out / "latent.npy", prepared, registry_json, tmp_path / "report", run="tiny")
    scored = integration(out / "latent.npy", prepared, registry_json, tmp_path / "report", run="tiny")
    for name in INTEGRATION_FILES:
        assert (tmp_path / "report" / name).stat().st_size > 0, name
    assert (tmp_path / "report" / "integration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scores = pd.read_csv(tmp_path / "report" / "metrics.tsv", sep="\t", index_col="embedding")
    assert list(scores.index) == ["X_scVI", "PCA (unintegrated)"]
    assert {"Isolated labels", "KMeans NMI", "BRAS", "iLISI", "KBET", "PCR comparison", "Total"} <= set(scores.columns)
    total = 0.4 * scores["Batch correction"] + 0.6 * scores["Bio conservation"]
    np.testing.assert_allclose(scores["Total"], total, atol=1e-5)
    assert scores.loc["PCA (unintegrated)", "PCR comparison"] == 0  # the baseline against itself
    assert scored["Total"] == pytest.approx(scores.loc["X_scVI", "Total"], abs=1e-5)
    assert json.loads((tmp_path / "report" / "integration.json").read_text()) == scored
    table = summarize([tmp_path / "report" / "metrics.json"], tmp_path / "summary.tsv",
                      [tmp_path / "report" / "integration.json"])
    back = pd.read_csv(tmp_path / "summary.tsv", sep="\t")
    assert [row["run"] for row in table] == ["tiny"]
    assert back.loc[0, "n_obs"] == 300 and back.loc[0, "n_vars"] == 50 and back.loc[0, "epochs"] == 3
    assert back.loc[0, "Total"] == pytest.approx(scored["Total"])
    assert back.loc[0, "Total (PCA baseline)"] == pytest.approx(scores.loc["PCA (unintegrated)", "Total"], abs=1e-5)


def test_summary_without_integration_scores_leaves_them_empty_and_refuses_strays(trained, tmp_path):
    _, registry_json, prepared, out = trained
    report(out / "history.csv", out / "latent.npy", prepared, registry_json, tmp_path / "a", run="a")
    (tmp_path / "b.json").write_text(json.dumps({"run": "b", "Total": 0.5}))
    rows = summarize([tmp_path / "a" / "metrics.json"], tmp_path / "summary.tsv")
    assert rows[0]["run"] == "a" and rows[0]["Total"] is None and rows[0]["n_obs"] == 300
    with pytest.raises(StepError, match=r"run\(s\) \['b'\] have no metrics.json"):
        summarize([tmp_path / "a" / "metrics.json"], tmp_path / "summary2.tsv", [tmp_path / "b.json"])
    assert not (tmp_path / "summary2.tsv").exists()


def _imported_in_a_fresh_interpreter(code: str, modules: tuple[str, ...]) -> list[str]:
    """Run ``code`` in a new interpreter; which of ``modules`` it ended up importing."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {modules!r} if m in sys.modules)))\n"
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", probe], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_train_job_needs_neither_pandas_nor_torch_dynamo(trained, tmp_path):
    # On the workflow's critical path: pandas costs the job about 0.4 s, torch._dynamo (what
    # torch.optim imports on first use) about 2 s. The outputs are those of the in-process run.
    _, registry_json, prepared, out = trained
    code = (
        "from snakevi.steps.train import train\n"
        f"train({str(prepared)!r}, {str(registry_json)!r}, {str(tmp_path / 'model')!r}, "
        f"{str(tmp_path / 'history.csv')!r}, model_params={MODEL!r}, train_params={TRAIN!r}, seed=3, "
        "accelerator='cpu', threads=1)"
    )
    assert _imported_in_a_fresh_interpreter(code, ("pandas", "torch._dynamo", "anndata")) == []
    assert (tmp_path / "history.csv").read_text() == (out / "history.csv").read_text()
    assert json.loads((tmp_path / "model" / "model.json").read_text())["history"] == \
        json.loads((out / "model" / "model.json").read_text())["history"]


@pytest.mark.parametrize("step", ["report", "integration"])
def test_report_and_integration_jobs_need_neither_pandas_nor_pyplot(trained, tmp_path, step):
    # Both run on the workflow's critical path; each import costs them about half a second.
    _, registry_json, prepared, out = trained
    history = f"{str(out / 'history.csv')!r}, " if step == "report" else ""
    code = (
        f"from snakevi.steps.{step} import {step}\n"
        f"{step}({history}{str(out / 'latent.npy')!r}, {str(prepared)!r}, {str(registry_json)!r}, "
        f"{str(tmp_path / 'report')!r})"
    )
    assert _imported_in_a_fresh_interpreter(code, ("pandas", "matplotlib.pyplot", "torch", "anndata")) == []
    png = "latent_label.png" if step == "report" else "integration.png"
    assert (tmp_path / "report" / png).read_bytes()[:4] == b"\x89PNG"


def test_read_history_keeps_text_columns_and_missing_values(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,phase,elbo_train,elbo_validation\n0,scvi,10.5,\n1,scvi,9.5,9.0\n2,scanvi,8.0,\n")
    epochs, columns = read_history(path)
    assert epochs.tolist() == [0, 1, 2] and columns["phase"].tolist() == ["scvi", "scvi", "scanvi"]
    np.testing.assert_array_equal(columns["elbo_validation"], [np.nan, 9.0, np.nan])
    assert last_value(columns, "elbo_validation") == 9.0 and last_value(columns, "elbo_train") == 8.0
    assert last_value(columns, "phase") is None and last_value(columns, "kl_local_train") is None
    (tmp_path / "bad.csv").write_text("step,loss\n0,1.0\n")
    with pytest.raises(StepError, match="no 'epoch' column"):
        read_history(tmp_path / "bad.csv")


def test_integration_switched_off_writes_a_note_instead_of_scores(trained, tmp_path):
    _, registry_json, prepared, out = trained
    scored = integration(out / "latent.npy", prepared, registry_json, tmp_path / "report", metrics=False)
    lines = (tmp_path / "report" / "metrics.tsv").read_text().splitlines()
    assert lines[0] == "embedding" and lines[1].startswith("# integration metrics were switched off")
    assert (tmp_path / "report" / "integration.png").read_bytes()[:4] == b"\x89PNG"
    assert scored["Total"] is None and scored["Total (PCA baseline)"] is None


def test_report_and_integration_refuse_a_latent_of_other_cells(trained, tmp_path):
    _, registry_json, prepared, out = trained
    np.save(tmp_path / "wide.npy", np.zeros((301, 3), dtype=np.float32))
    with pytest.raises(StepError, match="301 cells but the data has 300"):
        report(out / "history.csv", tmp_path / "wide.npy", prepared, registry_json, tmp_path / "report")
    with pytest.raises(StepError, match="301 cells but the data has 300"):
        integration(tmp_path / "wide.npy", prepared, registry_json, tmp_path / "report")
    assert not (tmp_path / "report").exists()


def test_the_run_fingerprint_of_a_grouped_section_is_that_of_the_flat_one_of_before(trained):
    # A checkpoint folder written before train: was grouped resumes: same fingerprint, same formula.
    from snakevi._digest import fingerprint
    from snakevi.data.prepared import read_loader_spec

    _, _, prepared, out = trained
    spec = read_loader_spec(prepared)
    flat = {"max_epochs": 3, "check_val_every_n_epoch": 1, "lr": 0.01}
    expected = fingerprint(spec["registry_sha256"], spec["loader"], spec.get("split_sizes"), MODEL, flat, 3, "scvi")
    assert json.loads((out / "checkpoints" / "fingerprint.json").read_text())["fingerprint"] == expected


def test_linear_scvi_trains_through_the_step_and_exports_its_latent_key(tiny_registered, tmp_path):
    h5ad, registry_json, prepared = tiny_registered
    model = train(prepared, registry_json, tmp_path / "model", tmp_path / "history.csv", model_class="linear_scvi",
                  model_params=MODEL, train_params={"max_epochs": 2}, seed=3, accelerator="cpu")
    assert type(model).__name__ == "LinearSCVI" and model.get_loadings().shape == (50, 3)
    emb = export(tmp_path / "model", h5ad, tmp_path / "embedding.h5ad")
    assert list(emb.obsm) == ["X_LinearSCVI"] and "C_scANVI" not in emb.obs


def test_full_anndata_keeps_every_gene_and_marks_the_model_genes(trained, tmp_path):
    h5ad, registry_json, _, out = trained
    source = anndata.read_h5ad(h5ad)
    source.layers["extra"] = source.X.copy()
    source.obsm["X_umap"] = np.zeros((source.n_obs, 2), dtype=np.float32)
    source.write_h5ad(tmp_path / "source.h5ad")
    full = export(out / "model", tmp_path / "source.h5ad", tmp_path / "full.h5ad", full_anndata=True)
    written = anndata.read_h5ad(tmp_path / "full.h5ad")
    assert list(written.var_names) == list(source.var_names) and "extra" in written.layers
    assert "X_umap" in written.obsm and written.obsm["X_scVI"].shape == (300, 3)
    model_genes = json.loads(registry_json.read_text())["fields"]["X"]["column_names"]
    assert list(written.var_names[written.var["snakevi_model_gene"].to_numpy()]) == model_genes
    plain = export(out / "model", h5ad, tmp_path / "plain.h5ad")
    np.testing.assert_array_equal(full.obsm["X_scVI"], plain.obsm["X_scVI"])


def test_full_anndata_with_a_normalized_layer_is_refused_before_writing(trained, tmp_path):
    h5ad, _, _, out = trained
    with pytest.raises(StepError, match="full_anndata and export.normalized_layer"):
        export(out / "model", h5ad, tmp_path / "e.h5ad", full_anndata=True, normalized_layer="norm")
    assert not list(tmp_path.iterdir())


def test_export_scvi_tools_of_a_linear_scvi_model_exits_1_and_writes_nothing(tiny_registered, tmp_path):
    from snakevi.cli import main

    h5ad, registry_json, prepared = tiny_registered
    train(prepared, registry_json, tmp_path / "model", tmp_path / "history.csv", model_class="linear_scvi",
          model_params=MODEL, train_params={"max_epochs": 1}, seed=3, accelerator="cpu")
    status = main(["export-scvi-tools", "--model", str(tmp_path / "model"), "--output", str(tmp_path / "st")])
    assert status == 1 and not (tmp_path / "st").exists()


def test_summary_groups_average_seed_replicates_and_skip_missing_scores(tmp_path):
    files = []
    for run, seed, elbo, total in (("r_seed0", 0, 10.0, 0.5), ("r_seed1", 1, 12.0, None), ("r_seed2", 2, 14.0, 0.7),
                                   ("solo", 4, 9.0, 0.6)):
        path = tmp_path / f"{run}.json"
        group = "solo" if run == "solo" else "r"
        path.write_text(json.dumps({"run": run, "group": group, "seed": seed, "elbo_validation": elbo, "epochs": 3}))
        files.append(path)
        if total is not None:
            (tmp_path / f"{run}.int.json").write_text(json.dumps({"run": run, "Total": total}))
    scores = sorted(tmp_path.glob("*.int.json"))
    summarize(files, tmp_path / "summary.tsv", scores, groups_tsv=tmp_path / "groups.tsv")
    groups = pd.read_csv(tmp_path / "groups.tsv", sep="\t").set_index("group")
    assert groups.loc["r", "runs"] == "r_seed0,r_seed1,r_seed2" and groups.loc["r", "n_runs"] == 3
    assert groups.loc["r", "elbo_validation mean"] == pytest.approx(12.0)
    assert groups.loc["r", "elbo_validation sd"] == pytest.approx(2.0)
    assert groups.loc["r", "Total mean"] == pytest.approx(0.6)  # the run without scores is left out
    assert groups.loc["r", "Total sd"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert groups.loc["solo", "n_runs"] == 1 and pd.isna(groups.loc["solo", "Total sd"])
    # A metrics.json of before groups (no group, no seed) is a group of its own.
    (tmp_path / "old.json").write_text(json.dumps({"run": "old", "epochs": 1}))
    rows = summarize([tmp_path / "old.json"], tmp_path / "s2.tsv", groups_tsv=tmp_path / "g2.tsv")
    assert rows[0]["group"] == "old" and rows[0]["seed"] is None
    with pytest.raises(StepError, match=r"Run\(s\) \['old'\] have more than one metrics.json"):
        summarize([tmp_path / "old.json", tmp_path / "old.json"], tmp_path / "s3.tsv")
    assert not (tmp_path / "s3.tsv").exists()


@pytest.mark.parametrize("keys", [{"labels_key": "label"}, {"batch_key": "batch"}])
def test_integration_without_a_batch_key_scores_bio_conservation_and_says_why_not_the_rest(trained, tmp_path, keys):
    from snakevi.steps import prepare, register

    h5ad, _, _, out = trained
    register(h5ad, tmp_path / "registry.json", n_top_genes=50, **keys)
    prepare(h5ad, tmp_path / "registry.json", tmp_path / "prepared", batch_size=64, seed=0)
    scored = integration(out / "latent.npy", tmp_path / "prepared", tmp_path / "registry.json", tmp_path / "report")
    lines = (tmp_path / "report" / "metrics.tsv").read_text().splitlines()
    if "labels_key" not in keys:  # nothing to compare an embedding with
        assert lines[1:] == [f"# {scored['notes'][0]}"] and "setup.labels_key" in scored["notes"][0]
        assert scored["Bio conservation"] is None
        return
    scores = pd.read_csv(tmp_path / "report" / "metrics.tsv", sep="\t", index_col="embedding", comment="#")
    assert scores.loc["X_scVI", ["Isolated labels", "KMeans NMI", "cLISI"]].notna().all()
    assert scores.loc["X_scVI", ["BRAS", "iLISI", "KBET", "Batch correction", "Total"]].isna().all()
    assert scored["Bio conservation"] == pytest.approx(scores.loc["X_scVI", "Bio conservation"], abs=1e-5)
    assert scored["Total"] is None and scored["Batch correction"] is None
    [note] = scored["notes"]
    assert "batch-correction metrics" in note and "no batch key (setup.batch_key)" in note
    assert lines[-1] == f"# {note}"
    assert (tmp_path / "report" / "integration.png").read_bytes()[:4] == b"\x89PNG"

