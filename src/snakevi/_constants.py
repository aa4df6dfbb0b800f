"""Names shared by every layer of the package: minibatch keys and file-format versions.

The minibatch keys are scvi-tools' ``REGISTRY_KEYS`` values, so a scvi-tools user reading a
minibatch dict (or a registry) sees the names they already know.
"""

from __future__ import annotations


class REGISTRY_KEYS:  # noqa: N801 - spelled as in scvi-tools on purpose
    """Keys of a minibatch dict and of the registry's ``fields`` section."""

    X_KEY = "X"
    BATCH_KEY = "batch"
    LABELS_KEY = "labels"
    SIZE_FACTOR_KEY = "size_factor"
    CAT_COVS_KEY = "extra_categorical_covs"
    CONT_COVS_KEY = "extra_continuous_covs"
    #: snakevi only: per-cell ``sum_g log(x_g!)``, float32 ``(B, 1)``, computed by the data layer
    #: from the sparse counts so the loss need not evaluate ``lgamma(x + 1)`` densely.
    X_LOG_FACTORIAL_KEY = "x_log_factorial"


#: Where ``setup_anndata`` stores the registry on the AnnData (a JSON string).
ADATA_UNS_REGISTRY_KEY = "_snakevi_registry"

#: Version of the registry JSON document; bump on any incompatible change.
REGISTRY_FORMAT_VERSION = 1

#: Version of the saved model bundle (``model.pt`` + ``model.json``). 2: ``model.json`` records
#: the SHA-256 of ``model.pt`` (version 1 bundles, without it, still load).
MODEL_FORMAT_VERSION = 2

#: Version of the training checkpoint dict written by ``ModelCheckpoint``.
CHECKPOINT_FORMAT_VERSION = 1
#: Default spacing of the train step's checkpoints in seconds (command and workflow; the config
#: schema repeats it): see ``ModelCheckpoint(every_n_seconds=...)``.
DEFAULT_CHECKPOINT_SECONDS = 60.0
