"""The conda envs (envs/*.yaml) install snakevi from this checkout when Snakemake creates them.

There is no conda on the test machine, so a stub `conda` first on PATH answers what Snakemake
asks and, for `conda env create --file F`, does what conda's pip installer does with the yaml's
pip list: write it to a requirements file in F's folder and run pip from that folder
(conda/env/installers/pip.py). pip runs offline (--dry-run --no-deps --no-index), so this checks
that every pip entry resolves, not a real conda solve.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from wf_helpers import REPO, snakemake

STUB = r'''#!{python}
import json, os, subprocess, sys
from pathlib import Path
import yaml
args = sys.argv[1:]
log = Path({log!r})
if args == ["--version"]:
    print("conda 24.11.0")
elif args[:2] == ["info", "--json"]:
    print(json.dumps({{"conda_prefix": {prefix!r}, "platform": "linux-64"}}))
elif args[:2] == ["config", "--get"]:
    print(json.dumps({{"get": {{"channel_priority": "strict"}}}}))
elif args[:2] == ["env", "create"]:
    f = Path(args[args.index("--file") + 1]).resolve()
    p = args[args.index("--prefix") + 1]
    pips = [d["pip"] for d in yaml.safe_load(f.read_text())["dependencies"] if isinstance(d, dict)]
    specs = [s for group in pips for s in group]
    req = f.parent / "condaenv.stub.requirements.txt"
    req.write_text("\n".join(specs))
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps",
                          "--no-build-isolation", "--no-index", "-r", str(req)],
                         cwd=f.parent, capture_output=True, text=True)
    req.unlink()
    with log.open("a") as fh:
        fh.write(json.dumps({{"file": str(f), "rc": out.returncode, "out": out.stdout + out.stderr}}) + "\n")
    if out.returncode:
        sys.stderr.write(out.stdout + out.stderr)
        sys.exit(1)
    os.makedirs(os.path.join(p, "conda-meta"), exist_ok=True)
elif args[:1] == ["clean"]:
    pass  # Snakemake's default --conda-cleanup-pkgs tarballs
else:
    sys.exit("stub conda: unexpected " + " ".join(args))
'''


def _stub_conda(tmp_path: Path) -> tuple[Path, Path]:
    bin_dir, log = tmp_path / "bin", tmp_path / "conda_calls.jsonl"
    bin_dir.mkdir()
    stub = bin_dir / "conda"
    stub.write_text(STUB.format(python=sys.executable, log=str(log), prefix=str(tmp_path / "conda")))
    stub.chmod(0o755)
    return bin_dir, log


def _copy_checkout(tmp_path: Path) -> Path:
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO, checkout, ignore=shutil.ignore_patterns(".git", ".venv", ".venv-*", ".snakemake", "results",
                                                                  "resources", "logs", "__pycache__"))
    return checkout


def _calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_conda_envs_install_snakevi_from_the_checkout(tmp_path, monkeypatch):
    """`--sdm conda --conda-create-envs-only` on the demo: the env's pip entry resolves to the checkout."""
    monkeypatch.delenv("SNAKEVI_SOURCE", raising=False)  # conda.smk's default is under test
    checkout = _copy_checkout(tmp_path)
    bin_dir, log = _stub_conda(tmp_path)
    snakemake(checkout, "--sdm", "conda", "--conda-create-envs-only", "--cores", "1",
              snakefile=checkout / "Snakefile", env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
              timeout=120)
    calls = _calls(log)
    assert [Path(c["file"]).parent for c in calls] == [checkout / ".snakemake" / "conda"], calls
    assert all(c["rc"] == 0 and f"Obtaining file://{checkout}" in c["out"] for c in calls), calls


def test_every_env_file_installs_snakevi_from_snakevi_source(tmp_path):
    """Each envs/*.yaml (the GPU one too), copied where Snakemake copies it, resolves its pip list."""
    checkout = _copy_checkout(tmp_path)
    bin_dir, log = _stub_conda(tmp_path)
    conda_dir = checkout / ".snakemake" / "conda"
    conda_dir.mkdir(parents=True)
    env_files = sorted((REPO / "envs").glob("*.yaml"))
    assert {f.name for f in env_files} >= {"snakevi-cpu.yaml", "snakevi-cuda.yaml"}
    for env_file in env_files:
        copy = conda_dir / env_file.name
        shutil.copyfile(env_file, copy)
        proc = subprocess.run([str(bin_dir / "conda"), "env", "create", "--file", str(copy),
                               "--prefix", str(conda_dir / env_file.stem)],
                              env={**os.environ, "SNAKEVI_SOURCE": str(checkout)}, capture_output=True, text=True)
        assert proc.returncode == 0, f"{env_file.name}: {proc.stderr}"
    assert all(f"Obtaining file://{checkout}" in c["out"] for c in _calls(log)), _calls(log)
