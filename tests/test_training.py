"""The trainer on a tiny synthetic set: learning, outputs, MLflow records, exact resume."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from vireid.harness.config import list_experiments, load_params
from study_support import tiny_overrides


def params_for(prepared, tracking_uri=None, experiment="idkl", **extra):
    return load_params(experiment=experiment, dataset="synth-sysu",
                       overrides=tiny_overrides(prepared, tracking_uri, **extra))


def test_training_lowers_the_loss_and_writes_every_output(prepared_tiny, tmp_path):
    from vireid.harness.evaluation.features_file import load_features
    from vireid.harness.runner import run_training

    params = params_for(prepared_tiny, **{"train.epochs": 4, "train.steps_per_epoch": 4, "train.lr": 1e-3})
    metrics = run_training(params, tmp_path / "run", progress=False)
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4]
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert {"loss/id", "loss/triplet"} <= set(history.columns)
    assert "val/mAP" in history.columns
    for name in ("params.yaml", "history.csv", "metrics.json", "cmc.csv", "features.npz", "checkpoint.pt"):
        assert (tmp_path / "run" / name).is_file(), name
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    protocols = [r["protocol"] for r in metrics["results"]]
    assert protocols == params.protocols()
    for res in metrics["results"]:
        assert 0 <= res["mAP"] <= 100 and res["rerank"]["enabled"] is False
        assert res["dataset_fingerprint"]
    feats = load_features(tmp_path / "run" / "features.npz")
    assert feats["query_feats"].shape[0] == len(feats["query_ids"]) > 0
    assert np.isfinite(feats["gallery_feats"]).all()


def test_resume_after_checkpoint_continues_exactly(prepared_tiny, tmp_path):
    from vireid.harness.runner import run_training

    extra = {"train.deterministic": "true", "train.epochs": 2}
    full = run_training(params_for(prepared_tiny, **extra), tmp_path / "full", progress=False)
    # The same run stopped after epoch 1, then resumed from its checkpoint.
    run_training(params_for(prepared_tiny, **dict(extra, **{"train.epochs": 1})), tmp_path / "cut", progress=False)
    resumed = run_training(params_for(prepared_tiny, **extra), tmp_path / "cut", resume=True, progress=False)
    h_full = pd.read_csv(tmp_path / "full" / "history.csv")
    h_cut = pd.read_csv(tmp_path / "cut" / "history.csv")
    loss_cols = [c for c in h_full.columns if c.startswith("loss")]
    np.testing.assert_array_equal(h_full[loss_cols].to_numpy(), h_cut[loss_cols].to_numpy())
    assert [r["mAP"] for r in full["results"]] == [r["mAP"] for r in resumed["results"]]


@pytest.mark.slow
def test_mlflow_run_has_params_metrics_and_artifacts(prepared_tiny, tmp_path):
    import mlflow

    from vireid.harness.runner import run_training

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    metrics = run_training(params_for(prepared_tiny, uri), tmp_path / "run", progress=False)
    assert "mlflow_run_id" not in metrics["run"]  # differs between identical runs: kept out of the DVC output
    run_id = json.loads((tmp_path / "run" / "run.local.json").read_text())["mlflow_run_id"]
    client = mlflow.tracking.MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.data.params["train.lr"] == str(load_params().train.lr)
    assert run.data.params["model.method"] == "idkl"
    assert run.data.tags["method"] == "idkl" and run.data.tags["dataset"] == "synth-sysu"
    assert "mlflow.source.git.commit" in run.data.tags
    history = client.get_metric_history(run_id, "loss.id")
    assert [m.step for m in history] == [1, 2]
    assert "test.sysu_all_single.mAP" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"params.yaml", "history.csv", "metrics.json", "cmc.csv", "cmc.png", "checkpoint.pt",
            "features.npz"} <= artifacts


def test_unreachable_tracking_server_fails_before_training(prepared_tiny, tmp_path):
    from vireid.harness.runner import run_training
    from vireid.harness.tracking import TrackingError

    params = params_for(prepared_tiny, "http://127.0.0.1:9")
    with pytest.raises(TrackingError, match="127.0.0.1:9"):
        run_training(params, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_best_on_validation_selection(prepared_tiny, tmp_path):
    from vireid.harness.runner import run_training

    metrics = run_training(params_for(prepared_tiny, **{"train.select": "best"}), tmp_path / "run", progress=False)
    best = metrics["run"]["best_validation"]
    assert best["metric"] == "mAP" and 1 <= best["epoch"] <= 2
    assert metrics["run"]["selected_epoch"] == best["epoch"]


@pytest.mark.parametrize("name", list_experiments())
def test_every_experiment_trains_a_few_steps(prepared_tiny, tmp_path, name):
    from vireid.harness.runner import run_training

    params = params_for(prepared_tiny, experiment=name, **{"train.epochs": 1, "train.steps_per_epoch": 2})
    metrics = run_training(params, tmp_path / name, progress=False)
    assert metrics["run"]["variant"] == name
    assert len(metrics["results"]) == len(params.protocols())


@pytest.mark.slow
def test_same_recorded_settings_same_results_under_cpu_load(prepared_tiny, tmp_path):
    """The thread count is a recorded parameter; with it fixed, results are bit-identical whether or
    not other processes compete for the cores (no load-dependent scheduling in the arithmetic)."""
    import subprocess
    import sys

    import yaml

    from vireid.harness.evaluation.features_file import load_features
    from vireid.harness.runner import run_training

    extra = {"train.epochs": 2, "train.threads": 1}
    run_training(params_for(prepared_tiny, **extra), tmp_path / "quiet", progress=False)
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        run_training(params_for(prepared_tiny, **extra), tmp_path / "loaded", progress=False)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    recorded = yaml.safe_load((tmp_path / "loaded" / "params.yaml").read_text())
    assert recorded["train"]["threads"] == 1
    a, b = (load_features(tmp_path / d / "features.npz") for d in ("quiet", "loaded"))
    for key in ("query_feats", "gallery_feats"):
        np.testing.assert_array_equal(a[key], b[key])
    cols = lambda d: pd.read_csv(tmp_path / d / "history.csv").filter(like="loss").to_numpy()  # noqa: E731
    np.testing.assert_array_equal(cols("quiet"), cols("loaded"))
