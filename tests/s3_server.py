"""Real servers on the loopback for the tests (moto's S3 and others): a free port each, stopped at the end."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import ClientError

ACCESS_KEY, SECRET_KEY = "snakevi-test-key", "snakevi-test-secret"


@dataclass
class S3Server:
    """Where the server listens, and a boto3 client for it."""

    endpoint: str

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1")

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under ``prefix`` (relative to it)."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"][len(prefix):] for page in pages for o in page.get("Contents", []))

    def snakemake_args(self, prefix: str) -> list[str]:
        """The command-line flags that make ``s3://<prefix>`` the default storage, no shared filesystem."""
        return ["--default-storage-provider", "s3", "--default-storage-prefix", f"s3://{prefix}",
                "--storage-s3-endpoint-url", self.endpoint, "--storage-s3-access-key", ACCESS_KEY,
                "--storage-s3-secret-key", SECRET_KEY, "--shared-fs-usage", "none"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def loopback_server(cmd: list[str], log: Path, answers, *, env: dict | None = None):
    """Start the server ``cmd`` (output to ``log``), wait up to 30 s until ``answers()``; stop it after the block.

    ``answers()`` returns whether the server answers (raising counts as not yet).
    """
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if answers():
                    break
            except Exception:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{Path(cmd[0]).name} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def s3_server(log: Path, *, check_credentials: bool = False):
    """Start ``moto_server`` on 127.0.0.1 (a free port); yield an :class:`S3Server`; stop it.

    ``check_credentials``: the server refuses every key it has not issued (moto's IAM check from
    the first request), ours included: a server for the wrong-credentials case.
    """
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    env = {**os.environ, **({"INITIAL_NO_AUTH_ACTION_COUNT": "0"} if check_credentials else {})}
    server = S3Server(f"http://127.0.0.1:{port}")

    def answers() -> bool:
        try:
            server.client().list_buckets()
        except ClientError:
            pass  # it answers (refusing our key)
        return True

    with loopback_server([str(exe), "-H", "127.0.0.1", "-p", str(port)], log, answers, env=env):
        yield server
