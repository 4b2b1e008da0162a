"""Training throughput of the CPU study model, quiet vs loaded, per thread setting.

    python -m benchmarks.bench_threads                       # baseline, tiny 64x32, batch 32
    python -m benchmarks.bench_threads --method idkl --json results/bench_threads.json

Each configuration runs in a fresh process (OpenMP reads OMP_WAIT_POLICY when torch loads):
``1 thread``, ``2 threads, OMP_WAIT_POLICY=ACTIVE`` (what OpenMP does by default, busy-waiting)
and ``2 threads, PASSIVE`` (OpenMP sleeps instead of spinning). "Loaded" starts ``--load`` busy
processes (pure-Python spin loops) beside it, as other jobs on a shared machine would be.
The measure is forward + loss + backward + Adam step per batch (benchmarks.bench_methods_cpu's
loop with the optimiser), median over ``--steps`` timed steps.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = (("1 thread", 1, "PASSIVE"), ("2 threads, ACTIVE", 2, "ACTIVE"), ("2 threads, PASSIVE", 2, "PASSIVE"))
SPIN = "import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"

CHILD = """
import json, statistics, sys, time
import torch
from vireid.methods import build_model
method, threads, steps, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = build_model(method, num_classes=280, backbone="tiny", weights="none").train()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
labels = torch.arange(8).repeat_interleave(4)
modality = torch.tensor([1, 0] * 16)
images = torch.randn(32, 3, 64, 32)
times = []
for step in range(warmup + steps):
    t = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    out = model(images, labels, modality)
    sum(model.loss(out, labels, modality).values()).backward()
    opt.step()
    if step >= warmup:
        times.append(time.perf_counter() - t)
print(json.dumps({"images_per_s": round(32 / statistics.median(times), 1)}))
"""


def run_one(method: str, threads: int, policy: str, steps: int, warmup: int, load: int) -> float:
    env = dict(os.environ, OMP_WAIT_POLICY=policy)
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=600)]) for _ in range(load)]
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, method, str(threads), str(steps), str(warmup)],
                             env=env, capture_output=True, text=True, check=True, timeout=900)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="baseline", help="baseline | idkl | agw (default baseline)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration (default 20)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--load", type=int, default=2, help="busy processes in the loaded runs (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating repeats of every cell (default 2)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the results here")
    args = parser.parse_args(argv)
    rows = []
    for name, threads, policy in SETTINGS:
        row = {"setting": name, "threads": threads, "OMP_WAIT_POLICY": policy}
        for label, load in (("quiet", 0), ("loaded", args.load)):
            values = [run_one(args.method, threads, policy, args.steps, args.warmup, load)
                      for _ in range(args.repeats)]
            row[label] = values
        rows.append(row)
        print(f"{name:20s} quiet {row['quiet']} img/s   loaded ({args.load} busy processes) {row['loaded']} img/s",
              flush=True)
    result = {"method": args.method, "batch": 32, "image_size": [64, 32], "cpus": os.cpu_count(),
              "load_processes": args.load, "when": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
