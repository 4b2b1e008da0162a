"""The training loop: plain PyTorch with hooks, AMP, gradient clipping and exact resume.

The loop itself knows nothing about MLflow, Optuna or evaluation; those are hooks. It
knows how to take a step, how to stop on a non-finite loss (naming the term, the epoch
and the step), and how to write and restore its complete state.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from vireid.harness.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from vireid.harness.hooks import Hook


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or Inf."""


def build_optimizer(params: Iterable[nn.Parameter] | list[dict[str, Any]], name: str, lr: float, weight_decay: float,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """Adam, or SGD with Nesterov momentum. `params`: parameters, or groups with their own `lr`
    (a method's `param_groups`)."""
    params = list(params)
    if not (params and isinstance(params[0], dict)):
        params = [p for p in params if p.requires_grad]
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=True)
    from vireid.harness.schema import ConfigError

    raise ConfigError(f"train.optimizer: expected adam or sgd, got {name!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, milestones: list[int], gamma: float,
                    warmup_epochs: int = 0, warmup_factor: float = 0.1,
                    warmup_rule: str = "factor") -> torch.optim.lr_scheduler.LambdaLR:
    """Per-epoch multi-step decay with optional linear warm-up (stepped once per epoch; every group
    keeps its own base lr).

    warmup_rule `factor`: warmup_factor at epoch 0, rising linearly to 1 at `warmup_epochs`;
    `ramp`: (epoch + 1) / warmup_epochs, the AGW code's ``lr * (epoch + 1) / 10``."""
    milestones = sorted(milestones)
    if warmup_rule not in ("factor", "ramp"):
        raise ValueError(f"warmup_rule: expected factor or ramp, got {warmup_rule!r}")

    def factor(epoch: int) -> float:
        scale = gamma ** sum(epoch >= m for m in milestones)
        if epoch < warmup_epochs:
            if warmup_rule == "ramp":
                scale *= (epoch + 1) / warmup_epochs
            else:
                alpha = epoch / warmup_epochs
                scale *= warmup_factor * (1 - alpha) + alpha
        return scale

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """`auto`: bf16 on CUDA, off on CPU. fp16/bf16 are honoured on CUDA only."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp in ("auto", "bf16"):
        return torch.bfloat16
    return torch.float16


class Trainer:
    """Runs `epochs` epochs of `batches` through `model`, calling hooks around each step.

    `batches` is an object with `sampler` (set_epoch/state_dict/load_state_dict/__len__,
    iterating lists of indices) and `load(indices) -> (images, labels, modality)`.
    `model(images, labels, modality)` returns outputs; `core.loss(outputs, labels,
    modality)` returns the weighted loss terms. `core` is `model` unless `model` is a
    DistributedDataParallel wrapper.
    """

    def __init__(self, model: nn.Module, core: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, batches: Any, epochs: int,
                 device: torch.device, hooks: list[Hook], amp_dtype: torch.dtype | None = None,
                 grad_clip: float | None = None, generator: torch.Generator | None = None,
                 steps_per_epoch: int | None = None, meta: dict[str, Any] | None = None,
                 report: Callable[[float, int], None] | None = None):
        self.model, self.core = model, core
        self.optimizer, self.scheduler = optimizer, scheduler
        self.batches = batches
        self.epochs = epochs
        self.device = device
        self.hooks = hooks
        self.amp_dtype = amp_dtype
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        self.grad_clip = grad_clip
        self.generator = generator
        self.steps_per_epoch = min(len(batches.sampler), steps_per_epoch or len(batches.sampler))
        self.meta = dict(meta or {})
        self.report = report
        self.epoch = 0
        self.step = 0
        self.step_in_epoch = 0
        self.history: list[dict[str, Any]] = []  # content only: identical bytes for identical runs
        self.timing: list[dict[str, Any]] = []  # wall-clock per epoch (throughput), kept out of outputs
        self.best: dict[str, Any] | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.last_losses: dict[str, float] = {}

    # -- state ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **self.meta,
            "model": self.core.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(self.generator),
            "sampler": self.batches.sampler.state_dict(),
            "epoch": self.epoch + 1,  # the next epoch to run
            "step": self.step,
            "history": self.history,
            "best": self.best,
            "best_model": self.best_state,
        }

    def save(self, path: Path) -> None:
        save_checkpoint(path, self.state_dict())

    def resume(self, path: Path) -> None:
        state = load_checkpoint(path, method=self.meta.get("method"), num_classes=self.meta.get("num_classes"))
        if "imported" in state:
            raise CheckpointError(f"{path}: an imported checkpoint holds weights only and cannot resume training; "
                                  "score it with vireid evaluate, or train into a new --run-dir")
        self.core.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.batches.sampler.load_state_dict(state["sampler"])
        set_rng_state(state["rng"], self.generator)
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.best = state["best"]
        self.best_state = state["best_model"]

    def on_new_best(self) -> None:
        self.best_state = {k: v.detach().clone() for k, v in self.core.state_dict().items()}

    def report_validation(self, value: float) -> None:
        if self.report is not None:
            self.report(value, self.epoch + 1)

    # -- loop ----------------------------------------------------------------------
    def _call(self, name: str) -> None:
        for hook in self.hooks:
            getattr(hook, name)(self)

    def train_step(self, indices: list[int]) -> dict[str, float]:
        images, labels, modality = self.batches.load(indices)
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype)
                    if self.amp_dtype is not None else nullcontext())
        with autocast:
            outputs = self.model(images, labels, modality)
            losses = self.core.loss(outputs, labels, modality)
        values = {name: float(value.detach()) for name, value in losses.items()}
        for name, value in values.items():
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"loss term {name!r} is {value} at epoch {self.epoch + 1}, step {self.step_in_epoch + 1}"
                    f" (global step {self.step + 1})")
        total = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.core.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        values["total"] = float(total.detach())
        return values

    def train(self) -> None:
        self._call("before_train")
        start_epoch = self.epoch
        for self.epoch in range(start_epoch, self.epochs):  # noqa: B020 (the trainer's epoch counter)
            self.model.train()
            self.batches.sampler.set_epoch(self.epoch)
            self.step_in_epoch = 0
            self._call("before_epoch")
            sums: dict[str, float] = {}
            n_images = 0
            started = time.perf_counter()
            for indices in self.batches.sampler:
                if self.step_in_epoch >= self.steps_per_epoch:
                    break
                self.last_losses = self.train_step(indices)
                for name, value in self.last_losses.items():
                    sums[name] = sums.get(name, 0.0) + value
                n_images += len(indices)
                self.step += 1
                self.step_in_epoch += 1
                self._call("after_step")
            elapsed = time.perf_counter() - started
            steps = max(self.step_in_epoch, 1)
            row: dict[str, Any] = {"epoch": self.epoch + 1, "lr": self.optimizer.param_groups[0]["lr"],
                                   "loss": sums.pop("total", 0.0) / steps}
            row.update({f"loss/{k}": v / steps for k, v in sums.items()})
            self.history.append(row)
            self.timing.append({"epoch": self.epoch + 1, "images_per_s": n_images / elapsed if elapsed > 0 else 0.0,
                                "epoch_seconds": elapsed})
            self.scheduler.step()
            self._call("after_epoch")
        self.epoch = self.epochs - 1
        self._call("after_train")
