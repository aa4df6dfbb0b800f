"""The `snakevi` command: one subcommand per step, same parameters, readable failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from snakevi.cli import build_parser, main


def test_help_lists_every_step():
    exe = Path(sys.executable).with_name("snakevi")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    for step in ("register", "prepare", "train", "export", "report", "integration", "map-query", "summarize",
                 "simulate"):
        assert step in out


def test_help_does_not_import_torch_or_anndata():
    code = "import sys; from snakevi.cli import build_parser; build_parser(); " \
           "print(any(m in sys.modules for m in ('torch', 'anndata')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_register_and_prepare_from_the_command_line(tiny_h5ad, tmp_path):
    reg = tmp_path / "reg.json"
    assert main(["register", "--input", str(tiny_h5ad), "--output", str(reg), "--batch-key", "batch",
                 "--n-top-genes", "30", "--log", str(tmp_path / "register.log")]) == 0
    assert json.loads(reg.read_text())["summary"]["n_vars"] == 30
    assert "finished" in (tmp_path / "register.log").read_text()
    assert main(["prepare", "--input", str(tiny_h5ad), "--registry", str(reg), "--output", str(tmp_path / "p"),
                 "--batch-size", "32", "--seed", "4"]) == 0
    spec = json.loads((tmp_path / "p" / "loader.json").read_text())
    assert spec["loader"]["batch_size"] == 32 and spec["split_params"]["seed"] == 4


def test_setup_json_is_the_config_section(tiny_h5ad, tmp_path):
    setup = {"batch_key": "batch", "labels_key": "label", "n_top_genes": 20, "layer": None,
             "categorical_covariate_keys": [], "continuous_covariate_keys": []}
    assert main(["register", "--input", str(tiny_h5ad), "--output", str(tmp_path / "r.json"),
                 "--setup", json.dumps(setup)]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["setup_args"]["labels_key"] == "label"


def test_bad_input_exits_1_with_the_reason(tiny_h5ad, tmp_path, capsys):
    status = main(["register", "--input", str(tiny_h5ad), "--output", str(tmp_path / "r.json"),
                   "--batch-key", "donor"])
    assert status == 1
    err = capsys.readouterr().err
    assert "register failed" in err and "'donor'" in err and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()


def test_params_must_be_a_json_object():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--prepared", "p", "--registry", "r", "--model", "m",
                                   "--history", "h", "--train-params", "[1, 2]"])


@pytest.mark.parametrize("how", ["inline", "json", "yaml"])
def test_params_with_a_key_given_twice_are_refused(tmp_path, capsys, how):
    inline = '{"max_epochs": 2, "max_epochs": 3}'
    if how == "inline":
        arg = inline
    else:
        path = tmp_path / f"train.{how}"
        path.write_text(inline if how == "json" else "max_epochs: 2\nmax_epochs: 3\n")
        arg = f"@{path}"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--prepared", "p", "--registry", "r", "--model", "m",
                                   "--history", "h", "--train-params", arg])
    assert "argument --train-params: key 'max_epochs' is given twice" in capsys.readouterr().err


def test_report_integration_and_summarize_from_the_command_line(tiny_registered, tmp_path):
    _, reg, prepared = tiny_registered
    latent = tmp_path / "latent.npy"
    np.save(latent, np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32))
    (tmp_path / "history.csv").write_text("epoch,elbo_train,elbo_validation\n0,10.0,11.0\n1,9.0,10.5\n")
    common = ["--latent", str(latent), "--prepared", str(prepared), "--registry", str(reg),
              "--output", str(tmp_path / "report"), "--run", "cli"]
    assert main(["report", "--history", str(tmp_path / "history.csv"), *common]) == 0
    assert main(["integration", *common, "--no-metrics"]) == 0
    assert main(["summarize", "--metrics", str(tmp_path / "report" / "metrics.json"),
                 "--integration", str(tmp_path / "report" / "integration.json"),
                 "--output", str(tmp_path / "summary.tsv")]) == 0
    header, row = (tmp_path / "summary.tsv").read_text().splitlines()
    values = dict(zip(header.split("\t"), row.split("\t")))
    assert values["run"] == "cli" and values["epochs"] == "2" and values["elbo_validation"] == "10.5"
    assert values["Total"] == ""  # --no-metrics: the integration step wrote a note, no scores
    assert (tmp_path / "report" / "metrics.tsv").read_text().splitlines()[1].startswith("# integration metrics")
