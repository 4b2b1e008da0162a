"""Forward + loss + backward time per batch of a method on this machine's CPU (no data loading,
no optimiser step), so the cost of the model itself can be quoted next to the training benchmark.

    python -m benchmarks.bench_methods_cpu                  # IDKL: tiny 64x32 batch 32, ResNet-50 384x144 batch 8
    python -m benchmarks.bench_methods_cpu --method agw --configs tiny:64x32:8x4

A configuration is ``backbone:HxW:PxK`` (P identities x K images, half infrared, half visible).
Random weights and random images; the first `--warmup` steps are not timed.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

DEFAULT_CONFIGS = ("tiny:64x32:8x4", "resnet50:384x144:2x4")


def parse_config(text: str) -> tuple[str, int, int, int, int]:
    try:
        backbone, size, pk = text.split(":")
        height, width = (int(v) for v in size.split("x"))
        p, k = (int(v) for v in pk.split("x"))
    except ValueError:
        raise SystemExit(f"--configs: expected backbone:HxW:PxK (e.g. tiny:64x32:8x4), got {text!r}") from None
    if k % 2:
        raise SystemExit(f"--configs {text!r}: K must be even (half infrared, half visible)")
    return backbone, height, width, p, k


def time_config(method: str, text: str, steps: int, warmup: int, num_classes: int) -> dict:
    from vireid.methods import build_model, trainable_parameters

    backbone, height, width, p, k = parse_config(text)
    torch.manual_seed(0)
    model = build_model(method, num_classes=num_classes, backbone=backbone, weights="none").train()
    labels = torch.arange(p).repeat_interleave(k)
    modality = torch.tensor([1, 0] * (p * k // 2))  # the sampler's layout: IR, RGB, IR, RGB per identity
    images = torch.randn(p * k, 3, height, width)
    times = []
    for step in range(warmup + steps):
        started = time.perf_counter()
        model.zero_grad(set_to_none=True)
        outputs = model(images, labels, modality)
        sum(model.loss(outputs, labels, modality).values()).backward()
        if step >= warmup:
            times.append(time.perf_counter() - started)
    median = statistics.median(times)
    return {"method": method, "backbone": backbone, "image_size": [height, width], "batch": p * k,
            "trainable_params": trainable_parameters(model), "steps": steps,
            "seconds_per_batch_median": round(median, 4), "seconds_per_batch_min": round(min(times), 4),
            "images_per_s": round(p * k / median, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="idkl", help="idkl | baseline | agw (default idkl)")
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), help="backbone:HxW:PxK ...")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--num-classes", type=int, default=395, help="identity classes (default 395, SYSU-MM01)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
               "threads": torch.get_num_threads()}
    print(json.dumps({"machine": machine}))
    for text in args.configs:
        print(json.dumps(time_config(args.method, text, args.steps, args.warmup, args.num_classes)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
