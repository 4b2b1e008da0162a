"""Test features and run info of an imported run (a folder written by `vireid import-checkpoint`).

A trained run already holds its test features; an imported one holds only weights, so
`vireid evaluate` extracts its features here, on the dataset of the evaluate command's params,
exactly as the trainer does at the end of a run (same transform, batch size, device, AMP).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vireid.harness.checkpoint_import import PROVENANCE, CheckpointImportError


def is_imported(run_dir: str | Path) -> bool:
    return (Path(run_dir) / PROVENANCE).is_file()


def read_provenance(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / PROVENANCE
    try:
        prov = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointImportError(f"{path}: unreadable provenance record ({exc})") from None
    for key in ("format", "source_label", "sha256", "file", "method", "num_classes"):
        if key not in prov:
            raise CheckpointImportError(f"{path}: missing key {key!r} (write the folder with vireid import-checkpoint)")
    return prov


def load_model(run_dir: str | Path):
    """(model with the imported weights, the run's params, provenance)."""
    from vireid.harness.checkpoint import load_checkpoint
    from vireid.harness.config import load_params
    from vireid.harness.runner import CHECKPOINT, restore_model

    run_dir = Path(run_dir)
    prov = read_provenance(run_dir)
    run_params = load_params(run_dir / "params.yaml")
    if run_params.model.method != prov["method"]:
        raise CheckpointImportError(f"{run_dir / 'params.yaml'}: model.method {run_params.model.method!r}, but the "
                                    f"imported checkpoint is for {prov['method']!r}")
    state = load_checkpoint(run_dir / CHECKPOINT, method=prov["method"], num_classes=prov["num_classes"])
    return restore_model(run_params, prov["num_classes"], state["model"]), run_params, prov


def score_arrays(run_dir: str | Path, params: Any) -> tuple[dict[str, np.ndarray], dict[str, Any], str]:
    """(features arrays, run info for metrics.json, dataset fingerprint) on `params.data`'s test split."""
    import torch

    from vireid.datasets.transforms import EvalTransform
    from vireid.harness import tracking
    from vireid.harness.data import load_prepared
    from vireid.harness.evaluation.results import RunInfo
    from vireid.harness.runner import extract_test_arrays, resolve_device
    from vireid.harness.trainer import resolve_amp

    model, run_params, prov = load_model(run_dir)
    cfg = params.train
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    model = model.to(device)
    data = load_prepared(params.data)
    transform = EvalTransform().to(device)
    amp_dtype = resolve_amp(cfg.amp, device)
    arrays = extract_test_arrays(model, data, cfg.eval_batch_size, transform, device, amp_dtype)
    info = RunInfo(
        variant=run_params.experiment.name,
        variant_label=run_params.experiment.label or run_params.experiment.name,
        method=run_params.model.method, dataset=params.data.name, dataset_label=params.data.label, seed=None,
        git_commit=tracking.git_commit(), params=run_params.flat(),
        selected_epoch=prov.get("source_entries", {}).get("epoch"), kind="imported",
        imported={"format": prov["format"], "label": prov["source_label"], "file": prov["file"],
                  "sha256": prov["sha256"]}).to_dict()
    return arrays, info, data.fingerprint
