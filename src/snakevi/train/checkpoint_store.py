"""Where a training run's checkpoint folder is kept off the node: an object-store prefix.

On a cloud node (no shared filesystem, a spot VM that may vanish) the checkpoint folder on the
node's disk is lost with the node. :class:`snakevi.train.checkpoint_mirror.CheckpointMirror`
copies it to a prefix of an object store after every checkpoint and back onto a fresh node
before training resumes; this module is the store side of that: objects and one manifest.

Layout under the prefix ``s3://bucket/results/run/checkpoints``::

    manifest.json              which object holds each file of the folder, with its SHA-256
    files/<path>.<sha256[:16]> the files (``last.ckpt``, its digest record, ``fingerprint.json``,
                               ``history.live.csv``, a later phase's subfolder), by content

A file's object is written before the manifest that names it, and replaced objects are deleted
only after, so the manifest (one object, whose PUT is atomic) always names a complete, matching
set: a node killed at any moment leaves the previous checkpoint or the new one, never a mix.

Only S3 (and S3-compatible servers) is supported for now. Credentials and endpoint come from
the settings snakemake-storage-plugin-s3 takes (``SNAKEMAKE_STORAGE_S3_ENDPOINT_URL``,
``..._ACCESS_KEY``, ``..._SECRET_KEY``, ``..._TOKEN``, ``..._REGION``: what Snakemake gives a
remote job, and what the workflow sets for a local one), else from boto3's own chain
(``AWS_*`` variables, ``~/.aws``, a node's instance role).
"""

from __future__ import annotations

import json
import os
import re
from typing import BinaryIO

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
#: The Snakemake S3 storage plugin's settings, as environment variables (see its ``env_var`` fields).
S3_SETTINGS_ENV = {
    "endpoint_url": "SNAKEMAKE_STORAGE_S3_ENDPOINT_URL",
    "access_key": "SNAKEMAKE_STORAGE_S3_ACCESS_KEY",
    "secret_key": "SNAKEMAKE_STORAGE_S3_SECRET_KEY",
    "token": "SNAKEMAKE_STORAGE_S3_TOKEN",
    "region": "SNAKEMAKE_STORAGE_S3_REGION",
}


class CheckpointStoreError(RuntimeError):
    """The store cannot be reached or used; the message names the URL, the endpoint and a fix."""


def is_store_url(location: str | os.PathLike | None) -> bool:
    """Whether a checkpoint store location is a URL (``s3://...``) rather than nothing."""
    return location is not None and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", str(location)) is not None


def open_store(url: str) -> "S3CheckpointStore":
    """The store at ``url``; ``ValueError`` for a scheme snakevi cannot keep checkpoints in."""
    scheme = str(url).split("://", 1)[0].lower()
    if scheme != "s3":
        raise ValueError(
            f"checkpoint store {url!r}: snakevi keeps checkpoints in S3 (s3://...) only; on another storage the "
            "checkpoints stay on the node (a preempted job restarts from epoch 0)."
        )
    return S3CheckpointStore(url)


class S3CheckpointStore:
    """A checkpoint folder's objects under an ``s3://bucket/prefix`` URL.

    Parameters
    ----------
    url
        ``s3://bucket/key/prefix`` (no trailing slash needed).
    """

    def __init__(self, url: str) -> None:
        match = re.fullmatch(r"s3://([^/]+)/?(.*)", str(url))
        if match is None:
            raise ValueError(f"checkpoint store {url!r}: expected s3://bucket/prefix")
        self.url = str(url).rstrip("/")
        self.bucket, prefix = match.group(1), match.group(2).strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        settings = {name: os.environ.get(var) or None for name, var in S3_SETTINGS_ENV.items()}
        self.endpoint = settings["endpoint_url"] or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
        self._client = _s3_client(settings)

    # -- reading -----------------------------------------------------------------------------

    def read_manifest(self) -> dict | None:
        """The stored manifest, or None when the prefix holds no checkpoint yet."""
        try:
            body = self._call("read", self.prefix + MANIFEST, self._client.get_object, Bucket=self.bucket,
                              Key=self.prefix + MANIFEST)["Body"].read()
        except _NoSuchKey:
            return None
        try:
            manifest = json.loads(body)
            if manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("files"), dict):
                raise ValueError(f"format {manifest.get('format')!r}")
        except (ValueError, AttributeError) as err:
            raise CheckpointStoreError(
                f"{self.url}/{MANIFEST} is not a snakevi checkpoint manifest ({err}); delete the prefix "
                f"{self.url}/ to train from scratch."
            ) from err
        return manifest

    def download(self, key: str, fh: BinaryIO) -> None:
        """Write the object ``key`` (relative to the prefix) into the open file ``fh``."""
        try:
            self._call("read", self.prefix + key, self._client.download_fileobj, self.bucket, self.prefix + key, fh)
        except _NoSuchKey as err:
            raise CheckpointStoreError(
                f"{self.url}/{key}, named by {self.url}/{MANIFEST}, is missing: the stored checkpoint is incomplete "
                f"(deleted by hand?); delete the prefix {self.url}/ to train from scratch."
            ) from err

    # -- writing -----------------------------------------------------------------------------

    def upload(self, fh: BinaryIO, key: str) -> None:
        """Store the open file ``fh`` (from its current position) as the object ``key``."""
        self._call("write", self.prefix + key, self._client.upload_fileobj, fh, self.bucket, self.prefix + key)

    def write_manifest(self, manifest: dict) -> None:
        """Replace the manifest (one PUT: readers see the old one or the new one)."""
        body = json.dumps({"format": MANIFEST_FORMAT, **manifest}, indent=1).encode()
        self._call("write", self.prefix + MANIFEST, self._client.put_object, Bucket=self.bucket,
                   Key=self.prefix + MANIFEST, Body=body, ContentType="application/json")

    def delete_files_except(self, keep: set[str]) -> None:
        """Delete the objects under ``files/`` that are not in ``keep`` (keys relative to the prefix)."""
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                       Prefix=self.prefix + "files/")
        stale = [obj["Key"] for page in pages for obj in page.get("Contents", [])
                 if obj["Key"][len(self.prefix):] not in keep]
        for start in range(0, len(stale), 1000):
            self._call("write", self.prefix + "files/", self._client.delete_objects, Bucket=self.bucket,
                       Delete={"Objects": [{"Key": k} for k in stale[start:start + 1000]], "Quiet": True})

    # -- errors ------------------------------------------------------------------------------

    def _call(self, what: str, key: str, method, *args, **kwargs):
        """``method(*args, **kwargs)``, its botocore errors turned into messages a user can act on."""
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

        where = f"s3://{self.bucket}/{key}"
        try:
            return method(*args, **kwargs)
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404") and what == "read":
                raise _NoSuchKey(where) from err
            raise CheckpointStoreError(_client_error_message(what, where, self.bucket, self.endpoint, code, err)) \
                from err
        except EndpointConnectionError as err:
            raise CheckpointStoreError(
                f"cannot {what} checkpoint {where}: the S3 endpoint {self.endpoint} does not answer ({err}). "
                "Check --storage-s3-endpoint-url (SNAKEMAKE_STORAGE_S3_ENDPOINT_URL) and that the node can reach it."
            ) from err
        except NoCredentialsError as err:
            raise CheckpointStoreError(
                f"cannot {what} checkpoint {where}: no S3 credentials. Give --storage-s3-access-key and "
                "--storage-s3-secret-key (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or an instance role)."
            ) from err
        except BotoCoreError as err:
            raise CheckpointStoreError(f"cannot {what} checkpoint {where} at {self.endpoint}: {err}") from err


class _NoSuchKey(Exception):
    """An object that is not there (a normal answer when reading, e.g. no manifest yet)."""


def _client_error_message(what: str, where: str, bucket: str, endpoint: str, code: str, err) -> str:
    if code in ("NoSuchBucket",):
        fix = f"the bucket {bucket!r} does not exist at {endpoint}: create it, or fix --default-storage-prefix."
    elif code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "InvalidToken",
                  "ExpiredToken"):
        fix = (f"the S3 server at {endpoint} refused the credentials ({code}): check --storage-s3-access-key, "
               "--storage-s3-secret-key (and the token), or the node's role and the bucket's policy.")
    else:
        fix = f"the S3 server at {endpoint} answered {code or 'an error'}: {err}"
    return f"cannot {what} checkpoint {where}: {fix}"


def _s3_client(settings: dict):
    try:
        import boto3
        from botocore.config import Config
    except ImportError as err:
        raise CheckpointStoreError(
            "checkpoints in S3 need boto3, which is not installed: pip install 'snakevi[cloud]' (or boto3)."
        ) from err
    # A few quick retries: a transient error costs a checkpoint's upload, not the training.
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60)
    return boto3.session.Session().client(
        "s3", endpoint_url=settings["endpoint_url"], aws_access_key_id=settings["access_key"],
        aws_secret_access_key=settings["secret_key"], aws_session_token=settings["token"],
        region_name=settings["region"], config=config)
