"""The cloud profiles and the job image: every setting known to its executor, the resources mapped.

No cluster, no Batch account and no container engine are at hand here: each profile is dry-run
with its executor plugin installed (an option the plugin does not know is an error) against a
real S3 server on the loopback, and the jobs' resources are read from the plan. The
Containerfile is checked against the package it installs; building it needs a container engine.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from s3_server import ACCESS_KEY, SECRET_KEY, s3_server
from wf_helpers import REPO, snakemake, write_config

PROFILES = REPO / "workflow" / "profiles"
BUCKET = "snakevi-profiles"
#: Per profile: the options a user gives per project, and what a GPU run's train job must ask for.
CASES = {
    "kubernetes": ([], {"gpu": "1", "nvidia_gpu": "1", "gpu_manufacturer": None}),
    "googlebatch": (["--googlebatch-project", "my-project"], {"gpu": "1", "nvidia_gpu": "1",
                                                               "googlebatch_memory": "15000"}),
    "aws-batch": (["--aws-batch-job-queue", "q", "--aws-batch-job-role", "arn:aws:iam::1:role/r"], {"gpu": "1", "_gpus": "1"}),
}


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    with s3_server(tmp_path_factory.mktemp("s3") / "moto.log") as server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server


def train_resources(dry_run: str) -> dict[str, str | None]:
    block = dry_run[dry_run.index("\nrule train:"):]
    line = next(line for line in block.splitlines() if line.strip().startswith("resources:"))
    pairs = [item.split("=", 1) for item in line.split("resources:", 1)[1].split(", ")]
    return {k.strip(): (None if v == "<TBD>" else v) for k, v in pairs}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_cloud_profile_plans_the_workflow_with_storage_and_gpus_mapped(tmp_path, bucket, name, demo_config):
    extra, want = CASES[name]
    profile = yaml.safe_load((PROFILES / name / "config.yaml").read_text())
    assert profile["default-storage-provider"] == "s3" and profile["shared-fs-usage"] == "none"
    assert "container-image" in profile and profile["retries"] >= 1
    config = dict(demo_config)
    config["runs"] = {"demo": {**demo_config["runs"]["demo"], "resources": {"gpu": 1}}}
    write_config(tmp_path, config)
    out = snakemake(tmp_path, "-n", "--workflow-profile", str(PROFILES / name), *extra,
                    "--default-storage-prefix", f"s3://{BUCKET}/{name}", "--storage-s3-endpoint-url", bucket.endpoint,
                    "--storage-s3-access-key", ACCESS_KEY, "--storage-s3-secret-key", SECRET_KEY)
    got = train_resources(out.stdout)
    for key, value in want.items():
        assert key in got and (value is None or got[key] == value), (key, got)
    assert "s3://snakevi-profiles/" in out.stdout  # every file planned through the bucket


def test_the_containerfile_installs_this_package_with_the_pinned_torch():
    text = (REPO / "Containerfile").read_text()
    pinned = re.search(r"^torch==([\d.]+)$", (REPO / "envs" / "constraints.txt").read_text(), re.M).group(1)
    assert f"ARG TORCH_VERSION={pinned}" in text
    for source in re.findall(r"^COPY (.+) /opt/snakevi", text, re.M):
        for path in source.split():
            assert (REPO / path).exists(), f"Containerfile copies {path}, which is not in the repository"
    extras = re.search(r'pip install "/opt/snakevi\[([a-z,]+)\]"', text).group(1).split(",")
    declared = (REPO / "pyproject.toml").read_text()
    assert all(re.search(rf"^{extra} = \[", declared, re.M) for extra in extras), extras
    # Every executor a profile names is installed in the image.
    for profile in PROFILES.glob("*/config.yaml"):
        executor = yaml.safe_load(profile.read_text())["executor"]
        if executor != "slurm":
            assert f"snakemake-executor-plugin-{executor}" in text, executor
