"""MLflow conventions: run names, notes, commit, dataset input, artifacts, run-folder tags,
superseded runs, trial states, the study's parent run, the experiment kind, system metrics."""
from __future__ import annotations

import mlflow
import optuna
import pytest
from mlflow.tracking import MlflowClient

from vireid.harness import tracking
from vireid.harness.config import load_params
from study_support import tiny_overrides


def params_for(prepared, uri, experiment="idkl", **extra):
    return load_params(experiment=experiment, dataset="synth-sysu", overrides=tiny_overrides(prepared, uri, **extra))


def mlflow_run_id(run_dir):
    """The run's MLflow id, kept in run.local.json (outside the DVC-hashed outputs)."""
    import json

    from vireid.harness.run_folder import LOCAL_INFO

    return json.loads((run_dir / LOCAL_INFO).read_text())["mlflow_run_id"]


def test_training_runs_follow_the_conventions(prepared_tiny, tmp_path, monkeypatch):
    from vireid.harness.runner import run_training

    # Sample system metrics every 0.2 s so that even this short run records some.
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = params_for(prepared_tiny, uri, **{"train.seed": 3})
    run_dir = tmp_path / "run"
    run_training(params, run_dir, progress=False)
    first = mlflow_run_id(run_dir)
    # The same run folder again (resumed: the checkpoint is complete, so it re-tests): a newer run.
    run_training(params, run_dir, resume=True, progress=False)
    second = mlflow_run_id(run_dir)
    client = MlflowClient(uri)
    old, new = client.get_run(first), client.get_run(second)
    assert new.info.run_name == old.info.run_name == "idkl-synth-sysu-seed3"
    assert new.info.status == "FINISHED"
    tags = new.data.tags
    assert tags["mlflow.note.content"] == params.experiment.description != ""
    assert tags["mlflow.source.git.commit"] == tracking.git_commit()
    assert tags[tracking.RUN_DIR_TAG] == run_dir.resolve().as_posix()  # outside the repository: absolute
    assert (old.data.tags[tracking.SUPERSEDED_TAG], tags[tracking.SUPERSEDED_TAG]) == ("true", "false")
    [dataset_input] = new.inputs.dataset_inputs
    fingerprint = new.data.tags["vireid.dataset_fingerprint"]
    assert dataset_input.dataset.name == "synth-sysu" and fingerprint.startswith(dataset_input.dataset.digest)
    assert len(dataset_input.dataset.digest) >= 16
    artifacts = {a.path for a in client.list_artifacts(second)}
    assert {"checkpoint.pt", "features.npz", "metrics.json"} <= artifacts
    assert any(key.startswith("system/") for key in old.data.metrics), sorted(old.data.metrics)
    experiment = client.get_experiment(new.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # The current runs of the study are one filter away.
    current = client.search_runs([new.info.experiment_id], f"tags.`{tracking.SUPERSEDED_TAG}` = 'false'")
    assert [r.info.run_id for r in current] == [second]


def test_run_folder_tag_is_repository_relative_inside_the_repository():
    assert tracking.folder_label(tracking.REPO_ROOT / "runs" / "synth-sysu" / "idkl" / "seed1") == \
        "runs/synth-sysu/idkl/seed1"


def test_trial_runs_carry_optuna_state_and_pruned_is_not_failed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = load_params(overrides=[f"tracking.uri={uri}", "tracking.system_metrics=false"])
    experiment = tracking.connect(uri, "conventions")
    states = {}
    for name, error in (("pruned", optuna.TrialPruned("pruned at epoch 1")), ("failed", ValueError("boom")),
                        ("killed", KeyboardInterrupt()), ("complete", None)):
        tags = {tracking.TRIAL_TAG: name}
        if error is None:
            with tracking.training_run(experiment, params, name, tags) as run:
                pass
        else:
            with pytest.raises(type(error)), tracking.training_run(experiment, params, name, tags) as run:
                raise error
        got = MlflowClient(uri).get_run(run.info.run_id)
        states[name] = (got.info.status, got.data.tags.get(tracking.STATE_TAG))
    assert states == {"pruned": ("FINISHED", "PRUNED"), "failed": ("FAILED", "FAIL"),
                      "killed": ("KILLED", "FAIL"), "complete": ("FINISHED", "COMPLETE")}


@pytest.mark.slow
def test_study_parent_run_is_closed_once_and_trials_are_nested(prepared_tiny, tmp_path):
    from vireid.harness.tuning import PARENT_RUN_ATTR, run_study

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    overrides = tiny_overrides(prepared_tiny, uri, **{
        "tune.storage": storage, "tune.n_startup_trials": 1, "tune.n_warmup_steps": 0, "train.epochs": 2,
        "train.steps_per_epoch": 2, "tracking.system_metrics": "false"})
    run_study(None, overrides, "s", n_trials=2, jobs=1, out_dir=tmp_path / "tune")
    parent_id = optuna.load_study(study_name="s", storage=storage).user_attrs[PARENT_RUN_ATTR]
    client = MlflowClient(uri)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    closed_at = parent.info.end_time
    # Nothing left to do: the closed parent stays as it was (not re-closed, no second summary).
    run_study(None, overrides, "s", n_trials=2, jobs=1, out_dir=tmp_path / "tune")
    again = client.get_run(parent_id)
    assert again.info.end_time == closed_at and again.info.status == "FINISHED"
    assert len(client.get_metric_history(parent_id, "trials_complete")) == 1
    # Extending the study opens it while the new trial runs, and closes it once more.
    run_study(None, overrides, "s", n_trials=3, jobs=1, out_dir=tmp_path / "tune")
    assert client.get_run(parent_id).info.status == "FINISHED"
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert len(children) == 3
    for child in children:
        state = child.data.tags[tracking.STATE_TAG]
        assert state in ("COMPLETE", "PRUNED") and child.info.status == "FINISHED"


def test_without_psutil_runs_have_no_system_metrics_and_still_work(tmp_path, monkeypatch):
    import importlib.util

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = load_params(overrides=[f"tracking.uri={uri}"])
    assert params.tracking.system_metrics
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psutil" else real(name, *a))
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.1")
    experiment = tracking.connect(uri, "no-psutil")
    with tracking.training_run(experiment, params, "r", {}) as run:
        mlflow.log_metric("loss", 1.0)
        import time

        time.sleep(0.5)
    got = MlflowClient(uri).get_run(run.info.run_id)
    assert got.info.status == "FINISHED" and set(got.data.metrics) == {"loss"}
