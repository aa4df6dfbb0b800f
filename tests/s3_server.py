"""A real S3 endpoint on the loopback for the tests: moto's server on a free port, stopped at the end."""

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
def s3_server(log: Path, *, check_credentials: bool = False):
    """Start ``moto_server`` on 127.0.0.1 (a free port); yield an :class:`S3Server`; stop it.

    ``check_credentials``: the server refuses every key it has not issued (moto's IAM check from
    the first request), ours included: a server for the wrong-credentials case.
    """
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    env = {**os.environ, **({"INITIAL_NO_AUTH_ACTION_COUNT": "0"} if check_credentials else {})}
    with open(log, "w") as out:
        proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                env=env)
    server = S3Server(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                server.client().list_buckets()
                break
            except ClientError:
                break  # it answers (refusing our key)
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start on port {port}: {log.read_text()[-2000:]}")
                time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
