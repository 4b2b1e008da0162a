"""Helpers for the tests that train: a tiny prepared synthetic dataset and tiny settings."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def tiny_overrides(prepared: Path, tracking_uri: str | None = None, **extra) -> list[str]:
    """Shrink the real config: tiny images, tiny backbone, a few steps, 2 epochs."""
    values = {
        "data.root": str(prepared / "dataset"),
        "data.prepared_dir": str(prepared),
        "data.synthetic.enabled": "true",
        "data.synthetic.n_ids": 16,
        "data.synthetic.images_per_cam": 2,
        "data.synthetic.height": 32,
        "data.synthetic.width": 16,
        "data.image_height": 32,
        "data.image_width": 16,
        "data.cache_workers": 1,
        "model.backbone": "tiny",
        "model.weights": "none",
        "train.epochs": 2,
        "train.p": 4,
        "train.k": 4,
        "train.steps_per_epoch": 3,
        "train.val_fraction": 0.3,
        "train.val_every": 1,
        "train.threads": 1,
        "train.eval_batch_size": 64,
        "tune.jobs": 1,
        "tracking.enabled": "false" if tracking_uri is None else "true",
        "tracking.uri": tracking_uri if tracking_uri else "null",
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def run_cli(*args: str, env: dict | None = None, timeout: int = 300, check: bool = True) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "vireid.harness", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"vireid {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
