"""A tuning study answers one question: its name carries the digest of its definition, a
changed definition starts a new study (or is refused under an explicit name), a dataset that
is not prepared is refused, and a trial whose worker died is reaped (Optuna heartbeat)."""
from __future__ import annotations

import time

import optuna
import pytest
import yaml

from study_support import tiny_overrides
from vireid.harness.schema import ConfigError


def overrides(prepared, storage, **extra):
    values = {"tune.storage": storage, "tune.pruner": "none", "train.epochs": 1, "train.steps_per_epoch": 1}
    values.update(extra)
    return tiny_overrides(prepared, None, **values)


def test_a_changed_train_block_starts_a_new_study_named_by_its_digest(prepared_tiny, tmp_path):
    from vireid.harness.tuning import run_study

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    best = tmp_path / "best_params.yaml"
    first = run_study(None, overrides(prepared_tiny, storage), n_trials=1, out_dir=tmp_path, best_params_path=best)
    again = run_study(None, overrides(prepared_tiny, storage), n_trials=1, out_dir=tmp_path)
    assert again["study"] == first["study"] and again["n_trials"] == 1  # identical definition: resumed, done
    changed = run_study(None, overrides(prepared_tiny, storage, **{"train.epochs": 2}), n_trials=1,
                        out_dir=tmp_path, best_params_path=best)
    assert changed["study"] != first["study"] and changed["n_trials"] == 1  # trials of the new definition
    assert changed["study"] == f"idkl-loss-weights-{changed['definition_digest'][:12]}"
    assert sorted(optuna.get_all_study_names(storage)) == sorted([first["study"], changed["study"]])
    written = yaml.safe_load(best.read_text())
    assert written["study"] == changed["study"] and written["definition_digest"] == changed["definition_digest"]
    assert len(written["dataset_fingerprint"]) == 64
    assert written["states"] == {"complete": 1, "pruned": 0, "failed": 0, "running": 0}


def test_a_named_study_of_another_definition_is_refused_naming_the_keys(prepared_tiny, tmp_path):
    from vireid.harness.tuning import run_study

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    run_study(None, overrides(prepared_tiny, storage), "named", n_trials=1, out_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"study 'named' .*differing: trial_settings\.train\.lr"):
        run_study(None, overrides(prepared_tiny, storage, **{"train.lr": 0.05}), "named", n_trials=2, out_dir=tmp_path)
    assert len(optuna.load_study(study_name="named", storage=storage).trials) == 1


def test_tuning_an_unprepared_dataset_is_an_error(tmp_path):
    from vireid.harness.tuning import run_study

    missing = tmp_path / "never-prepared"
    with pytest.raises(ConfigError, match=r"not prepared \(no .*never-prepared/manifest.parquet\)"):
        run_study(None, overrides(missing, f"sqlite:///{tmp_path / 'optuna.db'}"), n_trials=1, out_dir=tmp_path)
    db = tmp_path / "optuna.db"
    assert not db.exists() or optuna.get_all_study_names(f"sqlite:///{db}") == []


def test_a_trial_whose_worker_died_is_reaped_and_the_study_writes_its_best(prepared_tiny, tmp_path):
    from vireid.harness.tuning import make_storage, run_study

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    beat = {"tune.heartbeat_interval": 1, "tune.grace_period": 1}
    run_study(None, overrides(prepared_tiny, storage, **beat), "reap", n_trials=1, out_dir=tmp_path)
    # A worker that started a trial, sent one heartbeat and was killed: the trial stays RUNNING.
    study = optuna.load_study(study_name="reap", storage=make_storage(storage, 1, 1))
    dead = study.ask()
    study._storage.record_heartbeat(dead._trial_id)
    time.sleep(2.5)
    best = tmp_path / "best_params.yaml"
    summary = run_study(None, overrides(prepared_tiny, storage, **beat), "reap", n_trials=3, out_dir=tmp_path,
                        best_params_path=best)
    assert study.trials[dead.number].state == optuna.trial.TrialState.FAIL
    assert summary["states"]["failed"] == 1 and summary["states"]["running"] == 0
    assert summary["states"]["complete"] >= 2 and yaml.safe_load(best.read_text())["best_value"] is not None
