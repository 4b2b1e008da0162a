"""Is the default study converged? The baseline at the study's step count and at twice it.

    python -m benchmarks.convergence                                  # seeds 0 1 2, N and 2N
    python -m benchmarks.convergence --doc docs/synthetic-dataset.md  # also write the docs table

Trains `-e baseline` on the study's dataset at the study's schedule and at the same schedule
stretched twofold (`train.epochs`, `train.milestones`, `train.warmup_epochs` and
`train.val_every` doubled, so the lr steps fall at the same fractions of training; the steps of
an epoch are the sampler's, which `train.steps_per_epoch` can only cap), one `vireid train` per
seed and length, `--jobs` at a time, tracking off. The table gives test `sysu/all/single`
R1 / mAP per step count (mean over seeds) and the change from N to 2N; issue 13's criterion
is a change of at most 1 mAP point. `--doc` replaces the file's
`<!-- vireid:convergence:begin -->` ... `<!-- vireid:convergence:end -->` region.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROTOCOL = "sysu/all/single"


def stretched(train, factor: int) -> list[str]:
    """`--set` overrides that run the study's schedule `factor` times as long."""
    if factor == 1:
        return []
    return [f"train.epochs={train.epochs * factor}", f"train.milestones={[m * factor for m in train.milestones]}",
            f"train.warmup_epochs={train.warmup_epochs * factor}", f"train.val_every={train.val_every * factor}"]


def train(run_dir: Path, seed: int, overrides: list[str], data: str, experiment: str) -> dict[str, float]:
    cmd = [sys.executable, "-m", "vireid.harness", "train", "--no-progress", "--data", data, "-e", experiment,
           "--set", "tracking.enabled=false", "--set", f"train.seed={seed}", "--run-dir", str(run_dir)]
    for text in overrides:
        cmd += ["--set", text]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    results = json.loads((run_dir / "metrics.json").read_text())["results"]
    row = next(r for r in results if r["protocol"] == PROTOCOL and not r["rerank"]["enabled"])
    import torch

    steps = int(torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)["step"])
    return {"r1": float(row["r1"]), "mAP": float(row["mAP"]), "steps": steps}


def table(by_steps: dict[int, list[dict[str, float]]], train, seeds: list[int]) -> str:
    batch = train.p * train.k
    lines = [f"Baseline, test `{PROTOCOL}`, mean over seeds {', '.join(map(str, seeds))} "
             f"(batch {batch}; the study's schedule of {train.epochs} epochs with lr steps at {train.milestones}, "
             "and that schedule stretched twofold; written by `python -m benchmarks.convergence`):", "",
             "| steps | R1 | mAP | mAP per seed |", "|---:|---:|---:|---|"]
    for _, runs in sorted(by_steps.items()):
        low, high = min(r["steps"] for r in runs), max(r["steps"] for r in runs)
        steps = f"{low}" if low == high else f"{low}-{high}"
        per_seed = ", ".join(f"{r['mAP']:.1f}" for r in runs)
        lines.append(f"| {steps} | {statistics.mean(r['r1'] for r in runs):.1f} | "
                     f"{statistics.mean(r['mAP'] for r in runs):.1f} | {per_seed} |")
    (_, low), (_, high) = sorted(by_steps.items())[:2]
    n = min(r["steps"] for r in low)
    diffs = [b["mAP"] - a["mAP"] for a, b in zip(low, high)]
    mean = statistics.mean(diffs)
    verdict = "converged by this criterion" if abs(mean) <= 1.0 else "not converged by this criterion"
    lines += ["", f"Doubling the steps from {n} changes mAP by {mean:+.1f} points (per seed: "
              f"{', '.join(f'{d:+.1f}' for d in diffs)}); the criterion is at most 1 point: "
              f"{verdict}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from vireid.harness.config import load_params
    from vireid.harness.report.summary import write_readme
    from vireid.harness.runtime import configure_environment

    configure_environment()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="synth-sysu")
    ap.add_argument("--experiment", default="baseline")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=3, help="runs at once (one CPU thread each)")
    ap.add_argument("--doc", default=None, help="a Markdown file with a vireid:convergence region to write")
    args = ap.parse_args(argv)
    params = load_params(None, args.experiment, [], dataset=args.data)
    jobs = [(s, factor) for factor in (1, 2) for s in args.seeds]
    with tempfile.TemporaryDirectory(prefix="vireid-convergence-") as tmp, ThreadPoolExecutor(args.jobs) as pool:
        out = list(pool.map(lambda j: train(Path(tmp) / f"s{j[0]}-x{j[1]}", j[0], stretched(params.train, j[1]),
                                            args.data, args.experiment), jobs))
    # grouped by schedule length: the sampler's epoch (hence the step count) can differ by a step per seed
    by_factor: dict[int, list[dict[str, float]]] = {}
    for (_, factor), metrics in zip(jobs, out):
        by_factor.setdefault(factor, []).append(metrics)
    text = table(by_factor, params.train, args.seeds)
    print(text)
    if args.doc:
        write_readme(args.doc, text, "convergence")
        print(f"wrote the convergence region of {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
