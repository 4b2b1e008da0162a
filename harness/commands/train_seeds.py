"""`vireid train-seeds`: the runs of one variant, one per seed of the study, several at a time.

DVC runs the stages of one workspace one at a time (it holds a repository lock), so the study's
parallelism lives inside a stage: each `train@<variant>-<dataset>` stage trains every seed of
`study.seeds` with at most `study.jobs` `vireid train` processes at once. Each child is the
ordinary `vireid train` command with `train.seed` set and its own run folder
`<out>/seed<N>`, so a run trained here is identical to one trained alone: with one CPU thread
per process (`train.threads: 1`) the result does not depend on what else shares the machine.
More jobs than cores is fine at one thread each (no OpenMP spin-wait; docs/distributed.md).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vireid.harness.commands.common import add_params_args, bounded_int, resolve


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-seeds", help="train one variant for every seed of the study, several processes at a time",
        description="Train one experiment once per seed (default: study.seeds), at most --jobs processes at "
                    "once (default: study.jobs), into <out>/seed<N>. Example: vireid train-seeds "
                    "--data synth-sysu -e idkl --out runs/synth-sysu/idkl")
    add_params_args(p)
    p.add_argument("--out", required=True, help="parent folder of the run folders seed<N>")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: study.seeds)")
    p.add_argument("--jobs", type=bounded_int(1, 256), default=None, help="processes at once (default: study.jobs)")
    p.set_defaults(handler=run)


def child_command(args: argparse.Namespace, seed: int, run_dir: Path) -> list[str]:
    cmd = [sys.executable, "-m", "vireid.harness", "train", "--no-progress", "--run-dir", str(run_dir)]
    for flag, value in (("--params", args.params), ("--experiment", args.experiment), ("--data", args.data)):
        if value is not None:
            cmd += [flag, value]
    for item in list(args.overrides) + [f"train.seed={seed}"]:
        cmd += ["--set", item]
    return cmd


def _train_one(cmd: list[str], tag: str, lock: threading.Lock) -> int:
    """Run one child, its output lines prefixed with ``tag`` so parallel runs stay readable."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            with lock:
                sys.stdout.write(f"[{tag}] {line}")
                sys.stdout.flush()
        return proc.wait()


def run(args: argparse.Namespace) -> int:
    from vireid.harness.cli import UserError

    params = resolve(args)  # the child processes resolve the same params; this checks them once, up front
    seeds = list(args.seeds if args.seeds is not None else params.study.seeds)
    jobs = args.jobs or params.study.jobs
    if not seeds:
        raise UserError("train-seeds: no seeds (study.seeds is empty and --seeds was not given)")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"train-seeds: seeds repeat: {seeds}")
    out = Path(args.out)
    lock = threading.Lock()
    start = time.perf_counter()
    print(f"training {params.experiment.name} on {params.data.name}: seeds {seeds}, {min(jobs, len(seeds))} at a time",
          flush=True)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        codes = list(pool.map(lambda s: _train_one(child_command(args, s, out / f"seed{s}"), f"seed{s}", lock),
                              seeds))
    failed = [s for s, code in zip(seeds, codes) if code != 0]
    if failed:
        for s, code in zip(seeds, codes):
            if code:
                print(f"seed {s}: vireid train exited with {code} (its lines above are tagged [seed{s}])",
                      file=sys.stderr)
        return 1
    print(f"trained {len(seeds)} runs into {out} in {time.perf_counter() - start:.0f} s")
    return 0
