"""What a user sees: epoch lines without a TTY, one line per trial, evaluate's numbers, and the
CLI's list / --version / help / defaults."""
from __future__ import annotations

import argparse
import re

import pytest

from vireid.harness import cli
from study_support import run_cli, tiny_overrides

EPOCH_LINE = re.compile(r"epoch (\d+)/2 \| loss [\d.]+ \| id [\d.]+ \| triplet [\d.]+ .*\| val r1 [\d.]+ \| "
                        r"val mAP [\d.]+ \| val mINP [\d.]+ \| \d+ img/s \| ETA \d+:\d\d:\d\d$")


@pytest.mark.slow
def test_epoch_lines_without_a_tty_and_evaluate_headline(prepared_tiny, tmp_path):
    """As under `dvc repro`: stdout and stderr are pipes, --no-progress as the pipeline passes it."""
    sets = [arg for item in tiny_overrides(prepared_tiny) for arg in ("--set", item)]
    run_dir = tmp_path / "run"
    proc = run_cli("train", "--no-progress", "--data", "synth-sysu", "-e", "idkl", *sets, "--run-dir", str(run_dir))
    lines = [line for line in proc.stderr.splitlines() if " epoch " in line]
    assert [int(EPOCH_LINE.search(line).group(1)) for line in lines] == [1, 2], proc.stderr
    assert "ETA 0:00:00" in lines[-1]
    assert "\r" not in proc.stderr  # no bar redraws in a log file
    out = run_cli("evaluate", "--data", "synth-sysu", *sets, "--run-dir", str(run_dir), "--out",
                  str(tmp_path / "m.json"))
    assert re.search(r"^sysu/all/single\s+off\s+\d+\s+[\d.]+", out.stdout, re.M), out.stdout
    assert "mAP" in out.stdout and "wrote" in out.stdout


def test_one_line_per_trial(capsys):
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from vireid.harness.logs import configure_logging
    from vireid.harness.tuning import log_trial

    configure_logging()
    study = optuna.create_study(direction="maximize")
    dist = {"loss.ip.weight": FloatDistribution(0.01, 1.0)}
    for state, value, steps in ((TrialState.COMPLETE, 41.5, {1: 30.0, 2: 41.5}), (TrialState.PRUNED, None, {1: 12.25})):
        study.add_trial(create_trial(state=state, value=value, params={"loss.ip.weight": 0.2}, distributions=dist,
                                     intermediate_values=steps))
    for trial in study.trials:
        log_trial(study, trial)
    lines = [line for line in capsys.readouterr().err.splitlines() if " trial " in line]
    assert len(lines) == 2
    assert lines[0].endswith("trial 0 | COMPLETE | value 41.50 | loss.ip.weight=0.2 | best 41.50 (trial 0)")
    assert lines[1].endswith("trial 1 | PRUNED | at epoch 1 (12.25) | loss.ip.weight=0.2 | best 41.50 (trial 0)")


def test_rank_zero_filter(monkeypatch):
    import logging

    from vireid.harness.logs import RankZeroFilter

    record = logging.LogRecord("vireid.train", logging.INFO, __file__, 1, "epoch 1/2", None, None)
    monkeypatch.setenv("RANK", "1")
    assert not RankZeroFilter().filter(record)
    monkeypatch.setenv("RANK", "0")
    assert RankZeroFilter().filter(record)


def subcommands(parser: argparse.ArgumentParser, prefix: str = ""):
    """Every (sub)command parser below `parser`, with its full name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix}{name}", sub
                yield from subcommands(sub, f"{prefix}{name} ")


def test_every_command_has_a_description_and_an_example():
    found = dict(subcommands(cli.build_parser()))
    assert {"train", "evaluate", "tune", "report", "list", "data prepare", "describe-model"} <= set(found)
    for name, parser in found.items():
        assert parser.description and len(parser.description) > 30, name
        assert parser.epilog and f"vireid {name.split()[0]}" in parser.epilog.split("examples:")[1], name


def test_version_and_list(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and re.fullmatch(r"vireid \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)
    assert cli.main(["list", "variants"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^idkl\s+idkl\s+\+ distalign \(IDKL\)", out, re.M) and re.search(r"^agw\s+agw", out, re.M)
    assert cli.main(["list", "datasets"]) == 0
    assert re.search(r"^synth-sysu\s+sysu\s+synthetic", capsys.readouterr().out, re.M)
    assert cli.main(["list", "protocols"]) == 0
    assert re.search(r"^regdb/v2i\s+regdb", capsys.readouterr().out, re.M)
    # Runs: a tested run, one with a checkpoint only, and a missing folder as a one-line error.
    tested = tmp_path / "synth-sysu" / "idkl" / "seed1"
    tested.mkdir(parents=True)
    (tested / "params.yaml").write_text("{}")
    (tested / "metrics.json").write_text('{"run": {}, "results": [{"protocol": "sysu/all/single", "r1": 50.0, '
                                         '"mAP": 40.25}]}')
    partial = tmp_path / "synth-sysu" / "agw" / "seed1"
    partial.mkdir(parents=True)
    (partial / "params.yaml").write_text("{}")
    (partial / "checkpoint.pt").write_bytes(b"")
    assert cli.main(["list", "runs", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^synth-sysu/idkl/seed1\s+tested\s+sysu/all/single: R1 50.00 mAP 40.25$", out, re.M)
    assert re.search(r"^synth-sysu/agw/seed1\s+checkpoint\s+-$", out, re.M)
    assert cli.main(["list", "runs", "--runs", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_report_default_out_is_the_pipelines():
    import yaml

    from study_support import REPO

    from vireid.harness.config import load_params

    report = load_params().report  # `vireid report` without --runs / --out reads this block
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["report"]
    assert f"--out {report.out_dir}" in stage["cmd"] and f"--runs {report.runs_dir}" in stage["cmd"]


def test_optuna_dashboard_names_the_extra_when_missing(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna_dashboard"
                        else real(name, *a))
    assert cli.main(["optuna-dashboard", "--storage", "sqlite:///x.db"]) == 2
    err = capsys.readouterr().err
    assert "vireid-bench[dashboard]" in err and "optuna-dashboard is not installed" in err


def test_bar_only_on_a_terminal_and_the_epoch_line_either_way(monkeypatch, capsys):
    from types import SimpleNamespace

    from vireid.harness import logs
    from vireid.harness.hooks import ProgressHook

    logs.configure_logging()
    trainer = SimpleNamespace(steps_per_epoch=3, step_in_epoch=0, epoch=0, epochs=2, last_losses={"id": 1.5},
                              history=[{"epoch": 1, "loss": 1.5, "loss/id": 1.5}],
                              timing=[{"epoch": 1, "images_per_s": 10.0}])
    for tty, bar_wanted in ((True, True), (True, False), (False, True)):
        monkeypatch.setattr(logs, "is_tty", lambda tty=tty: tty)
        hook = ProgressHook(bar=bar_wanted)
        hook.before_epoch(trainer)
        assert (hook.bar is not None) == (tty and bar_wanted)
        hook.after_step(trainer)
        hook.after_epoch(trainer)
        assert hook.bar is None
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert re.search(r"epoch 1/2 \| loss 1\.5000 \| id 1\.5000 \| 10 img/s \| ETA \d:\d\d:\d\d$", line), line


def test_a_closed_stdout_pipe_ends_quietly():
    """`vireid ... | head -1`: the reader leaves early; no error line, the shell's SIGPIPE status.
    `true` closes the pipe at once (long before the interpreter has started), so every write fails."""
    import subprocess
    import sys

    command = f"{sys.executable} -m vireid.harness describe-model -e idkl --num-classes 10"
    script = f"{command} | true; exit ${{PIPESTATUS[0]}}"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr) == (141, "")
