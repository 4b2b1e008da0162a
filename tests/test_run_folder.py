"""Run-folder integrity and resume inside the pipeline: no resume of other settings, no run
written over another, one writer at a time, ad-hoc runs outside the study's DVC outputs, a
killed pipeline run continued from its checkpoint, killed runs closed as KILLED in MLflow."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from vireid.harness.config import load_params
from vireid.harness.run_folder import LOCK, RunFolderError
from study_support import tiny_overrides

DETERMINISTIC = {"train.deterministic": "true", "train.epochs": 3, "train.steps_per_epoch": 2}


def params_for(prepared, tracking_uri=None, **extra):
    return load_params(experiment="idkl", dataset="synth-sysu",
                       overrides=tiny_overrides(prepared, tracking_uri, **extra))


def train(prepared, run_dir, resume=False, report=None, tracking_uri=None, **extra):
    from vireid.harness.runner import run_training

    return run_training(params_for(prepared, tracking_uri, **extra), run_dir, resume=resume, report=report,
                        progress=False)


def interrupt_at(epoch: int, sig: int | None = None):
    """A validation callback that stops the run at `epoch` (a checkpoint of epoch - 1 exists)."""
    def report(value, at):
        if at == epoch:
            if sig is None:
                raise KeyboardInterrupt
            os.kill(os.getpid(), sig)
    return report


@pytest.fixture(scope="module")
def finished(prepared_tiny, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    return run_dir, train(prepared_tiny, run_dir, **{"train.epochs": 1})


def test_resume_with_other_settings_is_refused_naming_the_keys(prepared_tiny, finished):
    run_dir, _ = finished
    other = {"train.epochs": 1, "train.lr": 0.05, "train.seed": 7, "loss.ip.weight": 0.5}
    with pytest.raises(RunFolderError, match=r"settings differ: loss\.ip\.weight .*train\.lr .*train\.seed"):
        train(prepared_tiny, run_dir, resume=True, **other)


def test_a_new_run_into_a_folder_of_another_run_is_refused(prepared_tiny, finished):
    run_dir, _ = finished
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    with pytest.raises(RunFolderError, match=r"holds the files of an earlier run \(checkpoint\.pt, cmc\.csv"):
        train(prepared_tiny, run_dir, **{"train.epochs": 1})
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before  # nothing touched


def test_a_second_writer_is_refused_and_a_dead_writers_lock_taken_over(prepared_tiny, tmp_path):
    from vireid.harness.run_folder import claimed

    run_dir = tmp_path / "run"
    with claimed(run_dir):
        assert (run_dir / LOCK).is_file()
        with pytest.raises(RunFolderError, match=rf"another run is writing this folder \(pid {os.getpid()}"):
            train(prepared_tiny, run_dir, **{"train.epochs": 1})
    assert not run_dir.exists()  # the lock went, and with it the folder the lock had made
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run_dir.mkdir()
    (run_dir / LOCK).write_text(f'{{"pid": {int(dead.stdout)}, "host": "{os.uname().nodename}"}}')
    train(prepared_tiny, run_dir, **{"train.epochs": 1})  # a writer killed with SIGKILL left its lock
    assert (run_dir / "metrics.json").is_file() and not (run_dir / LOCK).exists()


def test_ad_hoc_train_never_writes_into_a_dvc_output():
    from pipeline_support import dvc_stages
    from vireid.harness.commands.train import default_run_dir

    params = load_params(experiment="idkl", dataset="synth-sysu", overrides=["train.seed=1"])
    folder = default_run_dir(params).resolve()
    assert folder.parts[-3:-1] == ("runs", "adhoc")
    outs = [Path(out.fs_path).resolve() for stage in dvc_stages() for out in stage.outs]
    assert any(out.parts[-4:] == ("runs", "synth-sysu", "idkl", "seed1") for out in outs)  # what it wrote before
    assert not any(folder == out or out in folder.parents or folder in out.parents for out in outs)


def test_a_killed_pipeline_run_continues_from_its_checkpoint_with_the_same_results(prepared_tiny, tmp_path):
    full = train(prepared_tiny, tmp_path / "full", **DETERMINISTIC)
    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        train(prepared_tiny, killed, resume="partial", report=interrupt_at(2), **DETERMINISTIC)
    assert (killed / "checkpoint.pt").is_file() and not (killed / "metrics.json").exists()
    resumed = train(prepared_tiny, killed, resume="partial", **DETERMINISTIC)
    history = (killed / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 3  # epochs 1..3 once each: epoch 1 came from the checkpoint
    assert resumed["results"] == full["results"]


def test_partial_resume_starts_over_on_a_finished_run_or_other_settings(prepared_tiny, tmp_path):
    from vireid.harness.checkpoint import load_checkpoint

    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(prepared_tiny, run_dir, resume="partial", report=interrupt_at(2), **DETERMINISTIC)
    other = dict(DETERMINISTIC, **{"train.lr": 0.002})
    train(prepared_tiny, run_dir, resume="partial", **other)  # other settings: not continued
    assert load_checkpoint(run_dir / "checkpoint.pt")["params"]["train"]["lr"] == 0.002
    assert len((run_dir / "history.csv").read_text().splitlines()) == 1 + 3
    trained = (run_dir / "history.csv").stat().st_mtime_ns
    train(prepared_tiny, run_dir, resume="partial", **other)  # finished: trained again, not "continued" at 3/3
    assert (run_dir / "history.csv").stat().st_mtime_ns != trained  # epochs ran (a no-op continue writes none)
    assert len((run_dir / "history.csv").read_text().splitlines()) == 1 + 3


@pytest.mark.parametrize("sig", [None, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_killed_run_is_closed_as_killed_in_mlflow(prepared_tiny, tmp_path, sig):
    import mlflow

    from vireid.harness import cli

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = signal.signal(signal.SIGTERM, cli._raise_terminated)  # as `vireid` installs it
    try:
        with pytest.raises(cli.Terminated if sig else KeyboardInterrupt):
            train(prepared_tiny, tmp_path / "run", report=interrupt_at(2, sig), tracking_uri=uri, **DETERMINISTIC)
    finally:
        signal.signal(signal.SIGTERM, previous)
    runs = mlflow.tracking.MlflowClient(uri).search_runs(
        [mlflow.tracking.MlflowClient(uri).get_experiment_by_name("vireid-bench").experiment_id])
    assert [r.info.status for r in runs] == ["KILLED"]
    assert mlflow.active_run() is None


def test_sigterm_exits_143_with_one_line(tmp_path, monkeypatch):
    import vireid.harness.runner as runner
    from fault_cases import main_inprocess

    monkeypatch.setattr(runner, "run_training", lambda *a, **k: os.kill(os.getpid(), signal.SIGTERM))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code, _, err = main_inprocess(["train", "--run-dir", str(tmp_path / "run")])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 143 and err.strip().count("\n") == 0 and "terminated (SIGTERM)" in err


def test_the_train_stages_keep_a_killed_run_and_continue_it():
    """`dvc repro` deletes a stage's outputs before running it unless they persist; the command
    must then continue a compatible partial run (and only that)."""
    from pipeline_support import dvc_stages

    train_stages = [s for s in dvc_stages() if s.addressing.startswith("train@")]
    assert train_stages
    for stage in train_stages:
        assert [out.persist for out in stage.outs] == [True], stage.addressing
        assert "--resume-partial" in stage.cmd.split(), stage.addressing


def test_the_named_steps_compose_into_run_training(prepared_tiny, tmp_path):
    """build -> fit -> run_test -> write, called one by one, writes what run_training writes."""
    from vireid.harness import runner

    whole = tmp_path / "whole"
    train(prepared_tiny, whole, **DETERMINISTIC)
    steps = tmp_path / "steps"
    run = runner.build(params_for(prepared_tiny, **DETERMINISTIC), steps, progress=False)
    assert run.trainer.epoch == 0 and (steps / "params.yaml").is_file()
    seconds = runner.fit(run)
    arrays, results = runner.run_test(run)
    metrics = runner.write(run, arrays, results, seconds)
    for name in ("metrics.json", "cmc.csv", "history.csv", "params.yaml"):
        assert (steps / name).read_bytes() == (whole / name).read_bytes(), name
    assert metrics["results"] == results and {r["protocol"] for r in results}
