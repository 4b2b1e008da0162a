"""DVC outputs depend on content only: the same stage run in two folders writes the same bytes.

A fresh clone in another folder must reproduce `dvc.lock`'s hashes, so no output may hold an
absolute path of the project or a file mtime (machine-local state goes to `*.local.json`,
which `.dvcignore` keeps out of every hash).
"""
from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

from study_support import REPO, tiny_overrides


def dvcignore_patterns() -> list[str]:
    lines = (REPO / ".dvcignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def tracked_bytes(folder: Path) -> dict[str, bytes]:
    """Every file DVC would hash under `folder` (the .dvcignore patterns left out)."""
    patterns = dvcignore_patterns()
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(fnmatch.fnmatch(p.name, pat) for pat in patterns)}


def prepare_in(folder: Path, monkeypatch) -> Path:
    from vireid.harness.config import load_params
    from vireid.harness.data import prepare_from_params

    folder.mkdir()
    monkeypatch.chdir(folder)
    prepared = Path("data/prepared/synth-sysu")  # relative, as params.yaml names it
    prepare_from_params(load_params(dataset="synth-sysu", overrides=tiny_overrides(prepared)).data)
    return folder / prepared


def test_prepare_in_two_folders_writes_the_same_bytes(tmp_path, monkeypatch):
    first = tracked_bytes(prepare_in(tmp_path / "clone-a", monkeypatch))
    second = tracked_bytes(prepare_in(tmp_path / "clone-b", monkeypatch))
    assert "manifest.json" in first and any(name.startswith("cache/") for name in first)
    assert sorted(first) == sorted(second)
    differing = [name for name in first if first[name] != second[name]]
    assert differing == []
    for name, data in first.items():
        if name.endswith(".json"):
            assert str(tmp_path).encode() not in data, f"{name} holds the absolute project folder"


def test_a_relative_root_reads_back_absolute_and_is_reused(tmp_path, monkeypatch):
    from vireid.datasets.manifest import read_manifest
    from vireid.harness.config import load_params
    from vireid.harness.data import prepare_from_params

    prepared = prepare_in(tmp_path / "clone", monkeypatch)
    manifest = read_manifest(prepared / "manifest.parquet")
    assert Path(manifest.root) == (prepared / "dataset").resolve()
    assert manifest.stat_digest  # from manifest.local.json: the second prepare skips the full check
    params = load_params(dataset="synth-sysu", overrides=tiny_overrides(Path("data/prepared/synth-sysu")))
    assert prepare_from_params(params.data)["manifest_reused"] is True


def train_and_evaluate_in(folder: Path, monkeypatch) -> Path:
    """prepare -> train -> evaluate (the stages' own code) in `folder`, relative paths as dvc.yaml."""
    import argparse

    from vireid.harness.commands import evaluate
    from vireid.harness.config import load_params
    from vireid.harness.runner import run_training

    prepare_in(folder, monkeypatch)
    sets = tiny_overrides(Path("data/prepared/synth-sysu"), **{"train.deterministic": "true"})
    run_training(load_params(experiment="idkl", dataset="synth-sysu", overrides=sets), Path("runs/x"),
                 resume="partial", progress=False)
    evaluate.run(argparse.Namespace(params=None, data="synth-sysu", overrides=sets, run_dir="runs/x",
                                    out="results/metrics.json", summary="results/summary.json", cmc="results/cmc.csv"))
    return folder


@pytest.mark.slow
def test_train_and_evaluate_in_two_folders_write_the_same_bytes(tmp_path, monkeypatch):
    """Training is bit-reproducible here; what is not (MLflow id, commit, wall-clock) is in run.local.json."""
    first = tracked_bytes(train_and_evaluate_in(tmp_path / "clone-a", monkeypatch))
    second = tracked_bytes(train_and_evaluate_in(tmp_path / "clone-b", monkeypatch))
    assert {"runs/x/metrics.json", "runs/x/history.csv", "runs/x/checkpoint.pt", "results/metrics.json"} <= set(first)
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []
    local = (tmp_path / "clone-a/runs/x/run.local.json").read_text()
    assert "train_seconds" in local and "git_commit" in local
