"""Issue 14 (a): the study's training matrix two runs at a time through DVC (`vireid repro-matrix`)."""
from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
import yaml

from study_support import tiny_overrides


def dvc(repo, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"dvc {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def pipeline_repo(path, prepared):
    """A workspace whose train matrix (2 seeds) depends on an upstream stage, as the study's does."""
    path.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    dvc(path, "init", "-q")
    dvc(path, "config", "core.analytics", "false")
    sets = " ".join(f"--set {shlex.quote(item)}" for item in tiny_overrides(prepared))
    train = (f"{shlex.quote(sys.executable)} -m vireid.harness train --no-progress --data synth-sysu -e baseline "
             f"{sets} --set train.seed=${{item.seed}} --run-dir runs/seed${{item.seed}}")
    stages = {
        "ready": {"cmd": "echo ready > ready.txt", "outs": ["ready.txt"]},
        "train": {"matrix": {"seed": [1, 2]}, "cmd": train, "deps": ["ready.txt"], "outs": ["runs/seed${item.seed}"]},
    }
    (path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], cwd=path, check=True)


@pytest.mark.slow
def test_train_matrix_two_at_a_time_through_dvc(prepared_tiny, tmp_path, monkeypatch):
    from vireid.harness.scaleout import matrix_stages, repro_matrix

    repo = tmp_path / "repo"
    pipeline_repo(repo, prepared_tiny)
    assert matrix_stages("train", repo) == (["train@1", "train@2"], ["ready"])
    runs = repro_matrix("train", jobs=2, repo_root=repo)
    assert [(r.stage, r.returncode) for r in runs][0] == ("ready", 0)  # what the matrix depends on runs first
    train = sorted((r for r in runs if r.stage != "ready"), key=lambda r: r.stage)
    assert [(r.stage, r.returncode) for r in train] == [("train@1", 0), ("train@2", 0)]
    assert runs[0].finished <= min(r.started for r in train)
    assert max(r.started for r in train) < min(r.finished for r in train)  # they ran side by side
    for seed in (1, 2):
        assert (repo / "runs" / f"seed{seed}" / "metrics.json").is_file()
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert {"ready", "train@1", "train@2"} <= set(lock)
    # DVC recorded both: nothing is stale and a plain `dvc repro` has nothing to do.
    assert "up to date" in dvc(repo, "status")
    assert "up to date" in dvc(repo, "repro")
    again = repro_matrix("train", jobs=2, repo_root=repo)
    assert all(r.returncode == 0 and r.seconds < 30 for r in again)
    assert yaml.safe_load((repo / "dvc.lock").read_text())["stages"] == lock


def test_unknown_stage_names_the_pipeline_file(tmp_path):
    from vireid.harness.scaleout import matrix_stages
    from vireid.harness.schema import ConfigError

    from study_support import REPO

    with pytest.raises(ConfigError, match=r"dvc.yaml: no stage 'nope' or nope@\.\.\.; stages: .*train"):
        matrix_stages("nope", REPO)
    members, upstream = matrix_stages("train", REPO)
    assert members and all(m.startswith("train@") for m in members)
    assert upstream and all(u.startswith("prepare@") or u == "pretrain" for u in upstream)


def test_devices_and_jobs_must_agree():
    from vireid.harness.scaleout import repro_matrix
    from vireid.harness.schema import ConfigError

    with pytest.raises(ConfigError, match="one device per job"):
        repro_matrix("train", jobs=3, devices=["0", "1"])


def test_a_failed_stage_stops_only_what_depends_on_it(tmp_path):
    """Independent stages start together; a failure skips its dependents and nothing else."""
    from vireid.harness.scaleout import repro_matrix, stage_plan

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    dvc(repo, "init", "-q")
    stages = {
        "broken": {"cmd": "exit 3", "outs": ["broken.txt"]},
        "fine": {"cmd": "echo fine > fine.txt", "outs": ["fine.txt"]},
        "after": {"matrix": {"n": [1, 2]}, "cmd": "cp broken.txt after${item.n}.txt", "deps": ["broken.txt"],
                  "outs": ["after${item.n}.txt"]},
    }
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    plan = {name: (deps, member) for name, deps, member in stage_plan(["after", "fine"], repo)}
    assert plan == {"broken": (set(), False), "fine": (set(), True), "after@1": ({"broken"}, True),
                    "after@2": ({"broken"}, True)}
    runs = {r.stage: r for r in repro_matrix(["after", "fine"], jobs=2, repo_root=repo)}
    assert runs["broken"].returncode != 0 and not runs["broken"].skipped
    assert runs["fine"].returncode == 0 and (repo / "fine.txt").is_file()
    assert runs["after@1"].skipped and runs["after@2"].skipped
    assert runs["broken"].started < runs["fine"].finished and runs["fine"].started < runs["broken"].finished
