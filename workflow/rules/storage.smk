# Object storage (--default-storage-provider, URLs as datasets): what the plugins need from us.


def s3_directories_seen_after_remote_jobs():
    """Let snakemake-storage-plugin-s3 (0.3.6) see a directory a remote job uploaded.

    Its storage object remembers the answer to "is this key a directory?" from the first time
    it asks, which for an output is before the job ran: a ``directory()`` output (a run's
    ``prepared/``, ``model/``) uploaded by a job on another node then reads as "missing in
    storage" and the workflow fails. Forgetting that answer before each existence check asks
    the bucket again (one listing of the key's prefix). Jobs on the submitting machine are not
    affected: their upload sets the answer. tests/workflow/test_cloud.py fails without this.
    """
    try:
        from snakemake_storage_plugin_s3 import StorageObject
    except ImportError:
        return
    if getattr(StorageObject.exists, "asks_the_bucket_again", False):
        return
    original = StorageObject.exists

    def exists(self):
        self._is_dir = None
        return original(self)

    exists.asks_the_bucket_again = True
    StorageObject.exists = exists


s3_directories_seen_after_remote_jobs()


def storage_settings_for_the_jobs():
    """Give the storage plugins' settings to the jobs' own processes, as Snakemake gives remote jobs.

    The train job stores its checkpoints itself, while it runs (a job killed with its node
    uploads no output): it needs the endpoint and credentials the workflow's storage uses.
    Snakemake hands a remote job these settings as ``SNAKEMAKE_STORAGE_<PROVIDER>_<SETTING>``
    environment variables; a job run on this machine gets them here the same way (a value
    already in the environment is kept).
    """
    import dataclasses

    for provider, tagged in (workflow.storage_provider_settings or {}).items():
        settings = tagged.get_settings()
        if settings is None or not dataclasses.is_dataclass(settings):
            continue
        for item in dataclasses.fields(settings):
            value = getattr(settings, item.name, None)
            if item.metadata.get("env_var") and value is not None:
                name = f"SNAKEMAKE_STORAGE_{provider}_{item.name}".upper().replace(
                    "-", "_"
                )
                os.environ.setdefault(name, str(value))


def checkpoint_store(wildcards, output):
    """Where the train job mirrors its checkpoints: ``<storage prefix>/results/{run}/checkpoints``.

    Only when the outputs go to a default storage (``--default-storage-provider``); None
    otherwise (the checkpoint folder on the shared filesystem is enough). A params function
    sees an output as its local copy, ``<local storage prefix>/<provider>/<bucket>/<key>``
    (snakemake-storage-plugin-s3's layout), so the URL is made back from it. A derived param
    (it takes ``output``): Snakemake does not rerun the job when the prefix moves.
    """
    settings = workflow.storage_settings
    provider = settings.default_storage_provider
    if provider is None:
        return None
    local_root = os.path.join(str(settings.local_storage_prefix), provider) + os.sep
    history = os.path.normpath(str(output.history))
    if not history.startswith(local_root):
        return None  # a local() output: no storage for this run's files
    folder = os.path.dirname(history[len(local_root) :]).replace(os.sep, "/")
    url = f"{provider}://{folder}/checkpoints"
    return (
        url
        if url.startswith(str(settings.default_storage_prefix).rstrip("/"))
        else None
    )


storage_settings_for_the_jobs()


def s3_locations():
    """``(where it is set, s3:// URL, must exist)`` of the storage prefix and the config's S3 inputs."""
    settings = workflow.storage_settings
    locations = []
    if settings.default_storage_provider == "s3":
        locations.append(
            ("--default-storage-prefix", str(settings.default_storage_prefix), False)
        )
    for where, value in config_inputs():
        if str(value).lower().startswith("s3://"):
            locations.append((f"config key {where}", str(value), True))
    return locations


def s3_problem(url, where, endpoint, err):
    """What a failed S3 request means for ``url`` and how to fix it (None: not a problem we know)."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
    )

    bucket = url[len("s3://") :].split("/", 1)[0]
    head = f"S3 storage (snakemake-storage-plugin-s3): {url} ({where})"
    if isinstance(err, EndpointConnectionError):
        return (
            f"{head} cannot be reached: the endpoint {endpoint} does not answer ({err}). Fix "
            "--storage-s3-endpoint-url (or SNAKEMAKE_STORAGE_S3_ENDPOINT_URL), or the network to it."
        )
    if isinstance(err, NoCredentialsError):
        return (
            f"{head}: no credentials for {endpoint}. Give --storage-s3-access-key and "
            "--storage-s3-secret-key (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the machine's role)."
        )
    if isinstance(err, ClientError):
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            return (
                f"{head}: the bucket {bucket!r} does not exist at {endpoint}. Create it "
                f"(aws s3 mb s3://{bucket}) or fix {where}."
            )
        if code in (
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "403",
            "InvalidToken",
            "ExpiredToken",
        ):
            return (
                f"{head}: {endpoint} refused the credentials ({code}). Fix --storage-s3-access-key and "
                "--storage-s3-secret-key (or SNAKEMAKE_STORAGE_S3_ACCESS_KEY / ..._SECRET_KEY, the token, the "
                "machine's role), or the bucket's policy."
            )
        return f"{head}: {endpoint} answered {code or 'an error'}: {err}"
    return None


def check_s3_before_any_job():
    """An S3 storage that cannot be used stops the workflow here, before any job, saying what to fix.

    Without this, Snakemake fails when it first checks a job's files, with an exception-group
    traceback ("Failed to check existence of s3://...") that names neither the setting nor
    the fix. Checked, with one listing request each: the endpoint answers, the credentials are
    accepted, the bucket of the storage prefix exists, and each ``s3://`` input of the config
    (a dataset, a reference model folder) is there. In the main process only: a job's node
    trusts it.
    """
    locations = s3_locations()
    if not locations or not workflow.is_main_process:
        return
    import boto3
    from botocore.config import Config

    tagged = (workflow.storage_provider_settings or {}).get("s3")
    settings = tagged.get_settings() if tagged is not None else None

    def value(name):
        return getattr(settings, name, None) or None

    endpoint = value("endpoint_url") or "AWS S3"
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=value("endpoint_url"),
        aws_access_key_id=value("access_key"),
        aws_secret_access_key=value("secret_key"),
        aws_session_token=value("token"),
        region_name=value("region"),
        config=Config(retries={"max_attempts": 2}, connect_timeout=10, read_timeout=30),
    )
    for where, url, must_exist in locations:
        bucket, _, key = url[len("s3://") :].partition("/")
        try:
            found = client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        except Exception as err:
            problem = s3_problem(url, where, endpoint, err)
            if problem is None:
                raise
            raise WorkflowError(problem) from None
        if must_exist and not found.get("KeyCount"):
            raise WorkflowError(
                f"S3 storage (snakemake-storage-plugin-s3): {url} ({where}) does not exist at {endpoint}: upload "
                f"it there (aws s3 cp <file> {url}) or fix {where}."
            )


check_s3_before_any_job()


def check_http_before_any_job():
    """An ``http(s)://`` input of the config that cannot be fetched stops the workflow before any job.

    One HEAD request each (snakemake-storage-plugin-http asks the same first): a server that
    does not answer, or an answer other than success, is named with the config key and the
    fix. In the main process only.
    """
    import urllib.error
    import urllib.request

    if not workflow.is_main_process:
        return
    for where, url in config_inputs():
        if not re.match(r"^https?://", str(url), re.IGNORECASE):
            continue
        head = (
            f"HTTP storage (snakemake-storage-plugin-http): {url} (config key {where})"
        )
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, method="HEAD"), timeout=30
            ):
                pass
        except urllib.error.HTTPError as err:
            raise WorkflowError(
                f"{head}: the server answered {err.code} {err.reason}. Fix the URL (or the server's "
                "access rules), or copy the file where the workflow can read it."
            ) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise WorkflowError(
                f"{head} cannot be reached ({reason}). Check the host and port, and the network to it."
            ) from None


check_http_before_any_job()
