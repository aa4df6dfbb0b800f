"""Fixtures of the workflow tests (helpers are in wf_helpers.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def demo_config() -> dict:
    """The demo config made tiny: 400 simulated cells, 2 epochs."""
    return {
        "simulate": {"n_cells": 400, "n_genes": 120, "n_batches": 2, "n_groups": 3, "seed": 0},
        "runs": {
            "demo": {
                "dataset": "resources/demo.h5ad",
                "setup": {"batch_key": "batch", "labels_key": "label", "n_top_genes": 100},
                "model": {"n_latent": 4, "n_hidden": 32},
                "train": {"max_epochs": 2},
                "export": {"normalized_layer": "scvi_normalized"},
                "resources": {"threads": 1},
            }
        },
    }
