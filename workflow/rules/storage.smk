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
