"""Helpers to run the workflow with the `snakemake` command in a temporary working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "Snakefile"
#: The test scenarios' configs, one folder each (the Snakemake workflow catalog's layout).
SCENARIOS = REPO / ".test"


def snakemake_command(workdir: Path, *args: str, snakefile: Path = SNAKEFILE, env: dict[str, str] | None = None,
                      directory: bool = True) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of ``snakemake -s SNAKEFILE -d workdir ARGS`` (see :func:`snakemake`).

    ``directory=False`` leaves ``-d`` out (run it from ``workdir``): with no shared filesystem
    Snakemake hands ``-d`` on to every remote job, which would then work in ``workdir`` too.
    """
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe), "-s", str(snakefile), *(["-d", str(workdir)] if directory else []), *args]
    # Cluster jobs find this environment's python and snakemake on PATH.
    path = f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return cmd, {**os.environ, "PATH": path, "PYTHONWARNINGS": "ignore::DeprecationWarning", **(env or {})}


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 600, snakefile: Path = SNAKEFILE,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``snakemake -s SNAKEFILE -d workdir ARGS`` with this Python's environment (plus ``env``).

    The command runs from ``workdir``, so relative paths in ARGS are relative to it.
    """
    cmd, env = snakemake_command(workdir, *args, snakefile=snakefile, env=env)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=workdir)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-5000:]}\n--- stderr\n{proc.stderr[-8000:]}"
        )
    return proc


def scenario_config(name: str = "config") -> dict:
    """The config of test scenario ``name``: ``.test/<name>/config.yaml``."""
    return yaml.safe_load((SCENARIOS / name / "config.yaml").read_text())


def write_config(workdir: Path, config: dict, name: str = "config/config.yaml") -> Path:
    path = workdir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """Rule -> count from the "Job stats" table of ``snakemake -n`` ({} when nothing to do)."""
    jobs: dict[str, int] = {}
    lines = dry_run_output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("Job stats:"))
    except StopIteration:
        return jobs
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total" or not parts[1].isdigit():
            break
        jobs[parts[0]] = int(parts[1])
    return jobs
