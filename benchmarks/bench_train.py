"""Training-throughput benchmark for IDKL (images/s, steady state after warm-up).

Each configuration runs the training's own code: ``Trainer.train_step`` (autocast, the
GradScaler for fp16, the per-term finiteness check) on ``TrainBatches`` (the uint8 cache,
augmentation as batched tensor ops on the training device), or on torchvision PIL
transforms in DataLoader workers for the data-pipeline comparison. Random weights and
synthetic images of the right size: no dataset needed.

Configurations (``--list``): fp32 eager (two seeds: the second is the noise floor of the
loss curve), AMP bf16, AMP fp16 with a grad scaler, + channels_last, + torch.compile, and
the PIL pipeline. "all" means every one on CUDA and fp32 (tensor and PIL) on the CPU; any
named configuration runs on any device (CPU autocast, for the smoke test). Per
configuration: images/s, step time, the share of the step spent producing the batch
(``data_fraction``), the first step's time (cuDNN autotuning, compilation), peak GPU memory
and the loss curve from step 0, compared with fp32 eager step by step. ``--json`` is
rewritten after every configuration, so a run stopped part-way keeps what it measured.

    python -m benchmarks.bench_train --json out.json            # paper settings (GPU)
    python -m benchmarks.bench_train --device cpu --backbone tiny --height 64 --width 32 --p 8 --k 4
"""
from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class Config:
    amp: str | None  # None (fp32), "bf16" or "fp16" (fp16 always with the grad scaler)
    channels_last: bool = False
    compile: bool = False
    pipeline: str = "tensor"  # tensor: TrainBatches on the device; pil: DataLoader workers
    seed: int = 0


FP32 = "fp32-eager"
# Order matters: the reference first, compilation (the longest warm-up) last.
CONFIGS: dict[str, Config] = {
    FP32: Config(None),
    "fp32-eager-seed1": Config(None, seed=1),
    "amp-bf16": Config("bf16"),
    "amp-fp16+scaler": Config("fp16"),
    "amp-bf16+channels_last": Config("bf16", channels_last=True),
    "amp-fp16+scaler+channels_last": Config("fp16", channels_last=True),
    "amp-bf16+channels_last (PIL workers)": Config("bf16", channels_last=True, pipeline="pil"),
    "fp32-eager (PIL workers)": Config(None, pipeline="pil"),
    "amp-bf16+channels_last+compile": Config("bf16", channels_last=True, compile=True),
}
DEFAULT_CPU = (FP32, "fp32-eager (PIL workers)")
DEFAULT_CUDA = tuple(name for name in CONFIGS if name != "fp32-eager (PIL workers)")
AMP_DTYPES = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}


def synthetic_data(n_images: int, height: int, width: int, num_classes: int, seed: int = 0):
    """A PreparedData over in-memory random uint8 images; modalities alternate so every
    identity has both."""
    import pandas as pd

    from vireid.harness.data import PreparedData

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n_images, height, width, 3), dtype=np.uint8)
    pids = rng.integers(0, num_classes, size=n_images)
    modality = np.where(np.arange(n_images) % 2, "infrared", "visible")
    records = pd.DataFrame({"pid": pids, "modality": modality, "split": "train"})
    return PreparedData(records=records, images=images, fingerprint="synthetic", dataset="sysu", root=Path("."))


class PilBatches:
    """``TrainBatches``' interface over torchvision PIL transforms in DataLoader workers:
    the batches are fixed in advance (the sampler's), the workers run ahead of the step."""

    def __init__(self, data, sampler, size, device, workers: int, n_batches: int, channels_last: bool):
        from PIL import Image

        from vireid.datasets.transforms import build_pil_transform

        self.sampler, self.device, self.channels_last = sampler, device, channels_last
        self.labels = torch.as_tensor(np.unique(data.records["pid"].to_numpy(), return_inverse=True)[1])
        self.modality = torch.as_tensor(np.array(data.modality_codes))
        images, pil = data.images, build_pil_transform(size)
        plan = [list(b) for _, b in zip(range(n_batches), _endless(sampler))]
        loader = torch.utils.data.DataLoader(
            list(range(len(images))), batch_sampler=plan, num_workers=workers,
            collate_fn=lambda idx: torch.stack([pil(Image.fromarray(images[i])) for i in idx]))
        self._source = iter(loader)

    def load(self, batch):
        x = next(self._source).to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        idx = torch.as_tensor(batch)
        return x, self.labels[idx].to(self.device), self.modality[idx].to(self.device)


class TimedBatches:
    """Wraps a batches object: accumulates the (synchronised) time spent in ``load``."""

    def __init__(self, inner, sync):
        self.inner, self.sync = inner, sync
        self.sampler = inner.sampler
        self.seconds = 0.0

    def load(self, batch):
        self.sync()
        start = time.perf_counter()
        out = self.inner.load(batch)
        self.sync()
        self.seconds += time.perf_counter() - start
        return out


def _endless(sampler):
    for epoch in range(10**6):
        sampler.set_epoch(epoch)
        yield from sampler


def run_config(name: str, cfg: Config, args, device: torch.device, data, budget_s: float | None) -> dict:
    """Warm-up steps, then measured steps until ``args.steps`` or (after at least
    ``args.min_steps``) until the configuration has used ``budget_s``."""
    from vireid.datasets.samplers import ModalityBalancedIdentitySampler
    from vireid.datasets.transforms import TrainAugment
    from vireid.harness.data import TrainBatches
    from vireid.harness.trainer import Trainer, build_optimizer, build_scheduler
    from vireid.methods import build_model

    started = time.perf_counter()
    cuda = device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(cfg.seed)
    core = build_model("idkl", num_classes=args.num_classes, backbone=args.backbone, weights="none",
                       last_stride=1, loss=None).to(device)
    if cfg.channels_last:
        core = core.to(memory_format=torch.channels_last)
    model = torch.compile(core) if cfg.compile else core
    optimizer = build_optimizer(core.parameters(), "adam", args.lr, args.weight_decay)
    scheduler = build_scheduler(optimizer, [], 0.1)
    all_idx = np.arange(len(data.images))
    sampler = ModalityBalancedIdentitySampler(data.records["pid"].to_numpy(), data.modality_codes,
                                              p=args.p, k=args.k, seed=cfg.seed)
    size = (args.height, args.width)
    n_steps = args.warmup + args.steps
    if cfg.pipeline == "pil":
        inner = PilBatches(data, sampler, size, device, args.workers, n_steps, cfg.channels_last)
    else:
        generator = torch.Generator(device=device).manual_seed(cfg.seed)
        inner = TrainBatches(data, all_idx, sampler, TrainAugment(size).to(device), device, generator,
                             cfg.channels_last)
    batches = TimedBatches(inner, sync)
    trainer = Trainer(model, core, optimizer, scheduler, batches, epochs=1, device=device, hooks=[],
                      amp_dtype=AMP_DTYPES[cfg.amp])
    model.train()

    losses, step_times, first_step_s, data_s, scale_drops = [], [], None, 0.0, 0
    plan = _endless(sampler)
    scaler = trainer.scaler
    for step in range(n_steps):
        measured = step >= args.warmup
        if measured and len(step_times) >= args.min_steps and budget_s is not None \
                and time.perf_counter() - started > budget_s:
            break
        if step == args.warmup:
            batches.seconds = 0.0
        scale_before = scaler.get_scale() if scaler.is_enabled() else None
        sync()
        t0 = time.perf_counter()
        values = trainer.train_step(next(plan))
        sync()
        elapsed = time.perf_counter() - t0
        if scaler.is_enabled() and scaler.get_scale() < scale_before:  # this step's update was skipped
            scale_drops += 1
        losses.append(values["total"])
        if step == 0:
            first_step_s = elapsed
        if measured:
            step_times.append(elapsed)
    data_s = batches.seconds
    total = sum(step_times)
    batch = args.p * args.k
    row = {"config": name, **{k: getattr(cfg, k) for k in ("amp", "channels_last", "compile", "pipeline", "seed")},
           "grad_scaler": scaler.is_enabled(),
           "scaler_skipped_steps": scale_drops if scaler.is_enabled() else None, "steps_measured": len(step_times),
           "truncated": len(step_times) < args.steps, "first_step_s": first_step_s,
           "images_per_s": batch * len(step_times) / total if total else None,
           "step_ms": 1000 * total / len(step_times) if step_times else None,
           "data_fraction": data_s / total if total else None, "losses": losses,
           "wall_s": time.perf_counter() - started}
    if cuda:
        row["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(device))
    del trainer, model, core, optimizer, inner, batches
    if cfg.compile:
        torch._dynamo.reset()
    return row


def compare_losses(results: list[dict]) -> None:
    """Each curve against fp32 eager over their common steps; with the second fp32 seed,
    whether the mean difference stays within that seed-to-seed difference."""
    ref = next((r for r in results if r["config"] == FP32), None)
    if ref is None:
        return
    noise = next((r for r in results if r["config"] == "fp32-eager-seed1"), None)
    for res in results:
        n = min(len(res["losses"]), len(ref["losses"]))
        diff = np.abs(np.asarray(res["losses"][:n]) - np.asarray(ref["losses"][:n]))
        res["loss_steps_compared"] = n
        res["max_loss_diff_vs_fp32"] = float(diff.max()) if n else None
        res["mean_loss_diff_vs_fp32"] = float(diff.mean()) if n else None
        if ref["images_per_s"] and res["images_per_s"]:
            res["speedup"] = res["images_per_s"] / ref["images_per_s"]
    if noise is not None and noise["mean_loss_diff_vs_fp32"] is not None:
        for res in results:
            # only the same batches are comparable: the PIL pipeline draws its own augmentation
            if res is not ref and res is not noise and res["pipeline"] == ref["pipeline"] \
                    and res["mean_loss_diff_vs_fp32"] is not None:
                res["within_fp32_seed_noise"] = bool(res["mean_loss_diff_vs_fp32"] <= noise["mean_loss_diff_vs_fp32"])


def markdown(results: list[dict]) -> str:
    def fmt(value, spec, suffix=""):
        return "-" if value is None else f"{value:{spec}}{suffix}"

    lines = ["| configuration | images/s | step | speed-up vs fp32 eager | data time | first step | "
             "mean / max abs(loss - fp32 loss) | within fp32 seed noise |", "|---|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        share = None if r["data_fraction"] is None else 100 * r["data_fraction"]
        lines.append(f"| {r['config']} | {fmt(r['images_per_s'], '.1f')} | {fmt(r['step_ms'], '.1f', ' ms')} | "
                     f"{fmt(r.get('speedup'), '.2f', 'x')} | {fmt(share, '.1f', '%')} | "
                     f"{fmt(r['first_step_s'], '.1f', ' s')} | {fmt(r.get('mean_loss_diff_vs_fp32'), '.4f')} / "
                     f"{fmt(r.get('max_loss_diff_vs_fp32'), '.4f')} | {r.get('within_fp32_seed_noise', '-')} |")
    return "\n".join(lines)


def resolve_configs(spec: str, cuda: bool) -> list[str]:
    if spec == "all":
        return list(DEFAULT_CUDA if cuda else DEFAULT_CPU)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"--configs: unknown configuration(s) {unknown}; known: {', '.join(CONFIGS)}")
    return names


def environment(device: torch.device, args) -> dict:
    cuda = device.type == "cuda"
    return {"device": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "threads": torch.get_num_threads(), "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "args": vars(args)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--width", type=int, default=144)
    ap.add_argument("--p", type=int, default=12)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--num-classes", type=int, default=395)
    ap.add_argument("--lr", type=float, default=3.5e-4)
    ap.add_argument("--weight-decay", type=float, default=5e-3)
    ap.add_argument("--images", type=int, default=2400, help="synthetic images in the in-memory cache")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--min-steps", type=int, default=5, help="measured steps kept even past the time budget")
    ap.add_argument("--deadline-s", type=float, default=None,
                    help="soft limit for all configurations: each gets an equal share of what is left")
    ap.add_argument("--workers", type=int, default=4, help="DataLoader workers for the PIL pipeline")
    ap.add_argument("--configs", default="all", help="comma list of configuration names, or all")
    ap.add_argument("--list", action="store_true", help="print the configuration names and exit")
    ap.add_argument("--json", default=None, help="write results here (after every configuration)")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(CONFIGS))
        return 0

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # as training does (train.deterministic: false)
    names = resolve_configs(args.configs, cuda)
    data = synthetic_data(args.images, args.height, args.width, args.num_classes)
    env = environment(device, args)
    started = time.perf_counter()
    results = []
    for i, name in enumerate(names):
        budget = None
        if args.deadline_s is not None:
            budget = max(0.0, args.deadline_s - (time.perf_counter() - started)) / (len(names) - i)
        res = run_config(name, CONFIGS[name], args, device, data, budget)
        results.append(res)
        compare_losses(results)
        ips = "-" if res["images_per_s"] is None else f"{res['images_per_s']:.1f}"
        print(f"{name:40s} {ips:>9s} img/s  {res['steps_measured']} steps  wall {res['wall_s']:.1f} s", flush=True)
        if args.json:
            from vireid.harness.io import atomic_write_json

            atomic_write_json(Path(args.json), {"env": env, "complete": i == len(names) - 1,
                                                "results": results, "table": markdown(results)})
    print()
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
