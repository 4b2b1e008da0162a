"""Faults: kill -9 then resume, NaN losses, corrupt checkpoints, DDP on CPU with gloo."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from study_support import REPO, run_cli, tiny_overrides


def cli_args(prepared, run_dir, **extra):
    args = ["train", "--data", "synth-sysu", "--experiment", "idkl", "--run-dir", str(run_dir), "--no-progress"]
    for item in tiny_overrides(prepared, None, **extra):
        args += ["--set", item]
    return args


@pytest.mark.slow
def test_kill_9_then_resume_matches_uninterrupted(prepared_tiny, tmp_path):
    extra = {"train.deterministic": "true", "train.epochs": 3, "train.steps_per_epoch": 6}
    run_cli(*cli_args(prepared_tiny, tmp_path / "full", **extra))
    victim = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "vireid.harness", *cli_args(prepared_tiny, victim, **extra)],
                            cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (victim / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (victim / "metrics.json").exists()
    # Nothing half-written: the checkpoint that exists loads.
    from vireid.harness.checkpoint import load_checkpoint

    assert load_checkpoint(victim / "checkpoint.pt")["epoch"] >= 1
    run_cli(*cli_args(prepared_tiny, victim, **extra), "--resume")
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    resumed = json.loads((victim / "metrics.json").read_text())
    assert full["results"] == resumed["results"]


@pytest.mark.slow
def test_nan_loss_names_term_epoch_and_step(prepared_tiny, tmp_path):
    proc = run_cli(*cli_args(prepared_tiny, tmp_path / "run", **{"loss.triplet.weight": ".nan"}), check=False)
    assert proc.returncode == 2
    assert "loss term 'triplet'" in proc.stderr and "epoch 1, step 1" in proc.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.slow
def test_corrupt_and_foreign_checkpoints_are_refused(prepared_tiny, tmp_path):
    from vireid.harness.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a vireid-bench checkpoint"):
        load_checkpoint(foreign)
    other = tmp_path / "other.pt"
    save_checkpoint(other, {"model": {}, "method": "agw", "num_classes": 3})
    with pytest.raises(CheckpointError, match="for method 'agw', not 'idkl'"):
        load_checkpoint(other, method="idkl", num_classes=3)
    with pytest.raises(CheckpointError, match="has 3 identity classes, the dataset has 5"):
        load_checkpoint(other, method="agw", num_classes=5)
    # Resuming a run from a corrupt checkpoint is a clear CLI error.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(b"\x00" * 100)
    proc = run_cli(*cli_args(prepared_tiny, run_dir), "--resume", check=False)
    assert proc.returncode == 2 and "not a readable checkpoint" in proc.stderr


@pytest.mark.slow
def test_ddp_two_processes_gloo(prepared_tiny, tmp_path):
    run_dir = tmp_path / "ddp"
    args = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "vireid.harness",
            *cli_args(prepared_tiny, run_dir, **{"train.epochs": 1})]
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    import numpy as np

    feats = np.load(run_dir / "features.npz")
    assert feats["query_feats"].shape[0] == len(feats["query_ids"])
    assert metrics["results"] and all(r["n_queries"] > 0 for r in metrics["results"])
