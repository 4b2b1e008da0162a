"""Training-throughput benchmark for IDKL (images/s, steady state after warm-up).

Configurations: fp32 eager; AMP bf16; AMP + channels_last; AMP + channels_last +
torch.compile (AMP and compile only where CUDA is present). Data pipelines: the uint8
cache with augmentation as batched tensor ops on the training device, versus torchvision
PIL transforms in DataLoader workers. Random weights and synthetic images of the right
size: no dataset needed. Also records the loss curve of each configuration so AMP can be
compared with fp32 over the first steps.

    python -m benchmarks.bench_train                       # paper settings (GPU)
    python -m benchmarks.bench_train --backbone tiny --height 64 --width 32 --p 8 --k 4   # CPU
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch


def synthetic_batches(n_images: int, height: int, width: int, num_classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n_images, height, width, 3), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=n_images)
    modality = np.arange(n_images) % 2
    return images, labels, modality


def identity_batches(labels: np.ndarray, modality: np.ndarray, p: int, k: int, seed: int):
    from vireid.datasets.samplers import ModalityBalancedIdentitySampler

    sampler = ModalityBalancedIdentitySampler(labels, modality, p=p, k=k, seed=seed)
    while True:
        for epoch in range(10**6):
            sampler.set_epoch(epoch)
            yield from sampler


def build(backbone: str, num_classes: int, device: torch.device, channels_last: bool):
    from vireid.methods import build_model

    model = build_model("idkl", num_classes=num_classes, backbone=backbone, weights="none", last_stride=1,
                        loss=None).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def run_config(name: str, args, device: torch.device, amp: torch.dtype | None, channels_last: bool,
               compile_model: bool, pipeline: str, data) -> dict:
    from vireid.datasets.transforms import TrainAugment, build_pil_transform

    images, labels, modality = data
    torch.manual_seed(0)
    model = build(args.backbone, args.num_classes, device, channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=3.5e-4, weight_decay=5e-3)
    forward = torch.compile(model) if compile_model else model
    size = (args.height, args.width)
    batches = identity_batches(labels, modality, args.p, args.k, seed=0)
    gen = torch.Generator(device=device).manual_seed(0)
    augment = TrainAugment(size).to(device)
    lab_t = torch.as_tensor(labels)
    mod_t = torch.as_tensor(modality)

    if pipeline == "pil":
        from PIL import Image

        pil = build_pil_transform(size)
        pool = torch.utils.data.DataLoader(
            list(range(len(images))), batch_sampler=[next(batches) for _ in range(args.warmup + args.steps)],
            num_workers=args.workers, collate_fn=lambda idx: (
                torch.stack([pil(Image.fromarray(images[i])) for i in idx]), torch.as_tensor(idx)),
            persistent_workers=False)
        source = iter(pool)

        def next_batch():
            x, idx = next(source)
            return x.to(device, non_blocking=True), lab_t[idx].to(device), mod_t[idx].to(device)
    else:
        def next_batch():
            idx = torch.as_tensor(next(batches))
            x = torch.from_numpy(images[idx.numpy()]).to(device, non_blocking=True)
            m = mod_t[idx].to(device)
            return augment(x, generator=gen, modality=m), lab_t[idx].to(device), m

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    losses, data_time, step_times = [], 0.0, []
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        x, y, m = next_batch()
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        sync()
        t1 = time.perf_counter()
        ctx = torch.autocast(device.type, dtype=amp) if amp is not None else torch.autocast(device.type, enabled=False)
        with ctx:
            out = forward(x, y, m)
            terms = model.loss(out, y, m)
        total = sum(terms.values())
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
        sync()
        t2 = time.perf_counter()
        if step >= args.warmup:
            data_time += t1 - t0
            step_times.append(t2 - t0)
    total_time = sum(step_times)
    batch = args.p * args.k
    return {"config": name, "images_per_s": batch * len(step_times) / total_time,
            "step_ms": 1000 * total_time / len(step_times), "data_fraction": data_time / total_time,
            "losses": losses}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--width", type=int, default=144)
    ap.add_argument("--p", type=int, default=12)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--num-classes", type=int, default=395)
    ap.add_argument("--images", type=int, default=2400, help="synthetic images in the in-memory cache")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--workers", type=int, default=4, help="DataLoader workers for the PIL pipeline")
    ap.add_argument("--configs", default="all", help="comma list of config names, or all")
    ap.add_argument("--json", default=None, help="write results here")
    args = ap.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    data = synthetic_batches(args.images, args.height, args.width, args.num_classes)
    configs = [("fp32-eager", None, False, False, "tensor")]
    if cuda:
        configs += [("amp-bf16", torch.bfloat16, False, False, "tensor"),
                    ("amp-bf16+channels_last", torch.bfloat16, True, False, "tensor"),
                    ("amp-bf16+channels_last+compile", torch.bfloat16, True, True, "tensor"),
                    ("amp-bf16+channels_last (PIL workers)", torch.bfloat16, True, False, "pil")]
    else:
        configs += [("fp32-eager (PIL workers)", None, False, False, "pil")]
    if args.configs != "all":
        wanted = set(args.configs.split(","))
        configs = [c for c in configs if c[0] in wanted]
    results = []
    for name, amp, cl, comp, pipeline in configs:
        res = run_config(name, args, device, amp, cl, comp, pipeline, data)
        results.append(res)
        print(f"{name:40s} {res['images_per_s']:9.1f} img/s  step {res['step_ms']:8.1f} ms  "
              f"data {100 * res['data_fraction']:5.1f}%", flush=True)
    base = results[0]["images_per_s"]
    ref = np.asarray(results[0]["losses"])
    print("\n| configuration | images/s | speed-up vs fp32 eager | data time | max |loss - fp32 loss| |")
    print("|---|---:|---:|---:|---:|")
    for res in results:
        diff = float(np.max(np.abs(np.asarray(res["losses"]) - ref)))
        res["speedup"] = res["images_per_s"] / base
        res["max_loss_diff_vs_fp32"] = diff
        print(f"| {res['config']} | {res['images_per_s']:.1f} | {res['speedup']:.2f}x | "
              f"{100 * res['data_fraction']:.1f}% | {diff:.4f} |")
    env = {"device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
           "torch": torch.__version__, "threads": torch.get_num_threads(), "args": vars(args)}
    if args.json:
        from vireid.harness.io import atomic_write_json

        atomic_write_json(Path(args.json), {"env": env, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
