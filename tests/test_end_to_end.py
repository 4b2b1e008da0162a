"""The study through the real CLI on a tiny synthetic set: prepare, train (2 seeds), evaluate,
study-metrics, report. The report's numbers equal the metrics files, DVC reads the aggregated
metrics and curves, and no output holds the folder it was made in."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from study_support import tiny_overrides

SEEDS = (0, 1)
REPORT_METRICS = {"R1": "r1", "R10": "r10", "R20": "r20", "mAP": "mAP", "mINP": "mINP"}


def vireid(cwd: Path, *args: str) -> str:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-m", "vireid.harness", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"vireid {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("e2e")
    sets = [a for item in tiny_overrides(Path("prepared")) for a in ("--set", item)]  # relative, as params.yaml
    vireid(work, "data", "prepare", "--data", "synth-sysu", *sets)
    for seed in SEEDS:
        run = f"runs/synth-sysu/idkl/seed{seed}"
        vireid(work, "train", "--no-progress", "--data", "synth-sysu", "-e", "idkl", *sets, "--set",
               f"train.seed={seed}", "--run-dir", run, "--resume-partial")
    # the pipeline's evaluate stage: every run of the study (here idkl x 2 seeds) in one process
    study_sets = ["--set", "study.variants=[idkl]", "--set", "study.datasets=[synth-sysu]",
                  "--set", f"study.seeds={list(SEEDS)}"]
    vireid(work, "evaluate-study", *sets, *study_sets, "--runs", "runs", "--out", "results/metrics",
           "--summary", "results/summary.json", "--cmc", "results/cmc", "--jobs", "2")
    vireid(work, "study-metrics", "--metrics", "results/metrics", "--out", "metrics/study.json", "--runs", "runs",
           "--curves", "metrics/curves")
    vireid(work, "report", "--runs", "results/metrics", "--out", "report", "--no-published")
    return work


def seed_values(study: Path, protocol: str, metric: str) -> list[float]:
    values = []
    for seed in SEEDS:
        data = json.loads((study / f"results/metrics/synth-sysu/idkl/seed{seed}/metrics.json").read_text())
        values += [r[metric] for r in data["results"] if r["protocol"] == protocol and not r["rerank"]["enabled"]]
    return values


@pytest.mark.slow
def test_the_reports_numbers_equal_the_metrics_files(study):
    import csv

    aggregate = json.loads((study / "metrics/study.json").read_text())["synth-sysu"]["idkl"]
    table = next((study / "report/tables").glob("main_synth-sysu_rr-off_*.csv"))
    rows = [r for r in csv.DictReader(table.open()) if r["variant"] == "idkl"]
    assert len(rows) >= 2 * len(REPORT_METRICS)  # both single-shot protocols, every metric
    for row in rows:
        metric = REPORT_METRICS[row["metric"]]
        values = seed_values(study, row["protocol"], metric)
        assert len(values) == len(SEEDS) == int(row["n"])
        assert float(row["mean"]) == pytest.approx(statistics.mean(values), abs=1e-5)
        assert float(row["std"]) == pytest.approx(statistics.stdev(values), abs=1e-5)
        cell = aggregate[row["protocol"]][metric]
        assert (cell["n"], cell["mean"], cell["std"]) == (len(values), round(statistics.mean(values), 4),
                                                         round(statistics.stdev(values), 4))
    curve = (study / "metrics/curves/synth-sysu/idkl.csv").read_text().splitlines()
    assert curve[0] == "epoch,loss,val_mAP,n" and len(curve) == 1 + 2 and curve[1].endswith(",2")


@pytest.mark.slow
def test_no_output_holds_the_folder_it_was_made_in(study):
    needle = str(study.resolve()).encode()
    for folder in ("prepared", "metrics", "report", "results"):
        for path in (study / folder).rglob("*"):
            if path.is_file() and path.suffix in (".json", ".csv", ".md", ".yaml", ".html", ".tex"):
                assert needle not in path.read_bytes(), f"{path.relative_to(study)} holds {study}"


@pytest.mark.slow
def test_dvc_metrics_show_and_plots_show_read_the_study_files(study, tmp_path):
    from pipeline_support import copy_with_fake_outputs

    copy_with_fake_outputs(tmp_path)
    for rel in ("metrics/study.json", "metrics/curves/synth-sysu/idkl.csv"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes((study / rel).read_bytes())
    (tmp_path / "metrics/curves/placeholder").unlink()
    dvc = str(Path(sys.executable).with_name("dvc"))
    shown = subprocess.run([dvc, "metrics", "show", "--json"], cwd=tmp_path, capture_output=True, text=True, check=True)
    metrics = json.loads(shown.stdout)
    data = next(v["data"]["metrics/study.json"]["data"] for v in metrics.values() if "metrics/study.json" in v["data"])
    assert data["synth-sysu"]["idkl"]["sysu/all/single"]["mAP"]["n"] == len(SEEDS)
    plots = subprocess.run([dvc, "plots", "show", "--json", "metrics/curves"], cwd=tmp_path, capture_output=True,
                           text=True, check=True)
    assert "metrics/curves/synth-sysu/idkl.csv" in plots.stdout and "val_mAP" in plots.stdout


@pytest.mark.slow
def test_evaluate_study_writes_for_each_run_what_evaluate_writes_for_one(study):
    sets = [a for item in tiny_overrides(Path("prepared")) for a in ("--set", item)]
    vireid(study, "evaluate", "--data", "synth-sysu", *sets, "--run-dir", "runs/synth-sysu/idkl/seed1",
           "--out", "single/metrics.json", "--cmc", "single/cmc.csv")
    assert (json.loads((study / "single/metrics.json").read_text())
            == json.loads((study / "results/metrics/synth-sysu/idkl/seed1/metrics.json").read_text()))
    assert (study / "single/cmc.csv").read_bytes() == (study / "results/cmc/synth-sysu/idkl-seed1.csv").read_bytes()
    summary = json.loads((study / "results/summary.json").read_text())
    assert set(summary["synth-sysu"]["idkl"]) == {"seed0", "seed1"}
    assert "sysu/all/single" in summary["synth-sysu"]["idkl"]["seed0"]
