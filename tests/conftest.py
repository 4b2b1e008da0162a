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


def cuda_skip_reason() -> str | None:
    """Why `gpu` tests cannot run here, or None when torch sees a CUDA device."""
    import torch

    if torch.cuda.is_available():
        return None
    build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    return f"needs a CUDA device: torch.cuda.is_available() is False (torch {torch.__version__}, {build})"


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` are skipped, with the reason, where no CUDA device is present."""
    gpu = [item for item in items if item.get_closest_marker("gpu") is not None]
    reason = cuda_skip_reason() if gpu else None
    if reason:
        for item in gpu:
            item.add_marker(pytest.mark.skip(reason=reason))
