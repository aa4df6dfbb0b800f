"""Fixtures of the workflow tests (helpers are in wf_helpers.py)."""

from __future__ import annotations

import pytest

from wf_helpers import scenario_config


@pytest.fixture(scope="session")
def demo_config() -> dict:
    """The demo config made tiny (.test/config/config.yaml): 400 simulated cells, 2 epochs."""
    return scenario_config("config")
