"""Issue 14: the shared Optuna study on a real PostgreSQL server, two worker processes on it."""
from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from postgres_support import postgres_server, skip_reason
from study_support import tiny_overrides

pytestmark = [pytest.mark.slow, pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))]


def test_two_workers_share_one_postgresql_study(prepared_tiny, tmp_path):
    from vireid.harness.tuning import run_study

    with postgres_server() as url:
        overrides = tiny_overrides(prepared_tiny, None, **{
            "tune.storage": url, "tune.pruner": "none", "tune.n_startup_trials": 1,
            "train.epochs": 1, "train.steps_per_epoch": 2})
        summary = run_study(None, overrides, "shared-pg", n_trials=4, jobs=2, out_dir=tmp_path / "tune")
        trials = optuna.load_study(study_name="shared-pg", storage=url).get_trials(deepcopy=False)
    numbers = sorted(t.number for t in trials)
    assert numbers == list(range(len(numbers)))  # none lost, none duplicated
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert 4 <= len(complete) <= len(trials) <= 5  # MaxTrialsCallback may let one extra start
    assert len({t.user_attrs["worker"] for t in complete}) == 2  # both processes ran trials
    assert summary["states"]["complete"] == len(complete)
