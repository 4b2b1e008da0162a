"""The study: tuning with pruning and resume, shared studies, and the DVC pipeline."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from vireid.harness.config import list_experiments, load_params, read_yaml
from study_support import REPO, tiny_overrides


def tune_overrides(prepared, storage, **extra):
    values = {"tune.storage": storage, "tune.n_startup_trials": 1, "tune.n_warmup_steps": 0,
              "train.epochs": 2, "train.steps_per_epoch": 2}
    values.update(extra)
    return tiny_overrides(prepared, None, **values)


def states(storage, name):
    study = optuna.load_study(study_name=name, storage=storage)
    return [t.state for t in study.get_trials(deepcopy=False)], study


def test_tuner_runs_trials_with_pruning_and_resumes(prepared_tiny, tmp_path):
    from vireid.harness.tuning import run_study

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    overrides = tune_overrides(prepared_tiny, storage)
    best_path = tmp_path / "best_params.yaml"
    summary = run_study(None, overrides, "s", n_trials=3, jobs=1, out_dir=tmp_path / "tune", best_params_path=best_path)
    got, study = states(storage, "s")
    assert len(got) == 3 and all(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in got)
    # Every trial reported one validation value per epoch, which is what the pruner reads.
    for trial in study.trials:
        assert sorted(trial.intermediate_values) in ([1], [1, 2])
    best = yaml.safe_load(best_path.read_text())
    assert best["best_value"] == pytest.approx(study.best_value)
    assert set(best["params"]) == set(load_params().tune.search_space)
    # The written overrides apply to a later `train` by reference.
    params = load_params(experiment="idkl", overrides=best["overrides"])
    for key, value in best["params"].items():
        section, *rest = key.split(".")
        node = getattr(params, section)
        for part in rest:
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        assert node == pytest.approx(value)
    # Re-running resumes the same study rather than starting over.
    run_study(None, overrides, "s", n_trials=4, jobs=1, out_dir=tmp_path / "tune")
    assert len(states(storage, "s")[0]) == 4
    assert summary["n_trials"] == 3


@pytest.mark.slow
def test_two_workers_share_one_journal_study(prepared_tiny, tmp_path):
    from vireid.harness.tuning import run_study

    storage = str(tmp_path / "journal.log")
    run_study(None, tune_overrides(prepared_tiny, storage, **{"tune.pruner": "none"}), "shared", n_trials=4, jobs=2,
              out_dir=tmp_path / "tune")
    study = optuna.load_study(study_name="shared", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(storage)))
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(numbers)))  # none lost, none duplicated
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(finished) >= 4 and len(trials) <= 5  # MaxTrialsCallback may let one extra start
    assert len({t.datetime_start for t in finished}) == len(finished)
    # each worker samples with its own seed (tune.seed + worker index): the workers' first trials,
    # drawn at the same moment, are not the same parameters
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)


def test_failing_trials_are_recorded_and_the_study_goes_on(prepared_tiny, tmp_path):
    from vireid.harness.tuning import run_study

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    overrides = tune_overrides(prepared_tiny, storage, **{"tune.overrides": "{loss.triplet.weight: .nan}"})
    summary = run_study(None, overrides, "failing", n_trials=2, jobs=1, out_dir=tmp_path / "tune")
    assert summary["states"]["failed"] == 2


@pytest.mark.slow
def test_pipeline_definition_is_valid_and_covers_the_study():
    dvc = Path(sys.executable).with_name("dvc")  # the dvc of the environment running the tests
    out = subprocess.run([str(dvc), "stage", "list", "--all"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    names = {line.split()[0] for line in out.stdout.splitlines() if line.strip()}
    study = read_yaml(REPO / "params.yaml")["study"]
    for variant in study["variants"]:
        assert variant in list_experiments()
        for dataset in study["datasets"]:
            for seed in study["seeds"]:
                assert f"train@{variant}-{dataset}-{seed}" in names
    assert {"evaluate", "tune", "report"} <= names and any(n.startswith("prepare@") for n in names)
    assert set(list_experiments()) == set(study["variants"]), "every experiment is part of the study"

