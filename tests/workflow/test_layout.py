"""The Snakemake workflow catalog's "standardized usage" layout, and the commands its page shows.

The catalog lists a workflow under standardized usage when its main definition is
`workflow/Snakefile`, `config/README.md` explains the config and `.snakemake-workflow-catalog.yml`
says how to run it; its quality checks are `snakemake --lint` and `snakefmt --check` (test_demo.py).
The repository root keeps a `Snakefile` of its own, so `snakemake --cores 2` there builds the same.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from wf_helpers import REPO, planned_jobs, snakemake, write_config

DEMO_JOBS = {"simulate": 1, "register": 1, "prepare": 1, "train": 1, "export": 1, "report": 1, "integration": 1,
             "summary": 1, "all": 1}


def code_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_root_snakefile_only_includes_the_main_definition():
    assert code_lines(REPO / "Snakefile") == ['workflow.include("workflow/Snakefile", overwrite_default_target=True)']
    main = (REPO / "workflow" / "Snakefile").read_text()
    assert 'configfile: "config/config.yaml"' in main and "rule all:" in main
    assert (REPO / "config" / "README.md").is_file()


def test_the_catalog_settings_say_how_to_run_it():
    settings = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    usage = settings["usage"]
    assert usage["software-stack-deployment"] == {"conda": True}
    assert usage["report"] is True
    assert set(usage["mandatory-flags"]) == {"desc", "flags"} and usage["mandatory-flags"]["desc"]


def test_the_catalogs_command_with_its_mandatory_flags_plans_the_demo(tmp_path):
    # What the catalog page tells a user to type, from a copy of the repository's config.
    usage = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())["usage"]
    flags = usage["mandatory-flags"]["flags"]
    flags = flags.split() if isinstance(flags, str) else list(flags)
    write_config(tmp_path, yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    # No target named: the default target (rule all) of the main definition, also through the root's include.
    for snakefile in (REPO / "workflow" / "Snakefile", REPO / "Snakefile"):
        out = snakemake(tmp_path, "--cores", "all", "-n", *flags, snakefile=snakefile)
        assert planned_jobs(out.stdout) == DEMO_JOBS, snakefile


def test_snakemake_finds_the_same_workflow_from_the_repository_root():
    # `snakemake` with no -s, from the root: the root Snakefile, which includes workflow/Snakefile.
    exe = Path(sys.executable).with_name("snakemake")
    listed = {}
    for args in ([], ["-s", "workflow/Snakefile"]):
        proc = subprocess.run([str(exe), *args, "--list-rules"], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        listed[tuple(args)] = proc.stdout.split()
    assert listed[()] == listed[("-s", "workflow/Snakefile")]
    assert {"all", "train", "map_query", "summary"} <= set(listed[()])


def test_every_workflow_script_ends_its_process_through_step_logging():
    # The ending (exit status of a signal stop, gc.freeze) lives in step_logging(ends_process=True),
    # not copied into each script; each script is only the call of its step.
    for script in sorted((REPO / "scripts").glob("*.py")):
        text = script.read_text()
        assert text.count("step_logging(") == 1 and "ends_process=True" in text, script.name
        assert "gc." not in text and "sys.exit" not in text, script.name
