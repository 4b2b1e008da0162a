"""Shared fixtures: one tiny prepared synthetic SYSU-layout dataset per test session."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/*_support.py helpers

from study_support import tiny_overrides  # noqa: E402


@pytest.fixture(scope="session")
def prepared_tiny(tmp_path_factory) -> Path:
    """The real prepare path (synthesise -> manifest -> uint8 cache) at tiny sizes."""
    from vireid.harness.config import load_params
    from vireid.harness.data import prepare_from_params

    prepared = tmp_path_factory.mktemp("prepared") / "synth-sysu"
    params = load_params(dataset="synth-sysu", overrides=tiny_overrides(prepared))
    prepare_from_params(params.data)
    return prepared
