"""Export step: a snakevi model folder -> scvi-tools' model directory (``export.scvi_tools``).

The written directory is what ``scvi.model.SCVI.load(dir, adata)`` / ``SCANVI.load`` of
scvi-tools 1.4.x read, and what pipelines that exchange scvi-tools models (nf-core/scdownstream,
sc-atlasing-toolbox) take as a reference model. The weights are copied as they are, after
the bundle's digest check; no model is built and no data is read.
"""

from __future__ import annotations

import logging
import os

from snakevi.steps._io import StepError

log = logging.getLogger(__name__)


def export_scvi_tools(model_dir: str | os.PathLike, output: str | os.PathLike) -> None:
    """Write the SCVI or SCANVI model in ``model_dir`` as a scvi-tools model directory ``output``."""
    from snakevi.model.bundle import ModelFileError, read_bundle, read_meta
    from snakevi.model.scvi_tools_format import SCVI_TOOLS_VERSION, payload_from_bundle, write_scvi_tools

    try:
        name = read_meta(model_dir).get("model_name")
        if name not in ("SCVI", "SCANVI"):
            raise StepError(f"{model_dir} holds a {name} model; export.scvi_tools is for SCVI and SCANVI "
                            "runs (set export.scvi_tools: false for this run).")
        state_dict, meta = read_bundle(model_dir)
    except ModelFileError as err:
        raise StepError(str(err)) from err
    write_scvi_tools(payload_from_bundle(state_dict, meta), output, overwrite=True)
    log.info("%s model %s -> %s (scvi-tools %s format)", name, model_dir, output, SCVI_TOOLS_VERSION)
