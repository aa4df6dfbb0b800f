"""register: .h5ad -> registry.json, with clear errors and no output on failure."""

from __future__ import annotations

import json

import numpy as np
import pytest

from snakevi.steps import StepError, register


def file_sha256(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_register_writes_the_registry_and_leaves_the_input_unchanged(tiny_h5ad, tmp_path):
    before = file_sha256(tiny_h5ad)
    reg = register(tiny_h5ad, tmp_path / "r" / "registry.json", batch_key="batch", labels_key="label")
    assert file_sha256(tiny_h5ad) == before
    on_disk = json.loads((tmp_path / "r" / "registry.json").read_text())
    assert on_disk == reg
    assert reg["summary"]["n_obs"] == 300 and reg["summary"]["n_vars"] == 60
    assert reg["summary"]["n_batch"] == 2 and reg["summary"]["n_labels"] == 3
    assert "gene_selection" not in reg


def test_n_top_genes_selects_and_records_genes(tiny_h5ad, tmp_path):
    reg = register(tiny_h5ad, tmp_path / "registry.json", batch_key="batch", n_top_genes=25)
    genes = reg["fields"]["X"]["column_names"]
    assert reg["summary"]["n_vars"] == 25 and len(genes) == 25
    assert reg["gene_selection"]["n_top_genes"] == 25
    assert reg["gene_selection"]["n_vars_input"] == 60
    assert reg["gene_selection"]["batch_key"] == "batch"
    # Original gene order is kept.
    all_genes = [f"gene{i}" for i in range(60)]
    assert genes == [g for g in all_genes if g in set(genes)]
    assert reg["gene_selection"]["flavor"] == "seurat_v3"  # scanpy's default


def test_hvg_flavor_chooses_scanpy_s_flavour_and_an_unknown_one_is_refused(tiny_h5ad, tmp_path):
    import anndata

    from snakevi.data.hvg import highly_variable_genes

    adata = anndata.read_h5ad(tiny_h5ad)
    for flavor in ("seurat_v3_paper", "cell_ranger", "seurat"):
        reg = register(tiny_h5ad, tmp_path / f"{flavor}.json", batch_key="batch", n_top_genes=25, hvg_flavor=flavor)
        expected = highly_variable_genes(adata.X, 25, adata.obs["batch"].astype(str).to_numpy(), flavor=flavor,
                                         gene_names=adata.var_names)["selected"]
        assert reg["fields"]["X"]["column_names"] == list(adata.var_names[expected])
        assert reg["gene_selection"]["method"] == f"scanpy_{flavor}"
    with pytest.raises(StepError, match="setup.hvg_flavor='pearson' is not one of scanpy's flavours: seurat_v3, "):
        register(tiny_h5ad, tmp_path / "bad.json", n_top_genes=25, hvg_flavor="pearson")
    assert not (tmp_path / "bad.json").exists()


def test_missing_batch_key_names_the_key_and_writes_nothing(tiny_h5ad, tmp_path):
    out = tmp_path / "registry.json"
    with pytest.raises(StepError, match="donor") as err:
        register(tiny_h5ad, out, batch_key="donor")
    assert "batch" in str(err.value)  # lists the columns that exist
    assert list(tmp_path.iterdir()) == []


def test_n_top_genes_above_n_vars_is_refused(tiny_h5ad, tmp_path):
    with pytest.raises(StepError, match="n_top_genes=61"):
        register(tiny_h5ad, tmp_path / "registry.json", n_top_genes=61)
    assert not (tmp_path / "registry.json").exists()


def test_a_file_that_is_not_h5ad_is_refused(tmp_path):
    bad = tmp_path / "counts.csv"
    bad.write_text("cell,gene1\nc1,3\n")
    with pytest.raises(StepError, match="not an .h5ad file"):
        register(bad, tmp_path / "registry.json")


def test_a_truncated_h5ad_is_refused(tiny_h5ad, tmp_path):
    cut = tmp_path / "cut.h5ad"
    data = tiny_h5ad.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(StepError, match="truncated or corrupted"):
        register(cut, tmp_path / "registry.json")


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(StepError, match="does not exist"):
        register(tmp_path / "nope.h5ad", tmp_path / "registry.json")


def test_non_count_values_are_refused_naming_the_cell(tmp_path):
    from snakevi.data import simulate

    adata = simulate(n_cells=50, n_genes=10, seed=0)
    adata.X = adata.X.toarray()
    adata.X[3, 4] = 1.5
    path = tmp_path / "bad.h5ad"
    adata.write_h5ad(path)
    with pytest.raises(StepError, match=str(adata.obs_names[3])):
        register(path, tmp_path / "registry.json")
    assert not np.isnan(adata.X).any()


def test_a_gene_list_file_keeps_those_genes_in_the_datasets_order(tiny_h5ad, tmp_path):
    listed = tmp_path / "genes.txt"
    listed.write_text("# my markers\ngene7\n\ngene3\n  gene40  \n")
    reg = register(tiny_h5ad, tmp_path / "registry.json", batch_key="batch", genes=listed)
    assert reg["fields"]["X"]["column_names"] == ["gene3", "gene7", "gene40"]
    assert reg["gene_selection"] == {"method": "gene_list", "path": str(listed), "n_genes": 3, "n_vars_input": 60}


@pytest.mark.parametrize(("text", "message"), [
    ("gene1\nCD3E\nMS4A1\n", r"2 of the 3 genes in .*genes.txt are not var_names of .*\['CD3E', 'MS4A1'\]"),
    ("gene1\ngene1\n", r"lists \['gene1'\] more than once"),
    ("# nothing\n\n", "lists no genes"),
])
def test_a_bad_gene_list_is_refused_naming_the_file_and_genes(tiny_h5ad, tmp_path, text, message):
    (tmp_path / "genes.txt").write_text(text)
    with pytest.raises(StepError, match=message):
        register(tiny_h5ad, tmp_path / "registry.json", genes=tmp_path / "genes.txt")
    assert not (tmp_path / "registry.json").exists()


def test_a_gene_list_and_n_top_genes_together_are_refused(tiny_h5ad, tmp_path):
    (tmp_path / "genes.txt").write_text("gene1\n")
    with pytest.raises(StepError, match="setup.genes .* and setup.n_top_genes .* give one of them"):
        register(tiny_h5ad, tmp_path / "registry.json", genes=tmp_path / "genes.txt", n_top_genes=10)
    with pytest.raises(StepError, match="is not a file"):
        register(tiny_h5ad, tmp_path / "registry.json", genes=tmp_path / "absent.txt")
    assert not (tmp_path / "registry.json").exists()


def _with_missing_labels(tiny_h5ad, tmp_path):
    import anndata

    adata = anndata.read_h5ad(tiny_h5ad)
    labels = adata.obs["label"].astype(object)
    labels.iloc[[3, 10, 11]] = np.nan
    adata.obs["label"] = labels.astype("category")
    adata.write_h5ad(tmp_path / "partial.h5ad")
    return tmp_path / "partial.h5ad", adata


def test_missing_labels_are_refused_by_default_naming_the_option(tiny_h5ad, tmp_path):
    h5ad, _ = _with_missing_labels(tiny_h5ad, tmp_path)
    with pytest.raises(StepError, match=r"3 missing value\(s\).*setup.missing_labels: unlabeled"):
        register(h5ad, tmp_path / "registry.json", labels_key="label")
    with pytest.raises(StepError, match="'unlabeled' needs setup.unlabeled_category"):
        register(h5ad, tmp_path / "registry.json", labels_key="label", missing_labels="unlabeled")
    assert not (tmp_path / "registry.json").exists()


@pytest.mark.parametrize("mode", ["unlabeled", "drop"])
def test_missing_labels_rule_is_applied_by_register_prepare_and_export(tiny_h5ad, tmp_path, mode):
    from snakevi.data.prepared import load_prepared
    from snakevi.steps import export, prepare, train
    from snakevi.steps.integration import labelled_cells

    h5ad, adata = _with_missing_labels(tiny_h5ad, tmp_path)
    reg = register(h5ad, tmp_path / "registry.json", batch_key="batch", labels_key="label",
                   unlabeled_category="Unknown", missing_labels=mode)
    assert reg["missing_labels"]["n_cells"] == 3
    n = 300 if mode == "unlabeled" else 297
    assert reg["summary"]["n_obs"] == n
    prepare(h5ad, tmp_path / "registry.json", tmp_path / "prepared", seed=0)
    from snakevi.data import registry_from_json

    data = load_prepared(tmp_path / "prepared", registry_from_json(tmp_path / "registry.json"))
    assert data.X.shape[0] == n
    # Read in chunks of 4 rows (dropped cells inside and across chunks): the same arrays.
    prepare(h5ad, tmp_path / "registry.json", tmp_path / "prepared4", seed=0, chunk_rows=4)
    small = load_prepared(tmp_path / "prepared4", registry_from_json(tmp_path / "registry.json"))
    assert (small.X != data.X).nnz == 0
    expected = adata.X if mode == "unlabeled" else adata.X[np.setdiff1d(np.arange(300), [3, 10, 11])]
    genes = [adata.var_names.get_loc(g) for g in reg["fields"]["X"]["column_names"]]
    assert (data.X != expected[:, genes]).nnz == 0
    # The Unknown cells (the filled ones) are left out of the label-based metrics, for SCVI too.
    assert len(labelled_cells(data, reg)) == 297
    train(tmp_path / "prepared", tmp_path / "registry.json", tmp_path / "model", tmp_path / "h.csv",
          latent_out=tmp_path / "latent.npy", model_params={"n_latent": 2, "n_hidden": 8},
          train_params={"max_epochs": 1}, seed=0, accelerator="cpu")
    emb = export(tmp_path / "model", h5ad, tmp_path / "emb.h5ad", latent=tmp_path / "latent.npy")
    kept = adata.obs_names if mode == "unlabeled" else adata.obs_names.delete([3, 10, 11])
    assert list(emb.obs_names) == list(kept)
    if mode == "unlabeled":
        assert list(emb.obs["label"].iloc[[3, 10, 11]]) == ["Unknown"] * 3
    else:
        with pytest.raises(StepError, match="full_anndata with setup.missing_labels: drop"):
            export(tmp_path / "model", h5ad, tmp_path / "full.h5ad", latent=tmp_path / "latent.npy",
                   full_anndata=True)
        assert not (tmp_path / "full.h5ad").exists()
