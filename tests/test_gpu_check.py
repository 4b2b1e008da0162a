"""The GPU measurement script on the CPU: its smoke run end to end, its time limits, its
readers, and the training benchmark's loss comparison."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def load(name: str):
    """A benchmarks/ module by path (benchmarks/ is not an installed package)."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gpu_check = load("gpu_check")


def test_a_section_past_its_limit_is_killed_with_its_children(tmp_path):
    pid_file = tmp_path / "child.pid"
    script = ("import subprocess, sys, time; "
              f"c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              f"open({str(pid_file)!r}, 'w').write(str(c.pid)); time.sleep(60)")
    start = time.monotonic()
    res = gpu_check.run([sys.executable, "-c", script], 3.0, dict(os.environ), tmp_path / "log")
    assert res["status"] == "timeout" and time.monotonic() - start < 20
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child), "the section's child process survived"


def alive(pid: int) -> bool:
    """Running (a killed process that its new parent has not reaped yet is a zombie)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_budget_too_small_still_writes_the_report(tmp_path):
    """Every section is bounded: with 3 s for everything the probe times out, the rest is
    skipped with the reason, and the JSON says so."""
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), str(out), "--budget-s", "3"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["probe"]["status"] == "timeout" and not report["complete"]
    for name in ("install", "tests", "train", "eval"):
        assert report["sections"][name] == {"status": "skipped", "reason": "torch does not import (see probe)"}


def test_caps_scale_to_the_budget_and_the_default_fits_8_minutes():
    assert sum(gpu_check.CAPS["full"].values()) <= 8 * 60 - 10
    caps = gpu_check.scaled_caps({"a": 10, "b": 30}, 20)
    assert caps == {"a": 5.0, "b": 15.0}


def test_junit_summary_reads_outcomes_and_messages(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_gpu" name="test_a" time="1.5"/>'
        '<testcase classname="tests.test_gpu" name="test_b" time="0.1"><failure message="assert 1 == 2">tb</failure>'
        '</testcase><testcase classname="tests.test_gpu" name="test_c" time="0">'
        '<skipped message="needs a CUDA device"/></testcase></testsuite></testsuites>')
    summary = gpu_check.junit_summary(xml)
    assert summary["counts"] == {"passed": 1, "failed": 1, "error": 0, "skipped": 1}
    assert summary["tests"][0] == {"test": "tests.test_gpu::test_a", "outcome": "passed", "seconds": 1.5,
                                   "message": None}
    assert summary["tests"][1]["message"] == "assert 1 == 2"
    assert summary["tests"][2]["outcome"] == "skipped"
    assert gpu_check.junit_summary(tmp_path / "absent.xml") is None


def test_loss_comparison_against_fp32_and_its_seed_noise():
    bench_train = load("bench_train")
    row = lambda name, losses, ips, pipeline="tensor": {"config": name, "losses": losses, "images_per_s": ips,  # noqa: E731
                                                        "pipeline": pipeline}
    results = [row("fp32-eager", [10.0, 9.0, 8.0], 100.0), row("fp32-eager-seed1", [10.5, 9.5, 8.0], 100.0),
               row("amp-bf16", [10.1, 9.2, 7.9], 250.0), row("amp-fp16+scaler", [10.0, 8.0], 300.0),
               row("amp-bf16+channels_last (PIL workers)", [9.0, 9.0, 9.0], 200.0, "pil")]
    bench_train.compare_losses(results)
    fp32, noise, bf16, fp16, pil = results
    assert noise["mean_loss_diff_vs_fp32"] == pytest.approx(1 / 3)
    assert bf16["mean_loss_diff_vs_fp32"] == pytest.approx(0.4 / 3)
    assert bf16["max_loss_diff_vs_fp32"] == pytest.approx(0.2)
    assert bf16["within_fp32_seed_noise"] is True and bf16["speedup"] == pytest.approx(2.5)
    # a shorter (time-limited) curve is compared over the steps it has
    assert fp16["loss_steps_compared"] == 2 and fp16["mean_loss_diff_vs_fp32"] == pytest.approx(0.5)
    assert fp16["within_fp32_seed_noise"] is False
    assert "within_fp32_seed_noise" not in pil  # other batches: not comparable step by step
    assert "within_fp32_seed_noise" not in fp32 and "within_fp32_seed_noise" not in noise


def test_unknown_training_configuration_is_named():
    bench_train = load("bench_train")
    with pytest.raises(SystemExit, match="unknown configuration.*'amp-fp8'"):
        bench_train.resolve_configs("fp32-eager,amp-fp8", cuda=False)
    assert bench_train.resolve_configs("all", cuda=False) == list(bench_train.DEFAULT_CPU)
    assert bench_train.resolve_configs("all", cuda=True)[-1] == "amp-bf16+channels_last+compile"


@pytest.mark.slow
def test_smoke_run_writes_every_section(tmp_path):
    """The whole script at tiny sizes on this machine: every section ok, gpu tests skipped
    with the reason where there is no CUDA, every training configuration measured, the
    evaluation equal to the slow reference."""
    out = tmp_path / "smoke.json"
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run([str(REPO / "benchmarks" / "gpu_check.sh"), str(out), "--smoke"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    report = json.loads(out.read_text())
    assert proc.returncode == 0, json.dumps(report["sections"], indent=1)[-4000:]
    assert report["complete"] and report["mode"] == "smoke"
    assert {n: s["status"] for n, s in report["sections"].items()} == dict.fromkeys(
        ["probe", "install", "tests", "train", "eval"], "ok")
    tests = report["sections"]["tests"]["result"]
    assert tests["counts"]["failed"] == tests["counts"]["error"] == 0 and len(tests["tests"]) >= 6
    if not report["probe"]["info"]["cuda_available"]:
        assert all(t["outcome"] == "skipped" and "needs a CUDA device" in t["message"] for t in tests["tests"])
    train = report["sections"]["train"]["result"]
    assert train["complete"]
    by_name = {r["config"]: r for r in train["results"]}
    assert {"fp32-eager", "fp32-eager-seed1", "amp-bf16", "amp-fp16+scaler"} <= set(by_name)
    for r in train["results"]:
        assert r["steps_measured"] >= 1 and r["images_per_s"] > 0 and 0 <= r["data_fraction"] < 1
        assert len(r["losses"]) == 3 and all(math.isfinite(v) for v in r["losses"])
    assert by_name["amp-fp16+scaler"]["grad_scaler"] and not by_name["amp-bf16"]["grad_scaler"]
    ev = report["sections"]["eval"]["result"]
    assert [r["case"] for r in ev["metrics"]] == ["sysu/all/single metrics", "sysu/all/multi metrics",
                                                  "regdb/i2v metrics", "llcm/v2i metrics"]
    assert all(r["equal_to_reference"] for r in ev["metrics"])
    assert all(r["bit_identical"] for r in ev["rerank"])
